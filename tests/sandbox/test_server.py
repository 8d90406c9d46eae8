"""The platform-neutral sandbox machinery, driven through a toy platform with one route."""

from __future__ import annotations

import base64
import logging
import math
import re
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from monitor import clock
from monitor.sandbox.faults import (
    FLOODS,
    GZIP_BOMB_BYTES,
    HUGE_BODY_BYTES,
    HUGE_LENGTH_BYTES,
    TRICKLE_BYTES,
    gzip_bomb,
)
from monitor.sandbox.server import Request, Response, Route, SandboxServer, format_time
from monitor.sandbox.transport import MAX_BODY
from tests.conftest import LocalCA

TOKEN = "toy-secret-token"
CLIENT = ("toy-client", "toy-client-secret")
CLOCK = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BareSandbox(SandboxServer):
    """A toy platform with the required hooks only: ``GET|POST /toy/<name>``.

    GET is the ``read`` endpoint, POST the ``write`` one.  A bearer token or HTTP Basic client
    credentials authenticate.  The name ``boom`` makes the handler fail, ``page`` answers HTML.
    """

    label = "toy sandbox"
    server_version = "ToySandbox/0.1"
    endpoints = ("read", "write")

    def __init__(self, port: int = 0) -> None:
        super().__init__(clock=CLOCK, port=port)
        self.seen: list[Request] = []

    def resolve(self, method: str, path: str) -> Route | None:
        match = re.fullmatch(r"/toy/([a-z]+)", path)
        if match is None or method not in ("GET", "POST"):
            return None
        return Route("read" if method == "GET" else "write", method.lower(), (match.group(1),))

    def authenticate(self, route: Route, request: Request) -> bool:
        return request.bearer() == TOKEN or request.basic_auth() == CLIENT

    def respond(self, route: Route, request: Request) -> Response:
        self.seen.append(request)
        name = route.args[0]
        if name == "boom":
            raise RuntimeError("a toy bug")
        if name == "page":
            page = "<html><body><p>Grüße aus dem Sandkasten, " + "ä" * 40 + "</p></body></html>"
            return Response.text(200, page, content_type="text/html; charset=utf-8")
        body = {"name": name, "query": request.query, "clock": format_time(self.clock)}
        return Response.json(200, body, [("x-toy", "1")])


class ToySandbox(BareSandbox):
    """The toy platform with its own error shapes."""

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        return Response.json(status, {"toy_error": status, "route": route and route.endpoint})

    def unauthorized(self, route: Route, request: Request, *, expired: bool) -> Response:
        challenge = ("www-authenticate", 'Bearer realm="toy", error="invalid_token"')
        return Response.json(401, {"toy_error": 401, "expired": expired}, [challenge])

    def rate_limited(self, route: Route, request: Request, reset_in: float) -> Response:
        retry = ("retry-after", str(math.ceil(reset_in)))
        return Response.json(429, {"toy_error": 429, "route": route.endpoint}, [retry])


@pytest.fixture
def toy() -> Iterator[ToySandbox]:
    with ToySandbox() as running:
        yield running


def _get(sandbox: SandboxServer, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.get(sandbox.url + path, timeout=10, **kwargs)


def _post(sandbox: SandboxServer, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.post(sandbox.url + path, timeout=10, **kwargs)


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


# --------------------------------------------------------------------------- lifecycle


def test_the_base_class_is_abstract() -> None:
    with pytest.raises(TypeError):
        SandboxServer(clock=CLOCK)  # type: ignore[abstract]


def test_start_stop_restart_and_context_manager() -> None:
    sandbox = ToySandbox()
    with pytest.raises(RuntimeError, match="toy sandbox is not running"):
        _ = sandbox.url
    first = sandbox.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first) and sandbox.url == first
    with pytest.raises(RuntimeError, match="already running"):
        sandbox.start()
    response = _get(sandbox, "/toy/hello")
    assert response.status_code == 200
    assert response.headers["Server"].startswith("ToySandbox/0.1")
    sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    with sandbox as entered:
        assert entered is sandbox
        assert _get(sandbox, "/toy/again").json()["name"] == "again"
    with pytest.raises(RuntimeError):
        _ = sandbox.url


def test_https_with_a_given_certificate_and_back_to_http(local_ca: LocalCA) -> None:
    sandbox = ToySandbox()
    with pytest.raises(ValueError, match="server-side context"):
        sandbox.serve_tls(ssl.create_default_context())  # a client's context
    sandbox.serve_tls(local_ca.server)
    with sandbox:
        assert sandbox.url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError):  # not signed by a CA requests knows
            _get(sandbox, "/toy/hello")
        answer = _get(sandbox, "/toy/hello", verify=str(local_ca.bundle))
        assert answer.status_code == 200 and answer.json()["name"] == "hello"
    sandbox.serve_tls(None)
    with sandbox:
        assert sandbox.url.startswith("http://") and _get(sandbox, "/toy/plain").status_code == 200


def test_a_given_port_is_used() -> None:
    with ToySandbox() as probe:
        port = int(probe.url.rsplit(":", 1)[1])
    with ToySandbox(port=port) as sandbox:
        assert sandbox.url == f"http://127.0.0.1:{port}"


def test_keep_alive_connections_are_served_and_closed_on_stop() -> None:
    sandbox = ToySandbox()
    threads_before = set(threading.enumerate())
    url = sandbox.start()
    session = requests.Session()
    assert session.get(url + "/toy/one", headers=AUTH, timeout=5).status_code == 200
    assert session.get(url + "/toy/two", headers=AUTH, timeout=5).status_code == 200
    assert len(sandbox.requests) == 2
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2
    # The idle keep-alive connection was closed, not left to a handler that would still answer.
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url + "/toy/three", headers=AUTH, timeout=5)
    assert len(sandbox.requests) == 2
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(timeout=1)
        assert not thread.is_alive(), thread.name
    session.close()


def test_stop_is_prompt_while_a_slow_response_is_pending() -> None:
    sandbox = ToySandbox()
    threads_before = set(threading.enumerate())
    sandbox.start()
    sandbox.add_fault("slow", delay=60)
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(_get(sandbox, "/toy/slow").status_code)
        except requests.exceptions.RequestException as error:
            outcome.append(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 5
    while not sandbox.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.requests, "the slow request never arrived"
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.exceptions.ConnectionError)
    assert sandbox.requests[0].status == 0
    # The server's threads, including the one that was waiting on the slow fault, have ended.
    for thread in set(threading.enumerate()) - threads_before - {caller}:
        thread.join(timeout=1)
        assert not thread.is_alive(), thread.name


# --------------------------------------------------------------------------- clock


def test_clock_is_timezone_aware_utc(toy: ToySandbox) -> None:
    assert toy.clock == CLOCK
    toy.set_clock(datetime(2026, 11, 23, 10, 30, tzinfo=UTC).astimezone())
    assert toy.clock == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert toy.clock.tzinfo is UTC
    toy.clock = CLOCK - timedelta(days=1)
    assert toy.clock == CLOCK - timedelta(days=1)
    assert _get(toy, "/toy/now").json()["clock"] == "2026-11-21T12:00:00.000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        toy.set_clock(datetime(2026, 11, 1))
    assert toy.clock == CLOCK - timedelta(days=1)


# --------------------------------------------------------------------------- routing and auth


def test_a_request_asking_to_close_gets_a_closing_answer(toy: ToySandbox) -> None:
    """prawcore's token POST sends ``Connection: close``: the answer must say it closes, or the
    client pools the connection and can reuse it just as the server hangs up (a flaky retry)."""
    with requests.Session() as session:
        kept = session.get(toy.url + "/toy/one", headers=AUTH, timeout=5)
        closing = session.get(
            toy.url + "/toy/two", headers={**AUTH, "Connection": "close"}, timeout=5
        )
        after = session.get(toy.url + "/toy/three", headers=AUTH, timeout=5)
    assert "Connection" not in kept.headers
    assert closing.headers["Connection"] == "close"
    assert closing.raw.connection is None  # urllib3 dropped it instead of pooling it
    assert after.status_code == 200
    assert [r.path for r in toy.requests] == ["/toy/one", "/toy/two", "/toy/three"]


def test_normal_answer_carries_the_subclass_status_headers_and_content_type(
    toy: ToySandbox,
) -> None:
    response = _get(toy, "/toy/hello", params={"a": "1", "b": ""})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["x-toy"] == "1"
    assert response.json() == {
        "name": "hello",
        "query": {"a": ["1"], "b": [""]},
        "clock": "2026-11-22T12:00:00.000Z",
    }
    page = _get(toy, "/toy/page")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.text.startswith("<html><body><p>Grüße")


def test_unknown_route_and_bad_credentials_use_the_subclass_shapes(toy: ToySandbox) -> None:
    missing = _get(toy, "/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {"toy_error": 404, "route": None}
    assert requests.delete(toy.url + "/toy/x", headers=AUTH, timeout=5).status_code == 404
    for headers in ({}, {"Authorization": "Bearer wrong"}, _basic("toy-client", "wrong")):
        denied = _get(toy, "/toy/x", headers=headers)
        assert denied.status_code == 401
        assert denied.json() == {"toy_error": 401, "expired": False}
        assert denied.headers["www-authenticate"].startswith('Bearer realm="toy"')
    assert _get(toy, "/toy/x", headers=_basic(*CLIENT)).status_code == 200
    assert _get(toy, "/toy/x", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_a_failing_handler_answers_the_platform_500(
    toy: ToySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=ToySandbox.__module__):
        response = _get(toy, "/toy/boom")
    assert response.status_code == 500
    assert response.json() == {"toy_error": 500, "route": "read"}
    assert any("toy sandbox failed to answer" in r.getMessage() for r in caplog.records)
    assert _get(toy, "/toy/fine").status_code == 200


def test_default_error_shapes() -> None:
    with BareSandbox() as bare:
        assert _get(bare, "/elsewhere").json() == {"error": "Not Found"}
        assert _get(bare, "/toy/x", headers={}).json() == {"error": "Unauthorized"}
        bare.add_fault("429")
        bare.add_fault("expired_token")
        bare.add_fault("503")
        assert [(r.status_code, r.json()) for r in (_get(bare, "/toy/x") for _ in range(3))] == [
            (429, {"error": "Too Many Requests"}),
            (401, {"error": "Unauthorized"}),
            (503, {"error": "Service Unavailable"}),
        ]


# --------------------------------------------------------------------------- request bodies


def test_post_body_reaches_the_subclass(toy: ToySandbox) -> None:
    form = {"grant_type": "client_credentials", "scope": "read write"}
    response = _post(toy, "/toy/token", data=form, headers=_basic(*CLIENT))
    assert response.status_code == 200
    request = toy.seen[-1]
    assert (request.method, request.path) == ("POST", "/toy/token")
    assert request.form() == {"grant_type": ["client_credentials"], "scope": ["read write"]}
    assert request.basic_auth() == CLIENT and request.bearer() is None
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    _post(toy, "/toy/json", json={"text": "héllo", "n": 2})
    assert toy.seen[-1].json_body() == {"text": "héllo", "n": 2}
    assert toy.seen[-1].bearer() == TOKEN
    _get(toy, "/toy/plain")
    assert toy.seen[-1].body == b"" and toy.seen[-1].json_body() is None


def test_request_bodies_are_size_limited(toy: ToySandbox) -> None:
    session = requests.Session()
    big = b"a" * (MAX_BODY + 1000)
    response = session.post(toy.url + "/toy/big", data=big, headers=AUTH, timeout=5)
    assert response.status_code == 200
    assert toy.seen[-1].body == big[:MAX_BODY]
    # The rest was read and dropped: the same connection serves the next request.
    assert session.get(toy.url + "/toy/next", headers=AUTH, timeout=5).status_code == 200
    session.close()


# --------------------------------------------------------------------------- faults


def test_faults_apply_in_order_to_matching_endpoints(toy: ToySandbox) -> None:
    toy.add_fault("500", endpoint="write")
    toy.add_fault("503", times=2)
    toy.add_fault("429", endpoint="read", reset_in=3)
    calls = [
        ("GET", 503),  # the first queued fault that matches "read"
        ("POST", 500),
        ("POST", 503),
        ("GET", 429),
        ("GET", 200),
        ("POST", 200),
    ]
    for method, status in calls:
        send = _get if method == "GET" else _post
        assert send(toy, "/toy/x").status_code == status, method
    assert [r.status for r in toy.requests] == [status for _, status in calls]


def test_fault_answers_use_the_subclass_shapes(toy: ToySandbox) -> None:
    toy.add_fault("429", reset_in=2.2)
    toy.add_fault("expired_token")
    toy.add_fault("500")
    limited, expired, failed = (_get(toy, "/toy/x") for _ in range(3))
    assert limited.json() == {"toy_error": 429, "route": "read"}
    assert limited.headers["retry-after"] == "3"
    assert (expired.status_code, expired.json()) == (401, {"toy_error": 401, "expired": True})
    assert (failed.status_code, failed.json()) == (500, {"toy_error": 500, "route": "read"})
    assert toy.seen == []  # no fault reached the normal handler


def test_429_faults_spoil_or_date_the_reset(toy: ToySandbox) -> None:
    toy.add_fault("429_bad_reset", reset_in=2.2)
    toy.add_fault("429_http_date", reset_in=2.2)
    spoilt, dated = (_get(toy, "/toy/x") for _ in range(2))
    assert (spoilt.status_code, spoilt.headers["retry-after"]) == (429, "nan")
    assert spoilt.json() == {"toy_error": 429, "route": "read"}
    when = parsedate_to_datetime(dated.headers["retry-after"])
    assert dated.status_code == 429 and dated.headers["retry-after"].endswith(" GMT")
    assert clock.now() + timedelta(seconds=1) < when <= clock.now() + timedelta(seconds=3)


def test_faults_wait_for_routed_authenticated_requests(toy: ToySandbox) -> None:
    toy.add_fault("503")
    assert _get(toy, "/elsewhere").status_code == 404
    assert _get(toy, "/toy/x", headers={}).status_code == 401
    assert _get(toy, "/toy/x").status_code == 503
    assert _get(toy, "/toy/x").status_code == 200


def test_malformed_is_a_truncated_normal_answer(toy: ToySandbox) -> None:
    normal = _get(toy, "/toy/hello")
    toy.add_fault("malformed", times=2)
    broken = _get(toy, "/toy/hello")
    assert broken.status_code == 200
    assert broken.headers["x-toy"] == "1"
    assert broken.headers["Content-Type"] == normal.headers["Content-Type"]
    assert 0 < len(broken.content) < len(normal.content)
    assert normal.content.startswith(broken.content)
    with pytest.raises(ValueError):
        broken.json()
    page = _get(toy, "/toy/page")
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.content.decode("utf-8").startswith("<html>")  # cut between characters
    assert not page.text.endswith("</html>")
    assert len(toy.seen) == 3  # the handler answered, then the answer was cut


def test_slow_answers_normally_after_the_delay(toy: ToySandbox) -> None:
    toy.add_fault("slow", delay=0.3, endpoint="write")
    assert _get(toy, "/toy/quick").status_code == 200
    started = time.monotonic()
    response = _post(toy, "/toy/slow")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and response.json()["name"] == "slow"


def test_trickle_sends_the_headers_at_once_then_the_body_byte_by_byte(toy: ToySandbox) -> None:
    normal = _get(toy, "/toy/drip").content
    toy.add_fault("trickle", delay=0.05)
    started = time.monotonic()
    with requests.get(toy.url + "/toy/drip", headers=AUTH, timeout=10, stream=True) as response:
        headers_after = time.monotonic() - started
        pieces = list(response.raw.stream(1))  # as the bytes arrive
    took = time.monotonic() - started
    assert response.status_code == 200 and headers_after < 0.5
    assert b"".join(pieces) == normal and len(normal) > TRICKLE_BYTES  # nothing lost
    assert took >= TRICKLE_BYTES * 0.05
    assert _get(toy, "/toy/after").status_code == 200  # one request only


def test_trickle_headers_sends_the_head_byte_by_byte_then_the_rest(toy: ToySandbox) -> None:
    normal = _get(toy, "/toy/drip")
    toy.add_fault("trickle_headers", delay=0.05)
    started = time.monotonic()
    response = requests.get(toy.url + "/toy/drip", headers=AUTH, timeout=10)
    took = time.monotonic() - started
    assert response.status_code == 200 and response.content == normal.content  # nothing lost
    assert response.headers["Content-Type"] == normal.headers["Content-Type"]
    assert took >= TRICKLE_BYTES * 0.05
    assert _get(toy, "/toy/after").status_code == 200  # one request only


def test_stop_is_prompt_while_an_answer_trickles() -> None:
    sandbox = ToySandbox()
    sandbox.start()
    sandbox.add_fault("trickle", delay=30)
    response = requests.get(sandbox.url + "/toy/drip", headers=AUTH, timeout=10, stream=True)
    assert response.status_code == 200
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.exceptions.RequestException):
        response.content  # noqa: B018 - the cut body is the point
    response.close()


FLOOD_HEADS = {
    "huge_body": ("Content-Length", str(HUGE_BODY_BYTES)),
    "huge_length": ("Content-Length", str(HUGE_LENGTH_BYTES)),
    "endless_body": ("Transfer-Encoding", "chunked"),
    "gzip_bomb": ("Content-Encoding", "gzip"),
}


@pytest.mark.parametrize("kind", FLOODS)
def test_a_flood_streams_its_oversized_body_as_it_is_read(toy: ToySandbox, kind: str) -> None:
    toy.add_fault(kind)
    taken = 0
    with requests.get(toy.url + "/toy/x", headers=AUTH, timeout=10, stream=True) as response:
        name, value = FLOOD_HEADS[kind]
        assert response.status_code == 200 and response.headers[name] == value
        for piece in response.raw.stream(64 * 1024, decode_content=False):
            taken += len(piece)
            if taken > 20 * 1024 * 1024:  # enough to tell: past the 16 MiB a client takes
                break
    assert taken > 20 * 1024 * 1024 if kind != "gzip_bomb" else taken == len(gzip_bomb())
    assert _get(toy, "/toy/after").status_code == 200  # the fault was one answer


def test_the_gzip_bomb_is_small_and_expands_to_300_mib() -> None:
    bomb = gzip_bomb()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size, data = 0, bomb
    while data:  # a piece at a time: never 300 MiB at once here either
        size += len(inflater.decompress(data, 1024 * 1024))
        data = inflater.unconsumed_tail
    assert inflater.eof and size == GZIP_BOMB_BYTES and len(bomb) < GZIP_BOMB_BYTES // 500


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("teapot", {}, "unknown fault kind"),
        ("500", {"endpoint": "delete"}, "unknown endpoint"),
        ("500", {"times": 0}, "at least 1"),
        ("slow", {"delay": -1.0}, "must not be negative"),
    ],
)
def test_bad_faults_are_rejected(
    toy: ToySandbox, kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        toy.add_fault(kind, **options)
    assert _get(toy, "/toy/x").status_code == 200


# --------------------------------------------------------------------------- recording and logs


def test_requests_are_recorded_with_redacted_authorization(toy: ToySandbox) -> None:
    before = time.monotonic()
    _get(toy, "/toy/one", params={"q": "a"})
    _post(toy, "/toy/two", headers=_basic(*CLIENT), data={"k": "v"})
    _get(toy, "/nothing", headers={"Proxy-Authorization": "Basic c2VjcmV0"})
    first, second, third = toy.requests
    assert (first.method, first.path, first.query, first.status) == (
        "GET",
        "/toy/one",
        {"q": ["a"]},
        200,
    )
    assert (second.method, second.path, second.status) == ("POST", "/toy/two", 200)
    assert third.status == 404
    assert first.headers["Authorization"] == second.headers["Authorization"] == "<redacted>"
    assert third.headers["Proxy-Authorization"] == "<redacted>"
    assert before <= first.received_at <= second.received_at <= time.monotonic()
    assert set(first.to_json()) == {"method", "path", "query", "headers", "received_at", "status"}
    text = repr(toy.requests)
    assert TOKEN not in text and CLIENT[1] not in text and "c2VjcmV0" not in text
    assert toy.seen[0].header("Authorization") == f"Bearer {TOKEN}"  # the subclass sees it


def test_requests_are_logged_at_debug_without_secrets(
    toy: ToySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        _get(toy, "/toy/logged")
        toy.add_fault("500")
        toy.set_clock(CLOCK)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("GET /toy/logged" in m and "-> 200" in m for m in messages)
    assert any("fault queued" in m for m in messages)
    assert any("clock set to" in m for m in messages)
    assert all(TOKEN not in m for m in messages)


# --------------------------------------------------------------------------- control API


def test_control_api_over_http(toy: ToySandbox) -> None:
    base = toy.url
    fault = {"kind": "503", "times": 2, "endpoint": "write"}
    queued = requests.post(f"{base}/_sandbox/faults", json=fault, timeout=5)
    assert (queued.status_code, queued.json()) == (200, {"ok": True, "pending": 2})
    assert _get(toy, "/toy/x").status_code == 200
    assert _post(toy, "/toy/x").status_code == 503

    clock = {"clock": "2026-11-19T12:00:00+01:00"}
    moved = requests.post(f"{base}/_sandbox/clock", json=clock, timeout=5)
    assert moved.json() == {"clock": "2026-11-19T11:00:00.000Z"}
    assert toy.clock == datetime(2026, 11, 19, 11, tzinfo=UTC)
    assert requests.get(f"{base}/_sandbox/clock/", timeout=5).json() == moved.json()

    recorded = requests.get(f"{base}/_sandbox/requests", timeout=5).json()
    assert [(r["method"], r["path"], r["status"]) for r in recorded] == [
        ("GET", "/toy/x", 200),
        ("POST", "/toy/x", 503),
    ]
    assert recorded[0]["headers"]["Authorization"] == "<redacted>"
    assert len(toy.requests) == 2  # control requests are not recorded


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("POST", "/_sandbox/faults", {"kind": "nope"}, 400),
        ("POST", "/_sandbox/faults", {"kind": "500", "times": "x"}, 400),
        ("POST", "/_sandbox/faults", {"kind": "500", "times": True}, 400),
        ("POST", "/_sandbox/faults", {"kind": "500", "endpoint": "delete"}, 400),
        ("POST", "/_sandbox/faults", {"kind": "slow", "delay": "long"}, 400),
        ("POST", "/_sandbox/faults", ["500"], 400),
        ("POST", "/_sandbox/clock", {"clock": "soon"}, 400),
        ("POST", "/_sandbox/clock", {"clock": "2026-11-19T12:00:00"}, 400),
        ("POST", "/_sandbox/clock", {}, 400),
        ("GET", "/_sandbox/nothing", None, 404),
        ("POST", "/_sandbox/requests", {}, 404),
    ],
)
def test_control_api_rejects_bad_requests(
    toy: ToySandbox, method: str, path: str, payload: Any, status: int
) -> None:
    response = requests.request(method, toy.url + path, json=payload, timeout=5)
    assert response.status_code == status
    assert "error" in response.json()
    assert toy.clock == CLOCK
    assert _get(toy, "/toy/x").status_code == 200  # no fault was queued
