"""The shared HTTP plumbing: whole answers within a deadline, decoded, with requests' errors."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests

from monitor.platforms.base import MalformedResponse, TransientError
from monitor.platforms.http import (
    ACCEPT_ENCODING,
    CHUNK_BYTES,
    MAX_BODY_BYTES,
    DeadlineAdapter,
    connection_problem,
    decoded,
    fetch_whole,
    read_body,
)
from monitor.sandbox.faults import FLOODS, gzip_bomb
from monitor.sandbox.server import Request, Response, Route, SandboxServer

PAYLOAD = {"data": [{"id": str(n), "text": "Grüße " * 50} for n in range(200)]}
PEERS: list[tuple[str, int]] = []  # the client end of each request's connection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        PEERS.append(self.client_address)
        body = gzip.compress(json.dumps(PAYLOAD).encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 1000):
                piece = body[start : start + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/stall":  # half the body, then silence past the read timeout
            self.wfile.write(body[: len(body) // 2])
            time.sleep(1.0)
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.mount("http://", DeadlineAdapter((1.0, 0.3)))
        yield session


@pytest.mark.parametrize("path", ["/gzip", "/chunked"])
def test_the_adapter_reads_a_compressed_answer_whole(
    session: requests.Session, origin: str, path: str
) -> None:
    response = session.get(origin + path)
    assert response.json() == PAYLOAD
    assert list(response.iter_content(4096))  # the body stays readable, as requests keeps it


def test_the_adapter_keeps_the_connection_for_the_next_request(
    session: requests.Session, origin: str
) -> None:
    PEERS.clear()
    for _ in range(3):
        assert session.get(origin + "/gzip").json() == PAYLOAD
    assert len(PEERS) == 3 and len(set(PEERS)) == 1  # read to the end, back to the pool


def test_a_stall_mid_body_is_requests_read_timeout(session: requests.Session, origin: str) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(origin + "/stall")
    assert session.get(origin + "/gzip").json() == PAYLOAD  # the pool was not poisoned


@pytest.mark.parametrize("path", ["/gzip", "/chunked"])
def test_fetch_whole_gives_the_decoded_answer(origin: str, path: str) -> None:
    with httpx.Client(base_url=origin, timeout=2) as client:
        response = fetch_whole(client, "GET", path, seconds=3, what="test")
    assert response.status_code == 200 and response.json() == PAYLOAD
    assert "content-encoding" not in response.headers  # the content is already decoded


def test_read_body_refuses_an_answer_past_its_deadline() -> None:
    chunks = iter([b"{", b"}"])
    with pytest.raises(TransientError, match="GET /x: answer not complete in 2s"):
        read_body(chunks, started=time.monotonic() - 3, seconds=2, what="GET /x")


def test_read_body_refuses_an_oversized_answer() -> None:
    megabyte = b"x" * 1024 * 1024
    chunks = (megabyte for _ in range(MAX_BODY_BYTES // len(megabyte) + 1))
    with pytest.raises(MalformedResponse, match="answer larger than"):
        read_body(chunks, started=time.monotonic(), seconds=60, what="GET /x")
    assert read_body(iter([b"ab", b"c"]), started=time.monotonic(), seconds=60, what="x") == b"abc"


def test_https_to_a_plain_http_server_is_named_a_tls_failure(
    session: requests.Session, origin: str
) -> None:
    # api_base saying https:// for a server that speaks plain HTTP: a common slip in a config
    plain = origin.replace("http://", "https://")
    session.mount("https://", DeadlineAdapter((1.0, 0.3)))
    with pytest.raises(requests.exceptions.SSLError) as through_requests:
        session.get(plain + "/gzip")
    with (
        httpx.Client(base_url=plain, timeout=2) as client,
        pytest.raises(httpx.ConnectError) as through_httpx,
    ):
        fetch_whole(client, "GET", "/gzip", seconds=3, what="test")
    for caught in (through_requests.value, through_httpx.value):
        problem = connection_problem(caught, plain)
        assert problem.startswith(f"cannot reach {plain}: TLS failed ("), problem
        assert "not trusted" not in problem


def test_a_refused_connection_is_named_so(session: requests.Session) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.get(closed + "/gzip")
    assert connection_problem(caught.value, closed) == f"cannot reach {closed} (connection refused)"


# -- oversized answers: refused as they stream, never held ----------------------------------------


class FloodSandbox(SandboxServer):
    """One route, ``GET /page``, answering PAYLOAD; the flood faults make it oversized."""

    label = "flood sandbox"
    endpoints = ("page",)

    def __init__(self) -> None:
        super().__init__(clock=datetime(2026, 11, 20, tzinfo=UTC))

    def resolve(self, method: str, path: str) -> Route | None:
        return Route("page") if path == "/page" else None

    def authenticate(self, route: Route, request: Request) -> bool:
        return True

    def respond(self, route: Route, request: Request) -> Response:
        return Response.json(200, PAYLOAD)


@pytest.fixture(scope="module")
def flooding() -> Iterator[FloodSandbox]:
    gzip_bomb()  # built once, before any memory is measured
    with FloodSandbox() as sandbox:
        yield sandbox


# what requests and httpx ask for once brotli and zstandard are installed: codings touchpoint would
# not decode, or not boundedly
LIBRARY_ACCEPT = {"Accept-Encoding": "gzip, deflate, br, zstd"}


@contextlib.contextmanager
def _through_requests() -> Iterator[Callable[[str], Any]]:
    """GET through requests and :class:`DeadlineAdapter`, as tweepy and praw do."""
    with requests.Session() as session:
        session.headers.update(LIBRARY_ACCEPT)
        session.mount("http://", DeadlineAdapter((2.0, 5.0)))
        yield lambda url: session.get(url).json()


@contextlib.contextmanager
def _through_httpx() -> Iterator[Callable[[str], Any]]:
    """GET through httpx and :func:`fetch_whole`, as the Mastodon and Bluesky collectors do."""
    with httpx.Client(timeout=5, headers=LIBRARY_ACCEPT) as client:
        yield lambda url: fetch_whole(client, "GET", url, seconds=7, what="GET /page").json()


STACKS = {"requests": _through_requests, "httpx": _through_httpx}
# the most one oversized answer may hold: nothing past its headers when its Content-Length says it
# is too large, else the 16 MiB taken before it is refused (18 MiB at the peak), never what one
# compressed chunk expands to (64 KiB of a gzip bomb: 64 MiB at once). Measured before the fix:
# 16 to 18 MiB for the first two, 142 MiB for the gzip bomb through httpx
HOLDS = {
    "huge_body": 1024 * 1024,
    "huge_length": 1024 * 1024,
    "endless_body": MAX_BODY_BYTES * 5 // 4,
    "gzip_bomb": MAX_BODY_BYTES * 5 // 4,
}


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("kind", FLOODS)
def test_an_oversized_answer_is_refused_without_being_held(
    flooding: FloodSandbox, kind: str, stack: str
) -> None:
    flooding.add_fault(kind)
    with STACKS[stack]() as get:
        tracemalloc.start()
        try:
            with pytest.raises(MalformedResponse, match=f"answer larger than {MAX_BODY_BYTES:,} B"):
                get(flooding.url + "/page")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            flooding.clear_faults()
        assert get(flooding.url + "/page") == PAYLOAD  # the refused answer's connection was dropped
    assert peak < HOLDS[kind], f"{kind} through {stack}: {peak / 2**20:.1f} MiB at the peak"


def test_every_request_asks_only_for_the_codings_decoded_boundedly_whatever_the_library_would(
    flooding: FloodSandbox,
) -> None:
    before = len(flooding.requests)
    for stack in STACKS.values():
        with stack() as get:
            assert get(flooding.url + "/page") == PAYLOAD
    asked = {r.headers.get("Accept-Encoding") for r in flooding.requests[before:]}
    assert asked == {ACCEPT_ENCODING} == {"gzip, deflate"}


def _gzip_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


TEXT = json.dumps(PAYLOAD).encode()
ENCODED = {
    "gzip": gzip.compress(TEXT),
    "x-gzip": gzip.compress(TEXT),
    "gzip (two members)": _gzip_members(TEXT[:1000], TEXT[1000:]),
    "deflate": zlib.compress(TEXT),
    "deflate (raw)": _raw_deflate(TEXT),
    "gzip, deflate": zlib.compress(gzip.compress(TEXT)),
    "identity": TEXT,
    "br": TEXT,  # never asked for: passed on as it came, as the clients pass it
}


@pytest.mark.parametrize("label", ENCODED)
def test_decoded_gives_the_body_in_bounded_pieces(label: str) -> None:
    coding = label.split(" (")[0]
    wire = ENCODED[label]
    chunks = [wire[at : at + 777] for at in range(0, len(wire), 777)]
    pieces = list(decoded(chunks, coding, what="GET /x"))
    assert b"".join(pieces) == TEXT


def test_one_read_of_a_gzip_bomb_is_decompressed_a_piece_at_a_time() -> None:
    bomb = gzip_bomb()[:CHUNK_BYTES]  # one socket read: 64 MiB once decompressed
    pieces = decoded([bomb], "gzip", what="x")
    sizes = [len(piece) for piece in itertools.islice(pieces, 300)]
    assert len(sizes) == 300 and max(sizes) <= CHUNK_BYTES


def test_decoded_refuses_a_body_that_is_not_what_its_coding_says() -> None:
    with pytest.raises(MalformedResponse, match="GET /x: the answer could not be decoded"):
        list(decoded([b"not gzip at all"], "gzip", what="GET /x"))
    assert b"".join(decoded([gzip.compress(b"{}") + b"\0\0"], "gzip", what="x")) == b"{}"
