"""The digest by email, against a real SMTP server (aiosmtpd on 127.0.0.1): once per brand, day
and recipient, retried when refused or interrupted, never twice once accepted."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from monitor import store
from monitor.config import Settings
from monitor.digest import deliver_due
from monitor.digest.send import SEND_LEASE
from tests.alerts.servers import Sink, free_port
from tests.digest import fixture

TEAM, OPS = "team@brand.example", "ops@brand.example"


def digest_config(port: int, *, recipients: str = f'["{TEAM}", "{OPS}"]') -> str:
    return (
        f'[alerts.channels.mail]\ntype = "email"\nhost = "127.0.0.1"\nport = {port}\n'
        'security = "none"\nsender = "alerts@brand.example"\nrecipients = ["x@brand.example"]\n'
        "timeout_seconds = 5\n\n"
        f'[digest]\nrecipients = {recipients}\nsend_time = "08:00"\n'
        'sender = "digest@brand.example"\n'
    )


@pytest.fixture
def settings(db: Database, tmp_path: Path, smtp: tuple[Sink, int]) -> Settings:
    fixture.fill(db)
    return fixture.settings(tmp_path / "touchpoint.toml", digest_config(smtp[1]))


def received(sink: Sink) -> list[tuple[list[str], EmailMessage]]:
    return [
        (rcpt, email.message_from_bytes(content, policy=email.policy.SMTP))  # type: ignore[misc]
        for _, rcpt, content in sink.received
    ]


def test_digest_sent_twice_reaches_each_recipient_once(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    assert deliver_due(db, settings, fixture.AS_OF) == 2
    assert deliver_due(db, settings, fixture.AS_OF) == 0
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(hours=3)) == 0
    mails = received(sink)
    assert sorted(rcpt[0] for rcpt, _ in mails) == [OPS, TEAM]
    assert all(len(rcpt) == 1 for rcpt, _ in mails)  # one transaction per recipient
    _, mail = mails[0]
    assert mail["Subject"] == "[touchpoint] acme digest for 2026-11-20, 2 unanswered"
    assert mail["From"] == "digest@brand.example"
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert 'id="mix-chart"' in html and "&lt;script&gt;" in html
    assert "OLDEST UNANSWERED MENTIONS (2 in all)" in text
    sends = store.get_digest_sends(db, "acme", "2026-11-20")
    assert {r: s.state for r, s in sends.items()} == {TEAM: "sent", OPS: "sent"}


def test_digest_an_address_written_another_way_is_not_sent_again(
    db: Database, settings: Settings, smtp: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, port = smtp
    assert deliver_due(db, settings, fixture.AS_OF) == 2
    shouted = f'["{TEAM.upper()}", "{OPS.title()}"]'
    edited = fixture.settings(tmp_path / "edited.toml", digest_config(port, recipients=shouted))
    assert deliver_due(db, edited, fixture.AS_OF + timedelta(hours=1)) == 0
    assert len(sink.received) == 2


def test_digest_waits_for_the_local_send_time(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    # 06:59 UTC is 07:59 in Berlin: not yet
    assert deliver_due(db, settings, fixture.AS_OF - timedelta(minutes=1)) == 0
    assert sink.received == []
    # 00:30 in Berlin on the 22nd: yesterday is the 21st now, and its time has not come
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(hours=16, minutes=30)) == 0
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(days=1)) == 2
    assert set(store.get_digest_sends(db, "acme", "2026-11-21")) == {TEAM, OPS}
    assert store.get_digest_sends(db, "acme", "2026-11-20") == {}


def test_digest_days_missed_while_down_are_sent_once_each(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    assert deliver_due(db, settings, fixture.AS_OF) == 2  # the 20th only: the first digest
    # down for three days: at 08:00 on the 24th the 21st, 22nd and 23rd are due, once each
    back = fixture.AS_OF + timedelta(days=3)
    assert deliver_due(db, settings, back) == 6
    assert deliver_due(db, settings, back + timedelta(hours=1)) == 0
    days = [str(mail["Subject"]).split(" digest for ")[1][:10] for _, mail in received(sink)]
    assert sorted(days) == sorted(2 * ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"])
    assert store.last_digest_day(db, "acme") == "2026-11-23"


def test_digest_catch_up_is_bounded_to_a_week(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    assert deliver_due(db, settings, fixture.AS_OF) == 2
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(days=30)) == 2 * 7


def test_digest_temporary_refusal_is_retried_later(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    sink.data_replies = ["451 4.3.0 try again later"]  # the first message only
    assert deliver_due(db, settings, fixture.AS_OF) == 1
    first = store.get_digest_sends(db, "acme", "2026-11-20")[TEAM]
    assert (first.state, first.attempts) == ("failed", 1)
    # not before the wait is over
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(minutes=1)) == 0
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(minutes=6)) == 1
    assert sorted(rcpt[0] for rcpt, _ in received(sink)) == [OPS, TEAM]
    assert store.get_digest_sends(db, "acme", "2026-11-20")[TEAM].state == "sent"


def test_digest_permanent_refusal_gives_up(
    db: Database, settings: Settings, smtp: tuple[Sink, int]
) -> None:
    sink, _ = smtp
    sink.rcpt_replies = ["550 5.1.1 no such user"]
    assert deliver_due(db, settings, fixture.AS_OF) == 1
    assert store.get_digest_sends(db, "acme", "2026-11-20")[TEAM].state == "dead"
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(hours=2)) == 0
    assert [rcpt for rcpt, _ in received(sink)] == [[OPS]]


def test_digest_crash_after_acceptance_is_sent_again_with_the_same_id(
    db: Database, settings: Settings, smtp: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, _ = smtp
    record = store.record_digest_sent

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed between the SMTP answer and the commit")

    monkeypatch.setattr(store, "record_digest_sent", crash)
    with pytest.raises(KeyboardInterrupt):
        deliver_due(db, settings, fixture.AS_OF)
    assert len(sink.received) == 1  # accepted, but not recorded
    monkeypatch.setattr(store, "record_digest_sent", record)
    # the crashed send stays claimed for its lease (another process may be sending it), then
    # goes again; the other recipient was never tried
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(minutes=1)) == 1
    assert deliver_due(db, settings, fixture.AS_OF + SEND_LEASE + timedelta(minutes=1)) == 1
    mails = received(sink)
    assert [rcpt[0] for rcpt, _ in mails] == [TEAM, OPS, TEAM]
    # at least once: the repeat carries the same Message-ID, for the receiver to drop it
    assert mails[0][1]["Message-ID"] == mails[2][1]["Message-ID"]


def test_digest_claimed_by_another_process_is_not_sent_twice(
    db: Database, settings: Settings, smtp: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, _ = smtp
    other = store.open_db(tmp_path / "store.db")  # a second connection to it: the CLI beside
    day = fixture.DAY.isoformat()
    lease = fixture.AS_OF + SEND_LEASE
    assert store.claim_digest_send(other, "acme", day, TEAM, now=fixture.AS_OF, lease_until=lease)
    assert deliver_due(db, settings, fixture.AS_OF) == 1  # OPS only: TEAM is being sent
    assert not store.claim_digest_send(
        other, "acme", day, OPS, now=fixture.AS_OF, lease_until=lease
    )  # sent already
    assert [rcpt for rcpt, _ in received(sink)] == [[OPS]]


def test_digest_not_configured_sends_nothing(db: Database, tmp_path: Path) -> None:
    fixture.fill(db)
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    assert not settings.digest.enabled
    assert deliver_due(db, settings, fixture.AS_OF) == 0


def test_digest_unreachable_server_is_recorded_not_raised(db: Database, tmp_path: Path) -> None:
    fixture.fill(db)
    settings = fixture.settings(tmp_path / "touchpoint.toml", digest_config(free_port()))
    assert deliver_due(db, settings, fixture.AS_OF) == 0
    sends = store.get_digest_sends(db, "acme", "2026-11-20")
    assert {s.state for s in sends.values()} == {"failed"}


def test_digest_unusable_address_gives_up_without_raising(
    db: Database, tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    fixture.fill(db)
    # passes the config's plain check, but is no address an SMTP envelope takes
    config = digest_config(smtp[1], recipients=f'["a..b@brand.example", "{OPS}"]')
    settings = fixture.settings(tmp_path / "touchpoint.toml", config)
    assert deliver_due(db, settings, fixture.AS_OF) == 1
    sends = store.get_digest_sends(db, "acme", "2026-11-20")
    assert {r: s.state for r, s in sends.items()} == {"a..b@brand.example": "dead", OPS: "sent"}
