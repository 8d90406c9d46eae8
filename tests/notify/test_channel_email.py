"""The email channel against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor.notify.base import DeliveryError
from monitor.notify.email import EmailChannel, message_id
from monitor.notify.message import AlertItem, Message
from tests.alerts.servers import Sink, free_port, self_signed_certificate

SENDER = "alerts@touchpoint.example"
RECIPIENTS = ("team@brand.example", "oncall@brand.example")
PASSWORD = "SMTP-PASSWORD-789"
TIMEOUT = 0.5
HOSTILE_TEXT = (
    "<script>alert(1)</script> <!channel> <@U123ABC> <https://evil|click> &lt;!channel&gt;\r\n"
    "Bcc: attacker@example.com\r\n\r\nX-Injected: 1 \x1b[31mred\x1b[0m NUL\x00 \u202eRTL"
)


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    """Accepts user/PASSWORD only."""
    ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def start_smtp() -> Iterator[Any]:
    """Start aiosmtpd controllers with a fresh sink; all are stopped after the test."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Sink, int]:
        sink = Sink()
        port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return sink, port

    yield start
    for controller in controllers:
        controller.stop()


def channel(port: int, **kw: Any) -> EmailChannel:
    """An email channel to 127.0.0.1:port without TLS."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": SENDER,
        "recipients": RECIPIENTS,
        "timeout": TIMEOUT,
    }
    options.update(kw)
    return EmailChannel(**options)


def hostile_message(key: str = "fp-mail:1") -> Message:
    """A message with a hostile title and item."""
    item = AlertItem(
        text=HOSTILE_TEXT,
        url="javascript:alert(1)",
        author="<b>evil</b>\r\nBcc: x@example.com",
        platform="x",
        created_at="2026-01-01T00:00:00Z",
    )
    safe = AlertItem(
        text="a normal mention",
        url="https://x.com/someone/status/1",
        author="someone",
        platform="x",
        created_at="2026-01-01T00:00:00Z",
    )
    return Message(
        key=key,
        brand="acme",
        kind="unanswered_mention",
        severity="critical",
        title="Hello\r\nBcc: attacker@example.com\u2028X-Evil: 1\u0085 end",
        summary="2 mentions unanswered",
        items=(item, safe),
        created_at="2026-01-01T00:00:00Z",
    )


def parse(raw: bytes) -> EmailMessage:
    """Parse a received message."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_delivers_multipart_with_stable_message_id(start_smtp: Any) -> None:
    sink, port = start_smtp()
    mail = channel(port)
    mail.send(hostile_message())
    mail.send(hostile_message())  # a retry of the same delivery
    assert len(sink.received) == 2
    first, second = (parse(raw) for _, _, raw in sink.received)
    ids = {str(first["Message-ID"]).strip(), str(second["Message-ID"]).strip()}
    assert ids == {message_id("fp-mail:1", SENDER)}
    assert message_id("fp-mail:1", SENDER).endswith("@touchpoint.example>")
    assert first.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in first.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    other = channel(port)
    other.send(hostile_message("fp-mail:2"))
    assert parse(sink.received[2][2])["Message-ID"] != first["Message-ID"]


def test_hostile_subject_gives_one_header_and_no_extra_recipient(start_smtp: Any) -> None:
    sink, port = start_smtp()
    channel(port).send(hostile_message())
    ((mail_from, rcpt_tos, raw),) = sink.received
    assert mail_from == SENDER
    assert rcpt_tos == list(RECIPIENTS)
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].lower()
        for line in header_block.split(b"\r\n")
        if line and not line[:1].isspace()
    ]
    assert names.count(b"subject") == 1
    assert b"bcc" not in names and b"x-evil" not in names and b"x-injected" not in names
    parsed = parse(raw)
    subject = str(parsed["Subject"]).strip()  # the header may be folded after "Subject:"
    assert subject.startswith("[touchpoint] [CRITICAL] acme: Hello Bcc: attacker@example.com")
    for bad in ("\r", "\n", "\u2028", "\u0085"):
        assert bad not in subject
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None


def test_bodies_are_neutralised(start_smtp: Any) -> None:
    sink, port = start_smtp()
    channel(port).send(hostile_message())
    parsed = parse(sink.received[0][2])
    text_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    text = text_part.get_content()
    html = html_part.get_content()
    for body in (text, html):
        for bad in ("\x1b", "\x00", "\u202e", "javascript:"):
            assert bad not in body
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html
    assert 'href="https://x.com/someone/status/1"' in html
    assert "https://x.com/someone/status/1" in text
    assert "X-Injected" not in parsed  # body text never becomes a header


def test_451_is_retryable_then_delivered_once(start_smtp: Any) -> None:
    sink, port = start_smtp()
    sink.data_replies = ["451 4.3.0 Try again later"]
    mail = channel(port)
    with pytest.raises(DeliveryError) as info:
        mail.send(hostile_message())
    assert info.value.retryable and "451" in str(info.value)
    assert sink.received == []
    mail.send(hostile_message())
    assert len(sink.received) == 1


def test_550_recipient_is_permanent(start_smtp: Any) -> None:
    sink, port = start_smtp()
    sink.rcpt_replies = ["550 5.1.1 No such user", "550 5.1.1 No such user"]
    with pytest.raises(DeliveryError) as info:
        channel(port).send(hostile_message())
    assert not info.value.retryable and "550" in str(info.value)
    assert sink.received == []


def test_550_at_data_is_permanent(start_smtp: Any) -> None:
    sink, port = start_smtp()
    sink.data_replies = ["554 5.7.1 Rejected as spam"]
    with pytest.raises(DeliveryError) as info:
        channel(port).send(hostile_message())
    assert not info.value.retryable


def test_one_recipient_deferred_is_retryable(start_smtp: Any) -> None:
    sink, port = start_smtp()
    sink.rcpt_replies = ["450 4.2.1 Mailbox busy"]
    with pytest.raises(DeliveryError) as info:
        channel(port).send(hostile_message())
    assert info.value.retryable and "deferred" in str(info.value)


def test_stalled_server_times_out_within_the_timeout() -> None:
    """A listener that accepts connections and never greets."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            channel(port).send(hostile_message())
        elapsed = time.monotonic() - started
    assert info.value.retryable and "timed out" in str(info.value)
    assert elapsed < TIMEOUT + 1.5


def test_slow_data_times_out(start_smtp: Any) -> None:
    sink, port = start_smtp()
    sink.data_delay = 3
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        channel(port).send(hostile_message())
    assert info.value.retryable
    assert time.monotonic() - started < TIMEOUT + 1.5


def test_no_listener_is_retryable() -> None:
    port = free_port()
    with pytest.raises(DeliveryError) as info:
        channel(port).send(hostile_message())
    assert info.value.retryable


def test_starttls_required_but_not_offered_is_permanent(start_smtp: Any) -> None:
    sink, port = start_smtp()
    with pytest.raises(DeliveryError) as info:
        channel(port, security="starttls").send(hostile_message())
    assert not info.value.retryable and "STARTTLS" in str(info.value)
    assert sink.received == []


def test_login_failure_is_permanent_and_hides_the_password(start_smtp: Any) -> None:
    sink, port = start_smtp(authenticator=authenticator, auth_require_tls=False)
    channel(port, username="user", password=PASSWORD).send(hostile_message())
    assert len(sink.received) == 1
    bad = channel(port, username="user", password=PASSWORD + "-wrong")
    with pytest.raises(DeliveryError) as info:
        bad.send(hostile_message())
    assert not info.value.retryable and "535" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(bad)


def test_credentials_without_tls_refused_for_remote_hosts() -> None:
    with pytest.raises(ValueError, match="without TLS"):
        EmailChannel(
            host="smtp.example.com",
            security="none",
            username="u",
            password="p",
            sender=SENDER,
            recipients=RECIPIENTS,
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"sender": "alerts@example.com\r\nBcc: x@example.com"},
        {"recipients": ["team@example.com\nBcc: x@example.com"]},
        {"recipients": []},
        {"recipients": "team@example.com"},
        {"sender": "Alerts <alerts@example.com>"},
        {"security": "tls"},
        {"host": "smtp.example.com\r\n"},
    ],
)
def test_bad_settings_refused(bad: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "host": "smtp.example.com",
        "sender": SENDER,
        "recipients": RECIPIENTS,
    }
    options.update(bad)
    with pytest.raises(ValueError):
        EmailChannel(**options)


# --- TLS: STARTTLS and implicit TLS against a self-signed certificate ----------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (needs openssl)."""
    made = self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"), "localhost")
    if made is None:
        pytest.skip("openssl is not installed")
    return made


def contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the certificate)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*certificate)
    return server, ssl.create_default_context(cafile=str(certificate[0]))


def test_starttls_delivers(start_smtp: Any, certificate: tuple[Path, Path]) -> None:
    server_tls, client_tls = contexts(certificate)
    sink, port = start_smtp(tls_context=server_tls, require_starttls=True)
    channel(port, security="starttls", ssl_context=client_tls).send(hostile_message())
    assert len(sink.received) == 1


def test_implicit_tls_delivers(start_smtp: Any, certificate: tuple[Path, Path]) -> None:
    server_tls, client_tls = contexts(certificate)
    sink, port = start_smtp(ssl_context=server_tls)
    channel(port, security="ssl", ssl_context=client_tls).send(hostile_message())
    assert len(sink.received) == 1


def test_untrusted_certificate_is_refused(start_smtp: Any, certificate: tuple[Path, Path]) -> None:
    server_tls, _ = contexts(certificate)
    sink, port = start_smtp(tls_context=server_tls, require_starttls=True)
    with pytest.raises(DeliveryError) as info:
        channel(port, security="starttls").send(hostile_message())  # system CAs only
    assert "certificate verification failed" in str(info.value)
    assert sink.received == []
