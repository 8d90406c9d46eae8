"""The shared HTTP plumbing: whole answers within a deadline, decoded, with requests' errors."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests

from monitor.collectors.base import MalformedResponse, TransientError
from monitor.collectors.http import (
    MAX_BODY_BYTES,
    DeadlineAdapter,
    connection_problem,
    fetch_whole,
    read_body,
)

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
