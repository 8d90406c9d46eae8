"""The HTTP side of the sandbox servers: a threaded server on 127.0.0.1 (plain, or TLS with the
caller's certificate) that reads each request, hands it to the sandbox and writes the answer,
trickling or flooding it when a fault says so.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

from monitor.sandbox.faults import (
    HUGE_BODY_BYTES,
    HUGE_LENGTH_BYTES,
    TRICKLE_BYTES,
    flood_pieces,
    gzip_bomb,
)

if TYPE_CHECKING:
    from monitor.sandbox.server import Response

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # request bytes handed on; the rest of a longer body is read and dropped

Dispatch = Callable[[str, str, dict[str, str], bytes], "Response | None"]
"""(method, target, headers, body) -> the answer, or None to drop the connection."""


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server on 127.0.0.1 handing each request to ``dispatch``.

    ``stopping`` cuts trickling and flooding answers short; ``version`` is the ``Server`` header.
    """

    daemon_threads = True

    def __init__(
        self,
        dispatch: Dispatch,
        port: int,
        tls: ssl.SSLContext | None,
        stopping: threading.Event,
        version: str,
    ) -> None:
        self.dispatch = dispatch
        self.tls = tls
        self.stopping = stopping
        self.version = version
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
    def _server(self) -> SandboxHTTPServer:
        return cast(SandboxHTTPServer, self.server)

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
        return self._server.version

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
        body = self._read_body()
        answer = self._server.dispatch(self.command, self.path, dict(self.headers.items()), body)
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
        stopping = self._server.stopping
        for piece in flood_pieces(answer.flood):
            if stopping.is_set():
                return
            self.wfile.write(piece)

    def _trickle(self, data: bytes, gap: float) -> bool:
        """Write ``data``: its first :data:`TRICKLE_BYTES` bytes ``gap`` seconds apart when
        ``gap`` is above 0. False when the sandbox stopped meanwhile (the rest is not sent)."""
        if gap > 0:
            stopping = self._server.stopping
            for byte in data[:TRICKLE_BYTES]:
                if stopping.wait(gap):  # stop() stays prompt
                    self.close_connection = True
                    return False
                self.wfile.write(bytes((byte,)))  # unbuffered (wbufsize 0): sent at once
            data = data[TRICKLE_BYTES:]
        self.wfile.write(data)
        return True


class LocalService(ABC):
    """Serving on 127.0.0.1 in a thread of its own: start and stop (or a ``with`` block), plain
    HTTP or TLS, and the URL.  Subclasses answer each request in :meth:`dispatch`."""

    label: ClassVar[str] = "sandbox"
    """Name in log messages, errors and thread names."""
    server_version: ClassVar[str] = "Sandbox/1.0"
    """The ``Server`` header."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._stopping = threading.Event()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls: ssl.SSLContext | None = None
        self._log = logging.getLogger(type(self).__module__)

    @abstractmethod
    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response | None:
        """The answer to one request (``target``: its path and query); None drops it."""

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
        version = self.server_version
        server = SandboxHTTPServer(self.dispatch, self.port, self._tls, self._stopping, version)
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
