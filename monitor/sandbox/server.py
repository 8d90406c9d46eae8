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
import dataclasses
import json
import logging
import math
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from monitor import clock
from monitor.sandbox.faults import (
    BAD_RESET,
    FLOODS,
    Fault,
    FaultQueue,
    encode_json,
    fault_from_json,
    shuffled,
    truncated,
    with_odd_texts,
    without_time,
)
from monitor.sandbox.limits import RateLimiter, RateWindow
from monitor.sandbox.transport import LocalService

logger = logging.getLogger(__name__)

Json = dict[str, Any]
Query = dict[str, list[str]]
Headers = tuple[tuple[str, str], ...]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
CONTROL_PREFIX = "/_sandbox/"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


def format_time(when: datetime) -> str:
    """A UTC timestamp with milliseconds: ``2026-11-22T10:15:00.000Z``."""
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def as_utc(when: datetime, name: str) -> datetime:
    """``when`` in UTC; ValueError naming ``name`` when it is naive."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return when.astimezone(UTC)


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


# --------------------------------------------------------------------------- the base class


class SandboxServer(LocalService):
    """A local API server with a clock, request recording and injectable faults.

    Subclasses declare :attr:`routes` (or implement :meth:`resolve`) and ``endpoints`` (the
    names faults can target), implement :meth:`authenticate` and :meth:`answer`, may declare a
    :attr:`limiter` (with :meth:`rate_windows` and :meth:`rate_headers`), and override
    :meth:`error`, :meth:`unauthorized`, :meth:`throttled` and :meth:`rate_limited` for the
    platform's error shapes.  A request is resolved (None: 404), authenticated (False: 401),
    then answered: by the next queued fault matching its endpoint, else by :meth:`respond`.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

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
        super().__init__(port)
        self._lock = threading.Lock()
        self._clock = as_utc(clock, "clock")
        self._faults = FaultQueue(self.endpoints)
        self._requests: list[RecordedRequest] = []

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
        self._queue_fault(Fault(kind, times, endpoint, delay, reset_in))

    @property
    def pending_faults(self) -> int:
        """How many answers the queued faults will still spoil."""
        return self._faults.pending

    def clear_faults(self) -> int:
        """Drop the faults not yet served; how many answers they would still have spoilt."""
        return self._faults.clear()

    def _queue_fault(self, fault: Fault) -> None:
        self._faults.add(fault)
        self._log.debug("%s fault queued: %s", self.label, fault)

    # API requests ---------------------------------------------------------------

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response | None:
        """The answer to one HTTP request (``target``: its path and query): the control API's
        or the platform's; None drops the connection (a "slow" answer cut by :meth:`stop`)."""
        split = urlsplit(target)
        if split.path.startswith(CONTROL_PREFIX):
            return self._control(method, split.path, body)
        query = parse_qs(split.query, keep_blank_values=True)
        return self._serve(Request(method, split.path, query, headers, body))

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
        fault = self._faults.take(route.endpoint)
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

    def _fault_answer(self, fault: Fault, route: Route, request: Request) -> Response:
        if fault.kind == "malformed":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, status=200, body=truncated(normal.body))
        if fault.kind == "html":
            page = "<!DOCTYPE html><html><body><h1>Please sign in to the network</h1></body></html>"
            return Response.text(200, page, content_type="text/html; charset=utf-8")
        if fault.kind == "error_body":
            return dataclasses.replace(self.error(500, route, request), status=200)
        if fault.kind == "not_a_page":
            return Response.json(200, [1, 2, 3])
        if fault.kind == "shuffled":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=shuffled(normal.body))
        if fault.kind == "trickle":
            return dataclasses.replace(self._normal(route, request), trickle=fault.delay)
        if fault.kind == "trickle_headers":
            return dataclasses.replace(self._normal(route, request), trickle_headers=fault.delay)
        if fault.kind == "odd_text":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=with_odd_texts(normal.body))
        if fault.kind == "no_time":
            normal = self._normal(route, request)
            return dataclasses.replace(normal, body=without_time(normal.body, self.time_field))
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
            self._queue_fault(fault_from_json(_json_object(body)))
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


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: "<redacted>" if k.lower() in _SECRET_HEADERS else v for k, v in headers.items()}


def _json_object(body: bytes) -> Json:
    payload = json.loads(body.decode("utf-8") or "{}")
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload


def _parse_clock(payload: Json) -> datetime:
    value = payload.get("clock")
    if not isinstance(value, str):
        raise ValueError("clock must be an ISO-8601 string")
    return datetime.fromisoformat(value)
