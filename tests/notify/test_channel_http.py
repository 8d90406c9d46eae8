"""Slack and webhook channels against a real HTTP receiver on 127.0.0.1 (stdlib server thread)."""

from __future__ import annotations

import io
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from monitor import clock
from monitor.config.urls import UnsafeURLError
from monitor.logs import setup_logging
from monitor.notify.base import DeliveryError
from monitor.notify.message import AlertItem, Message
from monitor.notify.slack import SlackChannel
from monitor.notify.urlguard import Resolver
from monitor.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    sign,
    verify_signature,
)
from tests.alerts.servers import Receiver, Reply, self_signed_certificate

SLACK_PATH = "/services/T0000/B0000/SLACKSECRETPATH123"
WEBHOOK_SECRET = "WEBHOOK-HMAC-SECRET-456"
HOSTILE = (
    "<script>alert(1)</script> <!channel> <!here> <!everyone> <@U123ABC> <!subteam^S1> "
    "<https://evil.example|Reply from @brand> &lt;!channel&gt; *bold* ```code```\r\n"
    "Bcc: attacker@example.com \x1b[31mred\x1b[0m NUL\x00 \u202eRTL \u2028LS"
)
TIMEOUT = 0.5


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def hostile_message(key: str = "fp-abc:1") -> Message:
    """A message whose untrusted fields are hostile."""
    items = (
        AlertItem(
            text=HOSTILE,
            url="javascript:alert(1)",
            author="<@U999>\r\nevil",
            platform="x",
            created_at="2026-01-01T00:00:00Z",
            detail="unanswered for 3 h 10 min",
        ),
    )
    return Message(
        key=key,
        brand="acme",
        kind="unanswered_mention",
        severity="warning",
        title="Hello\r\nBcc: attacker@example.com <!channel>",
        summary="1 mention <!here> unanswered",
        items=items,
        created_at="2026-01-01T00:00:00Z",
    )


def slack(receiver: Receiver, **kw: Any) -> SlackChannel:
    """A Slack channel pointed at the receiver (loopback allowed)."""
    return SlackChannel(
        webhook_url=receiver.url(SLACK_PATH), timeout=TIMEOUT, allow_private=True, **kw
    )


def webhook(receiver: Receiver, **kw: Any) -> WebhookChannel:
    """A webhook channel pointed at the receiver (loopback allowed), signing with the secret."""
    options: dict[str, Any] = {"secret": WEBHOOK_SECRET, "timeout": TIMEOUT, "allow_private": True}
    options.update(kw)
    return WebhookChannel(url=receiver.url("/hook"), **options)


def texts(node: Any) -> list[str]:
    """Every ``text`` string in a Slack payload."""
    if isinstance(node, dict):
        return [
            t
            for k, v in node.items()
            for t in ([v] if k == "text" and isinstance(v, str) else texts(v))
        ]
    if isinstance(node, list):
        return [t for v in node for t in texts(v)]
    return []


# --- Slack -------------------------------------------------------------------------------------


def test_slack_delivers_escaped_payload_with_idempotency_key(receiver: Receiver) -> None:
    slack(receiver).send(hostile_message())
    (request,) = receiver.requests
    assert request.path == SLACK_PATH
    assert request.headers["idempotency-key"] == "fp-abc:1"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    payload = request.json()
    assert "link_names" not in payload and "parse" not in payload
    assert b"<" not in request.body and b">" not in request.body  # no link: the URL is javascript:
    joined = "\n".join(texts(payload))
    assert payload["text"] in joined and payload["blocks"]
    for needle in ("&lt;!channel&gt;", "&lt;!here&gt;", "&lt;@U123ABC&gt;", "&lt;!subteam^S1&gt;"):
        assert needle in joined
    assert "&lt;https://evil.example|Reply from @brand&gt;" in joined
    assert "&amp;lt;!channel&amp;gt;" in joined
    for bad in ("\x1b", "\x00", "\r", "\u202e", "\u2028", "javascript"):
        assert bad not in joined


def test_slack_500_is_retryable_and_the_retry_carries_the_same_key(receiver: Receiver) -> None:
    receiver.script(Reply(500), Reply(500), Reply(500), Reply(200))
    channel = slack(receiver)
    for _ in range(3):
        with pytest.raises(DeliveryError) as info:
            channel.send(hostile_message())
        assert info.value.retryable and info.value.retry_after is None
        assert SLACK_PATH not in str(info.value) and "SLACKSECRET" not in repr(info.value)
    channel.send(hostile_message())
    assert len(receiver.requests) == 4
    assert {r.headers["idempotency-key"] for r in receiver.requests} == {"fp-abc:1"}
    assert len({r.body for r in receiver.requests}) == 1


def test_slack_429_gives_retry_after(receiver: Receiver) -> None:
    receiver.script(Reply(429, {"Retry-After": "30"}, b"rate_limited"))
    with pytest.raises(DeliveryError) as info:
        slack(receiver).send(hostile_message())
    assert info.value.retryable and info.value.retry_after == 30.0


def test_slack_400_is_permanent_and_hides_the_path(receiver: Receiver) -> None:
    receiver.script(Reply(400, body=b"invalid_payload"))
    with pytest.raises(DeliveryError) as info:
        slack(receiver).send(hostile_message())
    assert not info.value.retryable
    assert "400" in str(info.value) and "invalid_payload" in str(info.value)
    assert "SLACKSECRETPATH123" not in str(info.value)


def test_slack_hanging_receiver_times_out_quickly(receiver: Receiver) -> None:
    receiver.script(Reply(200, delay=10))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        slack(receiver).send(hostile_message())
    assert time.monotonic() - started < TIMEOUT + 2
    assert info.value.retryable and "Timeout" in str(info.value)


def test_slack_url_is_redacted_in_debug_logs(receiver: Receiver) -> None:
    stream = io.StringIO()
    setup_logging(logging.DEBUG, stream=stream)
    receiver.script(Reply(404, body=b"no_service"))
    with pytest.raises(DeliveryError) as info:
        slack(receiver).send(hostile_message())
    logging.getLogger("test").warning("failed: %s", info.value)
    logged = stream.getvalue()
    assert "failed:" in logged
    assert "SLACKSECRETPATH123" not in logged


def test_webhook_url_secrets_are_masked_in_debug_logs(receiver: Receiver) -> None:
    """A password in the URL is always masked; its path too when the URL is a secret (url_env)."""
    stream = io.StringIO()
    setup_logging(logging.DEBUG, stream=stream)
    with_password = receiver.url("/open/path").replace("://", "://hookuser:USERINFOPASS99@")
    token_path = receiver.url("/api/webhooks/123/WEBHOOKPATHTOKEN77")
    for url, secret_url in ((with_password, False), (token_path, True)):
        channel = WebhookChannel(
            url=url, secret_url=secret_url, timeout=TIMEOUT, allow_private=True
        )
        channel.send(hostile_message())
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["authorization"].startswith("Basic ")
    logged = stream.getvalue()
    assert "HTTP Request: POST" in logged and "/open/path" in logged  # a plain path is shown
    assert "USERINFOPASS99" not in logged and "WEBHOOKPATHTOKEN77" not in logged


def test_a_url_that_is_no_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="not a valid URL") as info:
        SlackChannel(webhook_url="https://hooks.slack.com/services/T0/B0/SECRET\x01X")
    assert "SECRET" not in str(info.value)


def test_slack_refuses_loopback_without_the_flag(receiver: Receiver) -> None:
    with pytest.raises(UnsafeURLError):
        SlackChannel(webhook_url=receiver.url(SLACK_PATH), timeout=TIMEOUT)  # http refused
    channel = SlackChannel(webhook_url=receiver.url(SLACK_PATH), timeout=TIMEOUT, allow_http=True)
    with pytest.raises(UnsafeURLError):
        channel.validate()
    with pytest.raises(DeliveryError) as info:
        channel.send(hostile_message())
    assert not info.value.retryable and "SLACKSECRET" not in str(info.value)
    assert receiver.requests == []


# --- webhook -----------------------------------------------------------------------------------


def test_webhook_body_headers_and_signature(receiver: Receiver) -> None:
    before = int(clock.timestamp())
    webhook(receiver).send(hostile_message())
    (request,) = receiver.requests
    assert request.headers["idempotency-key"] == "fp-abc:1"
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    assert before <= int(timestamp) <= clock.timestamp() + 1
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert signature == sign(WEBHOOK_SECRET, timestamp, request.body)
    assert verify_signature(WEBHOOK_SECRET, timestamp, request.body, signature)
    assert not verify_signature("wrong", timestamp, request.body, signature)
    assert not verify_signature(WEBHOOK_SECRET, timestamp, request.body + b" ", signature)
    assert not verify_signature(WEBHOOK_SECRET, str(int(timestamp) - 3600), request.body, signature)
    payload = request.json()
    assert payload["key"] == "fp-abc:1" and payload["kind"] == "unanswered_mention"
    (item,) = payload["items"]
    assert item["url"] is None
    assert "<!channel>" in item["text"]  # a JSON string: data for the receiver, not markup
    for value in (item["text"], item["author"], payload["title"]):
        for bad in ("\x1b", "\x00", "\r", "\u202e", "\u2028"):
            assert bad not in value
    assert WEBHOOK_SECRET.encode() not in request.body


def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    webhook(receiver, secret=None).send(hostile_message())
    assert SIGNATURE_HEADER.lower() not in receiver.requests[0].headers


def test_webhook_500_then_200_same_key_and_body(receiver: Receiver) -> None:
    receiver.script(Reply(500), Reply(503, {"Retry-After": "2"}))
    channel = webhook(receiver)
    with pytest.raises(DeliveryError) as first:
        channel.send(hostile_message())
    with pytest.raises(DeliveryError) as second:
        channel.send(hostile_message())
    channel.send(hostile_message())
    assert first.value.retryable and second.value.retryable and second.value.retry_after == 2.0
    assert {r.headers["idempotency-key"] for r in receiver.requests} == {"fp-abc:1"}
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        stamp = request.headers[TIMESTAMP_HEADER.lower()]
        assert verify_signature(
            WEBHOOK_SECRET, stamp, request.body, request.headers[SIGNATURE_HEADER.lower()]
        )


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (408, True)])
def test_webhook_4xx(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.script(Reply(status))
    with pytest.raises(DeliveryError) as info:
        webhook(receiver).send(hostile_message())
    assert info.value.retryable is retryable


def test_webhook_hanging_receiver_times_out(receiver: Receiver) -> None:
    receiver.script(Reply(200, delay=10))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        webhook(receiver).send(hostile_message())
    assert time.monotonic() - started < TIMEOUT + 2
    assert info.value.retryable


def test_webhook_connection_refused_is_retryable() -> None:
    server = Receiver()
    url = server.url("/hook")
    server.close()
    channel = WebhookChannel(url=url, timeout=TIMEOUT, allow_private=True)
    with pytest.raises(DeliveryError) as info:
        channel.send(hostile_message())
    assert info.value.retryable
    # the reason in the operating system's words, not only the exception's name
    assert str(info.value).endswith(": ConnectError (Connection refused)"), str(info.value)


def test_webhook_redirect_is_not_followed(receiver: Receiver, other_receiver: Receiver) -> None:
    receiver.script(Reply(302, {"Location": other_receiver.url("/internal")}))
    with pytest.raises(DeliveryError) as info:
        webhook(receiver).send(hostile_message())
    assert not info.value.retryable and "redirect" in str(info.value)
    assert len(receiver.requests) == 1 and other_receiver.requests == []


def test_webhook_refuses_private_destinations_at_save_and_send(receiver: Receiver) -> None:
    for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "0x7f.1"):
        url = receiver.url("/hook", host=host)
        channel = WebhookChannel(url=url, timeout=TIMEOUT, allow_http=True)
        with pytest.raises(UnsafeURLError):
            channel.validate()
        with pytest.raises(DeliveryError) as info:
            channel.send(hostile_message())
        assert not info.value.retryable
    assert receiver.requests == []


def test_webhook_recheck_at_send_defeats_dns_rebinding(receiver: Receiver) -> None:
    answers = [["93.184.216.34"], ["127.0.0.1"]]

    def rebinding(host: str, port: int) -> Sequence[str]:
        return answers.pop(0)

    url = receiver.url("/hook", host="rebind.example.test")
    channel = WebhookChannel(url=url, timeout=TIMEOUT, allow_http=True, resolver=rebinding)
    channel.validate()  # public at save time
    with pytest.raises(DeliveryError) as info:
        channel.send(hostile_message())  # loopback at send time
    assert not info.value.retryable and "non-public" in str(info.value)
    assert receiver.requests == []


def test_webhook_connects_to_the_checked_address(receiver: Receiver) -> None:
    """The name only exists in the stub resolver: the request can only arrive through the pin."""
    resolver: Resolver = lambda host, port: ["127.0.0.1"]  # noqa: E731
    url = receiver.url("/hook", host="alerts.example.test")
    webhook_channel = WebhookChannel(
        url=url, timeout=TIMEOUT, allow_private=True, resolver=resolver
    )
    webhook_channel.send(hostile_message())
    (request,) = receiver.requests
    assert request.headers["host"] == f"alerts.example.test:{receiver.port}"


def test_unresolvable_host_is_retryable() -> None:
    def failing(host: str, port: int) -> Sequence[str]:
        raise OSError("temporary failure in name resolution")

    channel = WebhookChannel(url="https://hooks.example.test/x", timeout=TIMEOUT, resolver=failing)
    with pytest.raises(DeliveryError) as info:
        channel.send(hostile_message())
    assert info.value.retryable and "cannot resolve" in str(info.value)


# --- HTTPS with the pinned address: TLS still checks the original name -------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.test and 127.0.0.1 (needs openssl)."""
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"), "hooks.example.test")
    if made is None:
        pytest.skip("openssl is not installed")
    return made


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Receiver(tls=context)
    yield server
    server.close()


def test_https_pinned_address_verifies_the_original_name(
    tls_receiver: Receiver, certificate: tuple[Path, Path]
) -> None:
    client_tls = ssl.create_default_context(cafile=str(certificate[0]))

    def resolver(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    good = WebhookChannel(
        url=tls_receiver.url("/hook", scheme="https", host="hooks.example.test"),
        timeout=2.0,
        allow_private=True,
        resolver=resolver,
        ssl_context=client_tls,
    )
    good.send(hostile_message())
    assert tls_receiver.requests[0].headers["host"] == f"hooks.example.test:{tls_receiver.port}"
    # the certificate also covers 127.0.0.1, so this only fails if the *name* is verified
    wrong = WebhookChannel(
        url=tls_receiver.url("/hook", scheme="https", host="evil.example.test"),
        timeout=2.0,
        allow_private=True,
        resolver=resolver,
        ssl_context=client_tls,
    )
    with pytest.raises(DeliveryError) as info:
        wrong.send(hostile_message())
    assert info.value.retryable and "certificate verification failed" in str(info.value)
    assert len(tls_receiver.requests) == 1
