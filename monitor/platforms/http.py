"""HTTP plumbing the collectors share: each answer read within an overall deadline and a size cap.

A read timeout bounds each socket read only: a server (or a proxy) that trickles a byte now and then
stays under it for as long as it likes, and one collector run would hang on a single request. So
every exchange has a deadline counted from its start:

- the body is read as it arrives, one socket read at a time, against the deadline: ``requests``
  (tweepy, praw) through :class:`DeadlineAdapter`, ``httpx`` (Mastodon, Bluesky) through
  :func:`read_body` over ``iter_raw``; it is checked between reads, so an exchange overshoots it
  by at most one read timeout;
- the status line and headers: for ``httpx`` every socket read waits at most until the deadline
  (:func:`deadline_transport`); for ``requests`` a timer shuts the socket down at the deadline
  while urllib3 waits for them (:class:`DeadlineAdapter`'s connections).

Past the deadline an exchange fails with a :class:`TransientError` "answer not complete in N s".

An answer larger than :data:`MAX_BODY_BYTES` fails with a :class:`MalformedResponse` "answer larger
than N B" without being held: at once when its Content-Length says so, else as it streams, its
compressed body decompressed here a bounded piece at a time (:func:`decoded`: the libraries would
expand a whole socket read at once, 64 KiB of a gzip bomb into 64 MiB) and counted decoded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse

from monitor.platforms.base import MalformedResponse, TransientError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# the content codings asked for: those :func:`decoded` decompresses a bounded piece at a time (the
# client libraries would ask for br and zstd too once their packages are installed)
ACCEPT_ENCODING = "gzip, deflate"
GZIP_WBITS = 16 + zlib.MAX_WBITS
# when the exchange under way in this thread (or context) must be over, on the monotonic clock
_DEADLINE: ContextVar[float | None] = ContextVar("touchpoint_exchange_deadline", default=None)
_T = TypeVar("_T")


def request_deadline(timeout: tuple[float, float]) -> float:
    """Seconds one whole exchange may take: the connect timeout plus the read timeout."""
    return timeout[0] + timeout[1]


@contextlib.contextmanager
def exchange_deadline(at: float) -> Iterator[None]:
    """Bound the socket reads of the exchanges made inside to ``at`` (monotonic seconds)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _past_deadline(seconds: float, what: str) -> TransientError:
    return TransientError(f"{what}: answer not complete in {seconds:g}s")


def _too_large(what: str) -> MalformedResponse:
    return MalformedResponse(f"{what}: answer larger than {MAX_BODY_BYTES:,} B")


def refuse_declared_size(content_length: str | None, *, what: str) -> None:
    """Refuse, before reading any of it, an answer whose Content-Length is above
    :data:`MAX_BODY_BYTES` (a malformed one is left to the client library)."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return
    if declared > MAX_BODY_BYTES:
        raise _too_large(what)


def decoded(chunks: Iterable[bytes], content_encoding: str | None, *, what: str) -> Iterator[bytes]:
    """``chunks`` of a body sent with ``content_encoding`` (gzip and deflate, in any sequence),
    decoded in pieces of at most :data:`CHUNK_BYTES`: however much one chunk expands (a gzip bomb:
    a thousandfold), no more is decompressed than :func:`read_body` takes next. Other codings,
    never asked for (:data:`ACCEPT_ENCODING`), pass through as the client libraries pass them."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    pieces = iter(chunks)
    for coding in reversed(codings):  # the coding applied last is undone first
        if coding in ("gzip", "x-gzip", "deflate"):
            pieces = _inflated(pieces, gzip=coding != "deflate", what=what)
    return pieces


def _inflated(chunks: Iterator[bytes], *, gzip: bool, what: str) -> Iterator[bytes]:
    inflater = _Inflater(gzip=gzip, what=what)
    for chunk in chunks:
        yield from inflater.feed(chunk)


class _Inflater:
    """One zlib-coded body decompressed at most :data:`CHUNK_BYTES` at a time: gzip (member after
    member; what follows the first that is not one is dropped, as urllib3 drops it), or deflate,
    zlib-wrapped or raw as servers send it."""

    def __init__(self, *, gzip: bool, what: str) -> None:
        self.gzip = gzip
        self.what = what
        self.wbits = GZIP_WBITS if gzip else zlib.MAX_WBITS
        self.zlib = zlib.decompressobj(self.wbits)
        self.members = 0  # gzip members begun after the first
        self.begun = False  # some output came: a deflate body's wrapper is settled
        self.done = False  # the rest is dropped

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of ``data``, the next bytes of the body, as they are asked for."""
        while not self.done:
            try:
                piece = self.zlib.decompress(data, CHUNK_BYTES)
            except zlib.error:
                data = self._failed(data)
                continue
            self.begun = self.begun or bool(piece)
            if piece:
                yield piece
            data = self.zlib.unconsumed_tail
            if self.zlib.eof:
                data = self._next_member()
                if not data:
                    return
            elif not data and len(piece) < CHUNK_BYTES:
                return  # everything given is out; otherwise what is pending comes next round

    def _failed(self, data: bytes) -> bytes:
        """What to decompress after zlib refused ``data``: it again without the zlib wrapper
        (deflate), nothing more (a later gzip member), or the end of the exchange."""
        if not self.gzip and not self.begun and self.wbits > 0:
            self.wbits = -zlib.MAX_WBITS
            self.zlib = zlib.decompressobj(self.wbits)
            return data
        if self.members:
            self.done = True
            return b""
        raise MalformedResponse(f"{self.what}: the answer could not be decoded") from None

    def _next_member(self) -> bytes:
        """The bytes after the end of the stream: the next gzip member's (none for deflate)."""
        rest = self.zlib.unused_data
        if not self.gzip:
            self.done = True  # what follows a deflate stream is dropped, as the clients drop it
            return b""
        if not rest:
            return b""  # a next member may come in the next chunk
        self.members += 1
        self.zlib = zlib.decompressobj(self.wbits)
        return rest


def read_body(chunks: Iterable[bytes], *, started: float, seconds: float, what: str) -> bytes:
    """Join an answer's body; refuse one not complete ``seconds`` after ``started`` (monotonic)
    or larger than :data:`MAX_BODY_BYTES`."""
    content = bytearray()
    for chunk in chunks:
        content.extend(chunk)
        if len(content) > MAX_BODY_BYTES:
            del content  # freed now: the error's traceback keeps this frame while it is handled
            raise _too_large(what)
        if time.monotonic() - started > seconds:
            raise _past_deadline(seconds, what)
    return bytes(content)


def fetch_whole(
    client: httpx.Client, method: str, url: str, *, seconds: float, what: str, **options: Any
) -> httpx.Response:
    """``client.request(method, url, **options)`` within ``seconds``: the body read by
    :func:`read_body`, the status line and headers bounded too when ``client`` has a
    :func:`deadline_transport`; the answer comes back complete (decoded, so without
    Content-Encoding). An oversized answer is refused as it streams (:func:`read_body`), or
    before any of it is read when its Content-Length says so."""
    started = time.monotonic()
    asked = httpx.Headers(options.pop("headers", None))
    asked["Accept-Encoding"] = ACCEPT_ENCODING
    try:
        with (
            exchange_deadline(started + seconds),
            client.stream(method, url, headers=asked, **options) as streamed,
        ):
            refuse_declared_size(streamed.headers.get("content-length"), what=what)
            body = read_body(
                _httpx_body(streamed, what), started=started, seconds=seconds, what=what
            )
    except httpx.TimeoutException:
        if time.monotonic() - started >= seconds:
            raise _past_deadline(seconds, what) from None
        raise
    headers = [
        (name, value)
        for name, value in streamed.headers.multi_items()
        if name.lower() != "content-encoding"
    ]
    return httpx.Response(
        streamed.status_code,
        headers=headers,
        content=body,
        request=streamed.request,
        extensions=streamed.extensions,
    )


def _httpx_body(streamed: httpx.Response, what: str) -> Iterator[bytes]:
    """The decoded body of ``streamed`` as it arrives; the one httpx holds already when a transport
    gave it whole (``httpx.MockTransport``)."""
    if streamed.is_stream_consumed:
        return iter((streamed.content,))
    return decoded(streamed.iter_raw(), streamed.headers.get("content-encoding"), what=what)


# what a connection failure's text says, in words a reader of the run's error understands
_CONNECTION_MARKERS = ("Connection refused", "Name or service not known", "timed out", "No route")
UNTRUSTED_CERTIFICATE_FIX = (
    "Fix: if a proxy or firewall here re-signs TLS, point the environment variables "
    "REQUESTS_CA_BUNDLE (X, Reddit) and SSL_CERT_FILE (Mastodon, Bluesky) at its CA bundle (PEM); "
    "otherwise check api_base and the machine's clock"
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: chained, in ``args``, or kept by the client libraries
    (urllib3's ``reason``, prawcore's ``original_exception``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            getattr(current, "original_exception", None),
            *current.args,
        )
        todo.extend(w for w in wrapped if isinstance(w, BaseException))


def connection_problem(exc: BaseException, api_base: str) -> str:
    """Why a connection to ``api_base`` failed, for a run's error: a TLS certificate the machine
    does not trust (with the fix), another TLS failure, or what the socket reported."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or "certificate verify failed"
            return (
                f"cannot reach {api_base}: its TLS certificate is not trusted here ({why}). "
                + UNTRUSTED_CERTIFICATE_FIX
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return f"cannot reach {api_base}: TLS failed ({cause.reason or type(cause).__name__})"
    text = " ".join(str(cause) for cause in causes)
    for marker in _CONNECTION_MARKERS:
        if marker in text:
            return f"cannot reach {api_base} ({marker.lower()})"
    return f"cannot reach {api_base} ({type(exc).__name__})"


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` for one socket operation, cut to what is left before the exchange's deadline;
    ``error`` when nothing is."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the exchange's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own network backend, its connections wrapped in :class:`_DeadlineStream`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def deadline_transport() -> httpx.HTTPTransport:
    """httpx's default transport, its socket reads bounded by :func:`exchange_deadline` (the
    status line and headers included, which ``read_body`` cannot see). httpx takes no network
    backend, so it goes into the transport's connection pool; a test of the collectors fails
    should a new httpx or httpcore keep it from working."""
    transport = httpx.HTTPTransport()
    pool = transport._pool
    if isinstance(pool, httpcore.ConnectionPool) and isinstance(
        pool._network_backend, httpcore.SyncBackend
    ):
        pool._network_backend = _DeadlineBackend(pool._network_backend)
    else:  # pragma: no cover - only with an httpcore that changed its pool
        logger.warning("httpx: the status line and headers are bounded per read only")
    return transport


def _shut_at_deadline(sock: socket.socket | None, receive: Callable[[], _T]) -> _T:
    """``receive()`` (urllib3 waiting for a status line and headers); at the exchange's deadline
    a timer shuts ``sock`` down, and the wait ends as a read timeout."""
    at = _DEADLINE.get()
    if at is None or sock is None:
        return receive()
    cut = threading.Event()

    def shut() -> None:
        cut.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(at - time.monotonic(), 0.0), shut)
    timer.daemon = True
    timer.start()
    try:
        return receive()
    except Exception:
        if cut.is_set():  # urllib3 turns a socket timeout into its ReadTimeoutError
            raise TimeoutError("the exchange's deadline has passed") from None
        raise
    finally:
        timer.cancel()


class _DeadlineHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:
        return _shut_at_deadline(self.sock, super().getresponse)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        return _shut_at_deadline(self.sock, super().getresponse)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter: the (connect, read) ``timeout`` on every request unless one is given,
    and the body read within :func:`request_deadline` (a :class:`TransientError` past it)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout
        self.deadline = request_deadline(timeout)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        started = time.monotonic()
        proxies = self.route(request, proxies)
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        what = urlsplit(request.url or "").path or "/"
        try:
            with exchange_deadline(started + self.deadline):
                response = super().send(
                    request,
                    stream=True,
                    timeout=timeout or self.timeout,
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
        except requests.exceptions.Timeout:
            if time.monotonic() - started >= self.deadline:
                raise _past_deadline(self.deadline, what) from None
            raise
        if stream:
            return response
        try:
            refuse_declared_size(response.headers.get("Content-Length"), what=what)
            chunks = decoded(
                _reads(response.raw), response.headers.get("Content-Encoding"), what=what
            )
            body = read_body(chunks, started=started, seconds=self.deadline, what=what)
        except BaseException:
            response.close()  # the connection is mid-answer: drop it, never pool it
            raise
        # what requests' own Response.content does once it has read the stream
        response._content = body
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    def route(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        """Where ``request`` goes: a subclass may rewrite its URL in place and return the proxies
        for the new one; as it is, nothing changes."""
        return proxies


def _reads(raw: BaseHTTPResponse) -> Iterator[bytes]:
    """The body as sent (still content-coded: :func:`decoded` decodes it boundedly), one socket
    read at a time (``iter_content`` would block until a whole chunk arrived, however slowly),
    with urllib3's errors raised as requests raises them."""
    try:
        while chunk := raw.read1(CHUNK_BYTES, decode_content=False):
            yield chunk
    except ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
