"""The platform-neutral part of the sandbox servers: local HTTP, a clock, recording and faults.

A platform sandbox subclasses :class:`SandboxServer`, declares its routes (method and path
pattern), its rate windows and their header names, and supplies authentication, its normal
answers and the shapes of its error answers.  Everything else lives here: routing, rate limiting
(:mod:`monitor.sandbox.limits`), error answers raised as :class:`ApiError`, the threaded server on
``127.0.0.1`` (plain HTTP, or HTTPS with a certificate the caller gives), start and stop, the
clock, request recording (Authorization redacted), the fault queue (rate limits, server errors,
truncated bodies, hanging and trickling responses, expired tokens) and the control API (``POST
/_sandbox/faults``, ``GET|POST /_sandbox/clock``, ``GET /_sandbox/requests``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import socket
import socketserver
import ssl
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self, cast
from urllib.parse import parse_qs, urlsplit

from monitor import clock
from monitor.sandbox.limits import RateLimiter, RateWindow

logger = logging.getLogger(__name__)

Json = dict[str, Any]
Query = dict[str, list[str]]
Headers = tuple[tuple[str, str], ...]

# Oversized answers, each a 200 streamed as the client reads it (never built whole here): a 40 MiB
# body with its Content-Length, a Content-Length of 2 GiB (bytes sent until the client hangs up),
# a chunked body that never ends, and a gzip body of 300 MiB that is about 300 KB on the wire.
FLOODS = ("huge_body", "huge_length", "endless_body", "gzip_bomb")
HUGE_BODY_BYTES = 40 * 1024 * 1024
HUGE_LENGTH_BYTES = 2 * 1024**3
GZIP_BOMB_BYTES = 300 * 1024 * 1024
FLOOD_PIECE = b" " * (64 * 1024)  # what a flood is made of: JSON whitespace, never a whole value
FAULT_KINDS = (
    "429",
    "429_bad_reset",
    "429_http_date",
    "500",
    "503",
    "malformed",
    "html",
    "error_body",
    "not_a_page",
    "shuffled",
    "slow",
    "trickle",
    "trickle_headers",
    "expired_token",
    "odd_text",
    "no_time",
    *FLOODS,
)
# What an "odd_text" answer appends to every text: a NUL, a right-to-left override and the first
# half of an emoji's surrogate pair (a text cut mid-emoji), which JSON can only carry escaped.
ODD_TEXT_SUFFIX = " \x00\u202e\ud83d"
TRICKLE_BYTES = 20  # body (or head) bytes a "trickle" ("trickle_headers") answer sends one by one
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
CONTROL_PREFIX = "/_sandbox/"
MAX_BODY = 64 * 1024  # request bytes handed on; the rest of a longer body is read and dropped
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
BAD_RESET = "nan"  # what a "429_bad_reset" answer says in its reset headers: not a time


def format_time(when: datetime) -> str:
    """A UTC timestamp with milliseconds: ``2026-11-22T10:15:00.000Z``."""
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def as_utc(when: datetime, name: str) -> datetime:
    """``when`` in UTC; ValueError naming ``name`` when it is naive."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return when.astimezone(UTC)


def encode_json(payload: object) -> bytes:
    """UTF-8 JSON, non-ASCII characters kept as they are."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Route:
    """What a request resolved to.

    ``endpoint`` is the name faults target (one of the subclass's ``endpoints``); ``action`` and
    ``args`` (path parameters) are for the subclass to dispatch on.
    """

    endpoint: str
    action: str = ""
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteSpec:
    """One route a platform declares: method and path pattern (its groups the route's args)."""

    method: str
    pattern: re.Pattern[str]
    endpoint: str
    action: str


def route(method: str, pattern: str, endpoint: str, action: str = "") -> RouteSpec:
    """A declared route; ``action`` (what the platform dispatches on) defaults to ``endpoint``."""
    return RouteSpec(method, re.compile(pattern), endpoint, action or endpoint)


@dataclass(frozen=True)
class Request:
    """One platform API request as the subclass sees it (headers unredacted)."""

    method: str
    path: str
    query: Query
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def _credentials(self, wanted: str) -> str | None:
        scheme, _, value = (self.header("Authorization") or "").strip().partition(" ")
        return value.strip() or None if scheme.lower() == wanted else None

    def bearer(self) -> str | None:
        """The token of ``Authorization: Bearer <token>`` (scheme in any case), or None."""
        return self._credentials("bearer")

    def bearer_is(self, expected: str | None) -> bool:
        """Whether a bearer token came, and is ``expected`` (None: any token)."""
        token = self.bearer()
        return token is not None and (expected is None or token == expected)

    def basic_auth(self) -> tuple[str, str] | None:
        """User and password of ``Authorization: Basic <base64>``, or None."""
        encoded = self._credentials("basic")
        if encoded is None:
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None

    def form(self) -> Query:
        """The body as an ``application/x-www-form-urlencoded`` form."""
        return parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def json_body(self) -> Any:
        """The body parsed as JSON (None when empty; ValueError when it is not JSON)."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass(frozen=True)
class Response:
    """One answer: status, body, extra headers and its content type.

    ``trickle`` above 0 sends the first :data:`TRICKLE_BYTES` bytes of the body one at a time,
    ``trickle`` seconds apart (each gap shorter than a read timeout, the whole far longer);
    ``trickle_headers`` does so with the status line and headers. ``flood`` (one of
    :data:`FLOODS`) sends that oversized body instead of ``body``.
    """

    status: int
    body: bytes = b""
    headers: Headers = ()
    content_type: str = JSON_CONTENT_TYPE
    trickle: float = 0.0
    trickle_headers: float = 0.0
    flood: str = ""  # one of FLOODS: the body is that oversized one instead

    @classmethod
    def json(
        cls, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """A JSON answer."""
        return cls(status, encode_json(payload), tuple(headers))

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        """A text answer, e.g. an HTML error page with ``content_type="text/html"``."""
        return cls(status, text.encode("utf-8"), tuple(headers), content_type)


class ApiError(Exception):
    """A platform's error answer, raised by a handler: status, JSON body and extra headers.

    The server answers it with the rate headers of the moment before the error's own.
    """

    def __init__(self, status: int, body: Json, headers: Headers = ()) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers

    def response(self, headers: Headers = ()) -> Response:
        """The answer: ``headers`` (the rate headers of the moment) then the error's own."""
        return Response.json(self.status, self.body, (*headers, *self.headers))


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the sandbox received it (Authorization redacted)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    received_at: float
    status: int = 0  # 0 while unanswered, or when the connection was dropped (stop during "slow")

    def to_json(self) -> Json:
        """The record as a JSON object."""
        return dataclasses.asdict(self)


@dataclass
class _Fault:
    kind: str
    remaining: int
    endpoint: str | None
    delay: float
    reset_in: float

    def matches(self, endpoint: str) -> bool:
        return self.endpoint is None or self.endpoint == endpoint


# --------------------------------------------------------------------------- the base class


class SandboxServer(ABC):
    """A local API server with a clock, request recording and injectable faults.

    Subclasses declare :attr:`routes` (or implement :meth:`resolve`) and ``endpoints`` (the
    names faults can target), implement :meth:`authenticate` and :meth:`answer`, may declare a
    :attr:`limiter` (with :meth:`rate_windows` and :meth:`rate_headers`), and override
    :meth:`error`, :meth:`unauthorized`, :meth:`throttled` and :meth:`rate_limited` for the
    platform's error shapes.  A request is resolved (None: 404), authenticated (False: 401),
    then answered: by the next queued fault matching its endpoint, else by :meth:`respond`.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    label: ClassVar[str] = "sandbox"
    """Name in log messages, errors and thread names."""
    server_version: ClassVar[str] = "Sandbox/1.0"
    """The ``Server`` header."""
    endpoints: ClassVar[tuple[str, ...]] = ()
    """Names :attr:`Route.endpoint` can take; ``add_fault(endpoint=...)`` accepts only these."""
    time_field: ClassVar[str] = "created_at"
    """The field holding an item's time (the ``no_time`` fault leaves it out)."""
    reset_headers: ClassVar[tuple[str, ...]] = ("Retry-After",)
    """The headers in which the platform's 429 names its reset (the ``429_bad_reset`` fault
    spoils them)."""
    routes: ClassVar[tuple[RouteSpec, ...]] = ()
    """The platform's routes, tried in order by :meth:`resolve`."""
    limiter: RateLimiter | None = None
    """The platform's rate windows (None: no limits); see :meth:`rate_windows`."""

    def __init__(self, *, clock: datetime, port: int = 0) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._clock = as_utc(clock, "clock")
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls: ssl.SSLContext | None = None
        self._log = logging.getLogger(type(self).__module__)

    # platform hooks -------------------------------------------------------------

    def resolve(self, method: str, path: str) -> Route | None:
        """The first of :attr:`routes` matching the request, or None for an unknown path (404)."""
        for spec in self.routes:
            match = spec.pattern.fullmatch(path)
            if match and method == spec.method:
                return Route(spec.endpoint, spec.action, tuple(g or "" for g in match.groups()))
        return None

    @abstractmethod
    def authenticate(self, route: Route, request: Request) -> bool:
        """Whether the request's credentials are good for ``route``; False answers 401."""

    def respond(self, route: Route, request: Request) -> Response:
        """The normal answer (no fault): :meth:`answer`, counted against the route's rate windows
        (:meth:`throttled` once one is used up) and carrying their headers; an
        :class:`ApiError` answers as the error.  Any other exception answers ``error(500, ...)``."""
        names = self.rate_windows(route)
        headers: Headers = ()
        if self.limiter is not None and names:
            allowed, window = self.limiter.take(*names)
            headers = self.rate_headers(window)
            if not allowed:
                return self.throttled(route, request, headers)
        try:
            answer = self.answer(route, request)
        except ApiError as error:
            return error.response(headers)
        return dataclasses.replace(answer, headers=(*answer.headers, *headers))

    def answer(self, route: Route, request: Request) -> Response:
        """The platform's answer to an API request, before rate limiting; raise
        :class:`ApiError` for an error answer."""
        raise NotImplementedError(f"{type(self).__name__} answers no {route.endpoint} requests")

    def rate_windows(self, route: Route | None) -> tuple[str, ...]:
        """The :attr:`limiter` windows a request to ``route`` counts against (none: not counted)."""
        return ()

    def rate_headers(self, window: RateWindow) -> Headers:
        """The headers reporting ``window`` in the platform's naming."""
        return ()

    def current_rate_headers(self, route: Route | None) -> Headers:
        """The rate headers of ``route``'s windows as they stand (nothing counted)."""
        names = self.rate_windows(route)
        if self.limiter is None or not names:
            return ()
        return self.rate_headers(self.limiter.peek(*names))

    def throttled(self, route: Route, request: Request, headers: Headers) -> Response:
        """429 once a rate window is used up; ``headers`` report the window."""
        return dataclasses.replace(self.error(429, route, request), headers=headers)

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        """The platform's error answer for ``status``: 404 (``route`` None), 401, 429, 5xx.

        The default is ``{"error": "<reason phrase>"}``.
        """
        return Response.json(status, {"error": HTTPStatus(status).phrase})

    def unauthorized(self, route: Route, request: Request, *, expired: bool) -> Response:
        """401: bad or missing credentials, or (``expired``) the ``expired_token`` fault."""
        return self.error(401, route, request)

    def rate_limited(self, route: Route, request: Request, reset_in: float) -> Response:
        """429 from the ``429`` fault: :meth:`throttled` with ``route``'s first window used up
        until ``reset_in`` seconds from now."""
        names = self.rate_windows(route)
        if self.limiter is None or not names:
            return self.error(429, route, request)
        headers = self.rate_headers(self.limiter.exhausted(names[0], reset_in))
        return self.throttled(route, request, headers)

    # lifecycle ------------------------------------------------------------------

    def serve_tls(self, context: ssl.SSLContext | None) -> None:
        """Serve HTTPS from the next :meth:`start` with ``context`` (a server-side context holding
        the certificate chain and key: ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``),
        or plain HTTP again with None."""
        if context is not None and context.protocol is ssl.PROTOCOL_TLS_CLIENT:
            # refused here: wrapping each accepted connection would fail in the accept loop
            raise ValueError("serve_tls needs a server-side context (ssl.Purpose.CLIENT_AUTH)")
        self._tls = context

    def start(self) -> str:
        """Bind 127.0.0.1 (``port``; 0 picks a free one), serve in a thread, return the URL."""
        if self._server is not None:
            raise RuntimeError(f"the {self.label} is already running")
        self._stopping.clear()
        server = _HTTPServer(self, self.port, self._tls)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.label.lower().replace(' ', '-')}-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        self._log.debug("%s listening on %s", self.label, self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving, dropping any response still waiting on a "slow" fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        self._log.debug("%s stopped", self.label)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with :meth:`serve_tls`) while running
        (RuntimeError otherwise)."""
        if self._server is None:
            raise RuntimeError(f"the {self.label} is not running")
        scheme = "http" if self._server.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    # state ----------------------------------------------------------------------

    @property
    def clock(self) -> datetime:
        """The sandbox's "now": only what happened up to it is visible."""
        with self._lock:
            return self._clock

    @clock.setter
    def clock(self, when: datetime) -> None:
        self.set_clock(when)

    def set_clock(self, when: datetime) -> None:
        """Move the sandbox's "now" (timezone-aware); items up to it become visible."""
        when = as_utc(when, "clock")
        with self._lock:
            self._clock = when
        self._log.debug("%s clock set to %s", self.label, when.isoformat())

    @property
    def requests(self) -> list[RecordedRequest]:
        """The API requests received so far, oldest first (control requests are not recorded)."""
        with self._lock:
            return list(self._requests)

    def add_fault(
        self,
        kind: str,
        *,
        times: int = 1,
        endpoint: str | None = None,
        delay: float = 5.0,
        reset_in: float = 2.0,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``endpoint`` (None: any endpoint).

        Kinds: ``429`` (reset ``reset_in`` seconds on), ``429_bad_reset`` (the same 429 with
        :data:`BAD_RESET` in the headers naming its reset, :attr:`reset_headers`),
        ``429_http_date`` (the same 429 with ``Retry-After`` an HTTP date, as RFC 9110 allows,
        rather than seconds), ``500``, ``503``, ``malformed`` (a 200
        whose body is the normal one cut short), ``html`` (a 200 with an HTML page: a proxy's or
        captive portal's), ``error_body`` (a 200 whose body is the platform's error object, as
        a 500 would send it), ``not_a_page`` (a 200 with a JSON list of numbers), ``shuffled``
        (the normal answer with its list of items reversed and its first item sent twice),
        ``slow`` (the normal answer after ``delay`` seconds), ``trickle`` (the normal answer at
        once, but its first :data:`TRICKLE_BYTES` body bytes one every ``delay`` seconds),
        ``trickle_headers`` (the same with the first bytes of the status line and headers),
        ``expired_token`` (401), ``odd_text`` (the normal answer with
        :data:`ODD_TEXT_SUFFIX` after every text), ``no_time`` (the normal answer with its first
        item's :attr:`time_field` left out), and the oversized 200s of :data:`FLOODS`:
        ``huge_body`` (40 MiB), ``huge_length`` (Content-Length 2 GiB), ``endless_body`` (chunked,
        never ending) and ``gzip_bomb`` (300 MiB once decompressed). Faults apply in the order
        they were queued.
        """
        self._queue_fault(_Fault(kind, times, endpoint, delay, reset_in))

    @property
    def pending_faults(self) -> int:
        """How many answers the queued faults will still spoil."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear_faults(self) -> int:
        """Drop the faults not yet served; how many answers they would still have spoilt."""
        with self._lock:
            left = sum(f.remaining for f in self._faults)
            self._faults.clear()
        return left

    def _queue_fault(self, fault: _Fault) -> None:
        _validate_fault(fault, self.endpoints)
        with self._lock:
            self._faults.append(fault)
        self._log.debug("%s fault queued: %s", self.label, fault)

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return dataclasses.replace(fault)
        return None

    # API requests ---------------------------------------------------------------

    def _serve(self, request: Request) -> Response | None:
        started = time.monotonic()
        record = RecordedRequest(
            request.method, request.path, request.query, _redacted(request.headers), started
        )
        with self._lock:
            index = len(self._requests)
            self._requests.append(record)
        answer = self._answer(request)
        status = 0 if answer is None else answer.status
        with self._lock:
            self._requests[index] = dataclasses.replace(record, status=status)
        elapsed_ms = (time.monotonic() - started) * 1000
        method, path, query = request.method, request.path, request.query
        self._log.debug("%s %s %s -> %s (%.1f ms)", method, path, query, status, elapsed_ms)
        return answer

    def _answer(self, request: Request) -> Response | None:
        route = self.resolve(request.method, request.path)
        if route is None:
            return self.error(404, None, request)
        if not self.authenticate(route, request):
            return self.unauthorized(route, request, expired=False)
        fault = self._take_fault(route.endpoint)
        if fault is None:
            return self._normal(route, request)
        if fault.kind != "slow":
            return self._fault_answer(fault, route, request)
        if self._stopping.wait(fault.delay):
            return None
        return self._normal(route, request)

    def _normal(self, route: Route, request: Request) -> Response:
        try:
            return self.respond(route, request)
        except Exception:  # a sandbox bug must still answer like a server would
            self._log.exception("%s failed to answer %s", self.label, route)
            return self.error(500, route, request)

    def _fault_answer(self, fault: _Fault, route: Route, request: Request) -> Response:
        if fault.kind == "malformed":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, status=200, body=_truncated(normal.body))
        if fault.kind == "html":
            page = "<!DOCTYPE html><html><body><h1>Please sign in to the network</h1></body></html>"
            return Response.text(200, page, content_type="text/html; charset=utf-8")
        if fault.kind == "error_body":
            return dataclasses.replace(self.error(500, route, request), status=200)
        if fault.kind == "not_a_page":
            return Response.json(200, [1, 2, 3])
        if fault.kind == "shuffled":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=_shuffled(normal.body))
        if fault.kind == "trickle":
            return dataclasses.replace(self._normal(route, request), trickle=fault.delay)
        if fault.kind == "trickle_headers":
            return dataclasses.replace(self._normal(route, request), trickle_headers=fault.delay)
        if fault.kind == "odd_text":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=_with_odd_texts(normal.body))
        if fault.kind == "no_time":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=_without_time(normal.body, self.time_field))
        if fault.kind in FLOODS:
            return Response(200, flood=fault.kind)
        if fault.kind == "429":
            return self.rate_limited(route, request, fault.reset_in)
        if fault.kind == "429_bad_reset":
            limited = self.rate_limited(route, request, fault.reset_in)
            return _with_headers(limited, {name: BAD_RESET for name in self.reset_headers})
        if fault.kind == "429_http_date":
            limited = self.rate_limited(route, request, fault.reset_in)
            when = clock.now() + timedelta(seconds=math.ceil(fault.reset_in))
            return _with_headers(limited, {"Retry-After": format_datetime(when, usegmt=True)})
        if fault.kind == "expired_token":
            return self.unauthorized(route, request, expired=True)
        return self.error(int(fault.kind), route, request)

    # control API ----------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = self._control_payload(method, path.rstrip("/"), body)
        except ValueError as error:
            return Response.json(400, {"error": str(error)})
        if payload is None:
            return Response.json(404, {"error": f"no control endpoint {method} {path}"})
        return Response.json(200, payload)

    def _control_payload(self, method: str, path: str, body: bytes) -> Json | list[Json] | None:
        if (method, path) == ("POST", "/_sandbox/faults"):
            self._queue_fault(_fault_from_json(_json_object(body)))
            return {"ok": True, "pending": self.pending_faults}
        if (method, path) == ("POST", "/_sandbox/clock"):
            self.set_clock(_parse_clock(_json_object(body)))
            return {"clock": format_time(self.clock)}
        if (method, path) == ("GET", "/_sandbox/clock"):
            return {"clock": format_time(self.clock)}
        if (method, path) == ("GET", "/_sandbox/requests"):
            return [r.to_json() for r in self.requests]
        return None


# --------------------------------------------------------------------------- helpers


def _with_headers(answer: Response, values: Mapping[str, str]) -> Response:
    """``answer`` with the headers named in ``values`` (any case) set to those values."""
    wanted = {name.lower(): value for name, value in values.items()}
    kept = tuple((k, v) for k, v in answer.headers if k.lower() not in wanted)
    return dataclasses.replace(answer, headers=(*kept, *values.items()))


@functools.cache
def gzip_bomb() -> bytes:
    """:data:`GZIP_BOMB_BYTES` of :data:`FLOOD_PIECE` gzipped (about 300 KB), built once."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed = [packer.compress(FLOOD_PIECE) for _ in range(GZIP_BOMB_BYTES // len(FLOOD_PIECE))]
    return b"".join([*packed, packer.flush()])


def flood_pieces(kind: str) -> Iterator[bytes]:
    """The body of the flood ``kind`` (one of :data:`FLOODS`) as it goes on the wire, in pieces
    of at most 64 KiB; ``endless_body``'s already chunk-encoded, and never ending."""
    if kind == "gzip_bomb":
        bomb = gzip_bomb()
        yield from (
            bomb[at : at + len(FLOOD_PIECE)] for at in range(0, len(bomb), len(FLOOD_PIECE))
        )
        return
    if kind == "endless_body":
        chunk = b"%x\r\n%s\r\n" % (len(FLOOD_PIECE), FLOOD_PIECE)
        while True:
            yield chunk
    length = HUGE_BODY_BYTES if kind == "huge_body" else HUGE_LENGTH_BYTES
    for _ in range(length // len(FLOOD_PIECE)):
        yield FLOOD_PIECE


def _with_odd_texts(body: bytes) -> bytes:
    """``body`` (JSON) with :data:`ODD_TEXT_SUFFIX` after every string holding a space (texts,
    names; never ids, times, cursors or URLs), all non-ASCII escaped as the JSON of an API is."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        return body

    def odd(value: Any) -> Any:
        if isinstance(value, str):
            return value + ODD_TEXT_SUFFIX if " " in value else value
        if isinstance(value, dict):
            return {k: odd(v) for k, v in value.items()}
        if isinstance(value, list):
            return [odd(v) for v in value]
        return value

    return json.dumps(odd(payload)).encode("ascii")


def _truncated(body: bytes) -> bytes:
    """A prefix of ``body`` cut in the middle (for JSON objects: never valid JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body[: max(1, len(body) // 2)]
    return text[: max(1, len(text) // 2)].encode("utf-8")


def _without_time(body: bytes, field: str) -> bytes:
    """``body`` (JSON) with ``field`` left out of the first item of its longest list of objects
    (at whatever depth the item holds it), as :func:`_shuffled` finds that list."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    items = _items(payload)
    todo: list[Any] = items[:1]
    while todo:
        current = todo.pop(0)
        if isinstance(current, dict):
            if field in current:
                del current[field]
                return encode_json(payload)
            todo.extend(current.values())
    return body


def _items(payload: Any) -> list[Any]:
    """The longest list of a page (at the top, or one level or two down)."""
    lists = [payload]
    for parent in (payload, payload.get("data") if isinstance(payload, dict) else None):
        if isinstance(parent, dict):
            lists += [v for v in parent.values() if isinstance(v, list)]
    return max((v for v in lists if isinstance(v, list)), key=len, default=[])


def _shuffled(body: bytes) -> bytes:
    """``body`` with its longest list of objects (a page's items, at the top or one level or two
    down: X's data, Reddit's data.children) reversed and its first item repeated at the end."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    items = _items(payload)
    if not items:
        return body
    items.reverse()
    items.append(items[-1])
    return encode_json(payload)


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: "<redacted>" if k.lower() in _SECRET_HEADERS else v for k, v in headers.items()}


def _json_object(body: bytes) -> Json:
    payload = json.loads(body.decode("utf-8") or "{}")
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload


def _number(payload: Json, name: str, default: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _fault_from_json(payload: Json) -> _Fault:
    kind, times, endpoint = payload.get("kind"), payload.get("times", 1), payload.get("endpoint")
    if not isinstance(kind, str):
        raise ValueError("kind must be a string")
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError("times must be an integer")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError("endpoint must be a string or null")
    return _Fault(
        kind, times, endpoint, _number(payload, "delay", 5.0), _number(payload, "reset_in", 2.0)
    )


def _validate_fault(fault: _Fault, endpoints: tuple[str, ...]) -> None:
    if fault.kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {FAULT_KINDS}")
    if fault.endpoint is not None and fault.endpoint not in endpoints:
        raise ValueError(f"unknown endpoint {fault.endpoint!r}; expected one of {endpoints}")
    if fault.remaining < 1:
        raise ValueError("times must be at least 1")
    if fault.delay < 0 or fault.reset_in < 0:
        raise ValueError("delay and reset_in must not be negative")


def _parse_clock(payload: Json) -> datetime:
    value = payload.get("clock")
    if not isinstance(value, str):
        raise ValueError("clock must be an ISO-8601 string")
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------- HTTP


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: SandboxServer, port: int, tls: ssl.SSLContext | None) -> None:
        self.sandbox = sandbox
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn): not needed on loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.tls is not None:
            # the handshake happens in the connection's own thread (_Handler.setup), so a client
            # that stalls it never holds up the accept loop
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open (keep-alive or pending) connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes

    @property
    def _server(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()  # sets the connection's timeout, which the TLS handshake waits under
        self._server.track(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()  # a client refusing the certificate ends it here
            except BaseException:
                self._server.untrack(self.connection)  # finish() does not run after setup()
                raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.untrack(self.connection)

    def version_string(self) -> str:
        return self._server.sandbox.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: the sandbox logs through :mod:`logging` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        unread = length - len(body)  # beyond MAX_BODY: read and dropped, keep-alive stays usable
        while unread > 0 and (chunk := self.rfile.read(min(unread, MAX_BODY))):
            unread -= len(chunk)
        return body

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        body = self._read_body()
        sandbox = self._server.sandbox
        answer: Response | None
        if split.path.startswith(CONTROL_PREFIX):
            answer = sandbox._control(self.command, split.path, body)
        else:
            query = parse_qs(split.query, keep_blank_values=True)
            headers = dict(self.headers.items())
            answer = sandbox._serve(Request(self.command, split.path, query, headers, body))
        if answer is None:
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: Response) -> None:
        if answer.flood:
            self._flood(answer)
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.send_header(name, value)
        if self.close_connection:  # the client sent "Connection: close" (prawcore's token POST)
            # say so, as real servers do: without it the client pools the connection and may
            # reuse it in the instant before this side closes it (RFC 9112, section 9.6)
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.trickle_headers > 0:
            # what end_headers() would send at once: the head BaseHTTPRequestHandler buffered
            buffered: list[bytes] = getattr(self, "_headers_buffer", [])
            head = b"".join([*buffered, b"\r\n"])
            buffered.clear()
            if not self._trickle(head, answer.trickle_headers):
                return
        else:
            self.end_headers()
        self._trickle(answer.body, answer.trickle)

    def _flood(self, answer: Response) -> None:
        """Send the oversized body ``answer.flood`` names, piece by piece, until it ends, the
        client hangs up or the sandbox stops."""
        self.close_connection = True  # a client refusing the body mid-way leaves it unread
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        if answer.flood == "endless_body":
            self.send_header("Transfer-Encoding", "chunked")
        elif answer.flood == "gzip_bomb":
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(gzip_bomb())))
        else:
            length = HUGE_BODY_BYTES if answer.flood == "huge_body" else HUGE_LENGTH_BYTES
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        stopping = self._server.sandbox._stopping
        for piece in flood_pieces(answer.flood):
            if stopping.is_set():
                return
            self.wfile.write(piece)

    def _trickle(self, data: bytes, gap: float) -> bool:
        """Write ``data``: its first :data:`TRICKLE_BYTES` bytes ``gap`` seconds apart when
        ``gap`` is above 0. False when the sandbox stopped meanwhile (the rest is not sent)."""
        if gap > 0:
            stopping = self._server.sandbox._stopping
            for byte in data[:TRICKLE_BYTES]:
                if stopping.wait(gap):  # stop() stays prompt
                    self.close_connection = True
                    return False
                self.wfile.write(bytes((byte,)))  # unbuffered (wbufsize 0): sent at once
            data = data[TRICKLE_BYTES:]
        self.wfile.write(data)
        return True
