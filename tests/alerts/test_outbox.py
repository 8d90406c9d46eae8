"""Alerts end to end: store -> rules -> outbox -> a real SMTP server and real HTTP receivers."""

from __future__ import annotations

import dataclasses
import email
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message as MimeMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, store
from monitor.alerts import outbox
from monitor.cli import cli
from monitor.config import ConfigError, Settings, load_settings
from monitor.models import Post, RunResult, StreamKey, iso, parse_iso
from monitor.notify.message import Message
from tests.alerts.servers import Receiver, Reply, Sink, free_port

HOSTILE = (
    "<script>alert(1)</script> <!channel> <!here> <@U123ABC> <https://evil|click> "
    "\r\nBcc: attacker@example.com \x1b[31mred\x1b[0m"
)


@dataclass
class Rig:
    """A store, a config with email, Slack and webhook channels, and the real receivers."""

    db: Database
    settings: Settings
    config: Path
    sink: Sink
    slack: Receiver
    hook: Receiver

    def run(self, *, at: timedelta = timedelta(0)) -> outbox.DeliveryReport:
        now = clock.now() + at
        outbox.evaluate(self.db, self.settings, now=now)
        channels = outbox.build_channels(self.settings)
        return outbox.deliver(self.db, channels, now=now, sleep=lambda s: None)

    def counts(self) -> tuple[int, int, int]:
        return len(self.sink.received), len(self.slack.requests), len(self.hook.requests)

    def configure(self, text: str) -> None:
        """Write ``text`` as the config and load it."""
        self.config.write_text(text)
        self.settings = load_settings(self.config)

    def emails(self) -> list[MimeMessage]:
        return [email.message_from_bytes(raw) for _, _, raw in self.sink.received]


def config_text(smtp_port: int, slack: Receiver, hook: Receiver, *, allow: bool = True) -> str:
    flag = "true" if allow else "false"
    return f"""
[store]
path = "touchpoint.db"

[alerts]
repeat_hours = 4

[alerts.channels.mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "touchpoint@example.com"
recipients = ["social@example.com"]
timeout_seconds = 2

[alerts.channels.slack]
type = "slack"
webhook_url_env = "TEST_SLACK_URL"
allow_private_addresses = {flag}
timeout_seconds = 0.5

[alerts.channels.hook]
type = "webhook"
url = "{hook.url("/touchpoint")}"
secret_env = "TEST_HOOK_SECRET"
allow_private_addresses = {flag}
timeout_seconds = 2

[[brands]]
name = "acme"
[brands.accounts]
x = "acme"
"""


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    slack, hook = Receiver(), Receiver()
    monkeypatch.setenv("TEST_SLACK_URL", slack.url("/services/T000/B000/secretpath"))
    monkeypatch.setenv("TEST_HOOK_SECRET", "hook-secret-123")
    config = tmp_path / "touchpoint.toml"
    config.write_text(config_text(port, slack, hook))
    settings = load_settings(config)
    db = store.open_db(settings.db_path)
    yield Rig(db, settings, config, sink, slack, hook)
    db.conn.close()
    slack.close()
    hook.close()
    controller.stop()


def mention(n: int, *, minutes_ago: float, text: str = "where is my order?") -> Post:
    return Post(
        platform="x",
        native_id=str(1000 + n),
        brand="acme",
        author_id=f"u{n}",
        author_handle=f"user{n}",
        is_brand=False,
        kind="mention",
        text=text,
        url=f"https://x.com/user{n}/status/{1000 + n}",
        created_at=iso(clock.now() - timedelta(minutes=minutes_ago)),
        conversation_id=f"x:{1000 + n}",
    )


def brand_reply(to: Post) -> Post:
    return Post(
        platform="x",
        native_id=f"9{to.native_id}",
        brand="acme",
        author_id="b",
        author_handle="acme",
        is_brand=True,
        kind="reply",
        text="@user we're on it",
        url="",
        created_at=iso(clock.now()),
        in_reply_to_id=to.id,
        conversation_id=to.conversation_id,
    )


def broadcast(n: int, *, minutes_ago: float, brand: str = "acme", text: str = "") -> Post:
    """A post the brand's own account published ``minutes_ago``."""
    return Post(
        platform="x",
        native_id=str(n),
        brand=brand,
        author_id=brand,
        author_handle=brand,
        is_brand=True,
        kind="post",
        text=text or f"post {n}",
        url="",
        created_at=iso(clock.now() - timedelta(minutes=minutes_ago)),
    )


GLOBEX = '[[brands]]\nname = "globex"\naccounts = {x = "globex"}\n'


def keys(receiver: Receiver) -> list[str]:
    return [r.headers["idempotency-key"] for r in receiver.requests]


def test_outbox_unanswered_mention_one_message_per_channel_repeat_and_resolve(rig: Rig) -> None:
    late, answered = mention(1, minutes_ago=90), mention(2, minutes_ago=90)
    store.upsert_posts(rig.db, [late, answered, brand_reply(answered)])
    report = rig.run()
    assert report.sent == 3 and rig.counts() == (1, 1, 1)
    (alert,) = store.get_alerts(rig.db, states=["open"])
    assert alert.fingerprint == f"unanswered_mention:acme:{late.id}"
    assert rig.hook.requests[0].json()["items_total"] == 1

    rig.run(at=timedelta(hours=1))  # still open, inside the 4 h repeat interval
    assert rig.counts() == (1, 1, 1)
    rig.run(at=timedelta(hours=4, minutes=1))
    assert rig.counts() == (2, 2, 2)

    store.upsert_posts(rig.db, [brand_reply(late)])
    rig.run(at=timedelta(hours=9))
    assert rig.counts() == (2, 2, 2)
    assert [a.state for a in store.get_alerts(rig.db)] == ["resolved"]


def test_outbox_a_mention_past_ignore_older_than_days_expires_and_is_not_resolved(
    rig: Rig,
) -> None:
    """The rule stops looking at a mention after ignore_older_than_days (14): its alert closes
    as expired, never as resolved, since nobody answered; an answered one still resolves."""
    late, answered = mention(1, minutes_ago=90), mention(2, minutes_ago=90)
    store.upsert_posts(rig.db, [late, answered])
    rig.run()
    assert {a.state for a in store.get_alerts(rig.db)} == {"open"}
    store.upsert_posts(rig.db, [brand_reply(answered)])
    evaluation = outbox.evaluate(rig.db, rig.settings, now=clock.now() + timedelta(days=14))
    assert evaluation.resolved == 2
    states = {a.fingerprint.split(":", 2)[2]: a.state for a in store.get_alerts(rig.db)}
    assert states == {late.id: "expired", answered.id: "resolved"}
    sent = rig.counts()
    rig.run(at=timedelta(days=15))  # an expired alert is not repeated
    assert rig.counts() == sent
    text = rig.config.read_text()
    rig.configure(text.replace("[alerts]\n", "[alerts]\nignore_older_than_days = 30\n"))
    rig.run(at=timedelta(days=15))  # looked at again: it reopens and is sent at once
    assert {a.state for a in store.get_alerts(rig.db, states=["open"])} == {"open"}
    assert rig.counts() == tuple(n + 1 for n in sent)


def test_outbox_waits_between_attempts_grow_and_are_jittered(rig: Rig) -> None:
    """Reliability plan #45: 500 three times, then 200: one message, sent at the 4th attempt;
    each wait is drawn below a ceiling that doubles (full jitter), never the ceiling itself."""
    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])
    rig.hook.script(Reply(500), Reply(500), Reply(500))
    waits: list[float] = []
    channels = outbox.build_channels(rig.settings)
    now = clock.now()
    outbox.evaluate(rig.db, rig.settings, now=now)

    outbox.deliver(rig.db, channels, now=now, sleep=waits.append)

    assert len(rig.hook.requests) == 4 and len(set(keys(rig.hook))) == 1
    deliveries = {d["channel"]: (d["state"], d["attempts"]) for d in rig.db["deliveries"].rows}
    assert deliveries == {"hook": ("sent", 4), "mail": ("sent", 1), "slack": ("sent", 1)}
    ceilings = [outbox.BASE_DELAY_SECONDS * 2**i for i in range(3)]
    assert len(waits) == 3
    assert all(0 <= w < c for w, c in zip(waits, ceilings, strict=True)), waits
    samples = [[outbox.next_wait(n) for _ in range(2_000)] for n in (1, 2, 3, 4)]
    for n, drawn in enumerate(samples, start=1):
        ceiling = outbox.BASE_DELAY_SECONDS * 2 ** (n - 1)
        assert max(drawn) < ceiling and max(drawn) > 0.9 * ceiling  # spread up to its ceiling
        assert len(set(drawn)) > 1_900  # jittered: no two retries in step
    means = [sum(drawn) / len(drawn) for drawn in samples]
    assert means == sorted(means) and means[-1] > 6 * means[0]  # growing: 0.25, 0.5, 1, 2 s
    assert max(outbox.next_wait(40) for _ in range(200)) <= outbox.MAX_DELAY_SECONDS


def test_outbox_retries_with_one_key_and_a_hanging_channel_blocks_no_other(rig: Rig) -> None:
    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])
    rig.hook.script(Reply(500), Reply(500), Reply(500))
    rig.slack.script(Reply(delay=10))
    started = time.monotonic()
    report = rig.run()
    assert time.monotonic() - started < 8
    assert len(rig.hook.requests) == 4 and len(set(keys(rig.hook))) == 1
    assert len(rig.sink.received) == 1
    assert report.sent == 3  # the hung Slack attempt timed out and was retried at once
    deliveries = {d["channel"]: d for d in rig.db["deliveries"].rows}
    assert deliveries["hook"]["attempts"] == 4 and deliveries["hook"]["state"] == "sent"
    assert deliveries["slack"]["attempts"] == 2


def test_outbox_two_passes_at_once_send_each_message_once(rig: Rig) -> None:
    # the daemon's alert job and a `touchpoint collect` delivering at the same moment
    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])
    now = clock.now()
    assert outbox.evaluate(rig.db, rig.settings, now=now).queued == 3
    rig.hook.script(Reply(delay=1.0))  # the first pass is still sending when the second looks
    reports: list[outbox.DeliveryReport] = []

    def one_pass() -> None:
        db = store.open_db(rig.settings.db_path)  # a process of its own: its own connection
        try:
            channels = outbox.build_channels(rig.settings)
            reports.append(outbox.deliver(db, channels, now=now, sleep=lambda s: None))
        finally:
            db.conn.close()

    passes = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in passes:
        t.start()
    for t in passes:
        t.join(30)
    assert rig.counts() == (1, 1, 1)
    assert sorted(r.sent for r in reports) == [0, 3]
    assert {d["state"] for d in rig.db["deliveries"].rows} == {"sent"}


def test_outbox_a_long_pass_keeps_its_claim_while_it_sends(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the store keeps whole seconds: a claim of 1.5 s, renewed, must still hold after 2 s
    monkeypatch.setattr(outbox, "CLAIM_SECONDS", 1.5)
    monkeypatch.setattr(outbox, "RENEW_SECONDS", 0.1)
    (key,) = queue_messages(rig.db, "hook", 1)
    rig.hook.script(Reply(500), Reply(500), Reply(500))  # 4 attempts, 0.8 s apart: about 2.4 s
    now = clock.now()
    channels = outbox.build_channels(rig.settings)
    reports: list[outbox.DeliveryReport] = []

    def slow_pass() -> None:
        db = store.open_db(rig.settings.db_path)  # a process of its own: its own connection
        try:
            reports.append(outbox.deliver(db, channels, now=now, sleep=lambda s: time.sleep(0.8)))
        finally:
            db.conn.close()

    slow = threading.Thread(target=slow_pass)
    slow.start()
    time.sleep(2.0)  # past the first claim: only its renewals keep the message
    other = outbox.deliver(rig.db, channels, now=now + timedelta(seconds=2.0))
    slow.join(10)
    assert other == outbox.DeliveryReport(0, 0, 0)  # it found nothing to send
    assert [r.sent for r in reports] == [1]
    assert keys(rig.hook) == [key] * 4
    assert [d["state"] for d in rig.db["deliveries"].rows] == ["sent"]


class Died(BaseException):
    """The process ending in the middle of a pass (what kill -9 does to a thread)."""


def queue_messages(db: Database, channel: str, n: int) -> list[str]:
    now = clock.now()
    keys = [f"test-{i}" for i in range(n)]
    with store.write_transaction(db):
        for key in keys:
            message = Message(key, "acme", "test", "warning", f"title {key}", "summary")
            store.queue_delivery(
                db,
                key=key,
                channel=channel,
                brand="acme",
                kind="test",
                severity="warning",
                alert_ids=[],
                message=dataclasses.asdict(message),
                now=now,
            )
    return keys


def test_outbox_slack_429_holds_that_channel_for_its_retry_after_and_no_other(rig: Rig) -> None:
    rig.slack.script(Reply(429, {"Retry-After": "30"}, b"rate_limited"))
    slack_keys = queue_messages(rig.db, "slack", 3)
    with store.write_transaction(rig.db):  # a message for the webhook too, queued alike
        rig.db.conn.execute("UPDATE deliveries SET channel = 'hook' WHERE key = 'test-2'")
    started = time.monotonic()
    report = rig.run()
    assert time.monotonic() - started < 5, "the Retry-After is not slept inside the pass"
    assert len(rig.slack.requests) == 1 and len(rig.hook.requests) == 1
    assert report.sent == 1 and report.retrying == 2
    rows = {d["key"]: d for d in rig.db["deliveries"].rows}
    assert [rows[k]["attempts"] for k in slack_keys[:2]] == [1, 0]  # the second was not tried
    for key in slack_keys[:2]:
        wait = parse_iso(rows[key]["next_attempt_at"]) - clock.now()
        assert timedelta(seconds=25) < wait <= timedelta(seconds=30)
    held = store.get_channel_holds(rig.db, now=clock.now())
    assert set(held) == {"slack"}

    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])  # new alerts, slack held still
    rig.run(at=timedelta(seconds=10))
    assert len(rig.slack.requests) == 1 and len(rig.hook.requests) == 2
    assert len(rig.sink.received) == 1
    rig.run(at=timedelta(seconds=31))
    assert len(rig.slack.requests) == 4  # the two held back and the new alert's message
    assert sorted(keys(rig.slack)[1:3]) == sorted(slack_keys[:2])


def test_outbox_slack_gets_at_most_one_message_a_second(rig: Rig) -> None:
    queue_messages(rig.db, "slack", 3)
    with store.write_transaction(rig.db):
        for key in ("hook-0", "hook-1", "hook-2"):
            rig.db.conn.execute(
                "INSERT INTO deliveries (key, channel, brand, kind, severity, alert_ids, message,"
                " created_at, state, attempts, next_attempt_at) SELECT ?, 'hook', brand, kind, "
                "severity, alert_ids, message, created_at, state, 0, next_attempt_at "
                "FROM deliveries WHERE key = 'test-0'",
                (key,),
            )
    report = outbox.deliver(rig.db, outbox.build_channels(rig.settings))
    assert report.sent == 6
    slack = [r.at for r in rig.slack.requests]
    assert all(b - a >= 0.95 for a, b in zip(slack, slack[1:], strict=False)), slack
    hook = [r.at for r in rig.hook.requests]
    assert hook[-1] - hook[0] < 0.9, "a webhook has no such limit"


def test_outbox_a_pass_that_dies_mid_batch_resends_only_what_it_had_not_sent(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "RENEW_SECONDS", 0.2)
    first, second, third = queue_messages(rig.db, "hook", 3)
    rig.hook.script(Reply(200), Reply(500))  # the second message's first attempt fails...

    def die(seconds: float) -> None:  # ...and the process dies before its retry
        raise Died

    channels = outbox.build_channels(rig.settings)
    now = clock.now()
    report = outbox.deliver(rig.db, channels, now=now, sleep=die)
    assert report.sent == 1 and keys(rig.hook) == [first, second]
    state = {d["key"]: d["state"] for d in rig.db["deliveries"].rows}
    assert state == {first: "sent", second: "pending", third: "pending"}  # the send was recorded

    later = now + timedelta(seconds=outbox.CLAIM_SECONDS / 2)
    assert outbox.deliver(rig.db, channels, now=later).sent == 0  # still claimed by the dead pass
    lapsed = now + timedelta(seconds=outbox.CLAIM_SECONDS + 1)
    assert outbox.deliver(rig.db, channels, now=lapsed).sent == 2
    assert keys(rig.hook) == [first, second, second, third]  # the first one never again
    assert {d["state"] for d in rig.db["deliveries"].rows} == {"sent"}


def test_outbox_a_message_given_up_is_reported_on_the_other_channels_with_its_items(
    rig: Rig,
) -> None:
    late = mention(1, minutes_ago=120, text="my parcel never came")
    store.upsert_posts(rig.db, [late])
    rig.sink.rcpt_replies.append("550 5.1.1 <social@example.com>: no such user")  # permanent
    first = rig.run()
    assert (first.sent, first.dead) == (2, 1) and rig.counts() == (0, 1, 1)
    second = rig.run(at=timedelta(seconds=1))  # the notices, queued when the mail was given up
    assert second.sent == 2 and rig.counts() == (0, 2, 2)
    notice = rig.hook.requests[1].json()
    assert notice["kind"] == outbox.DELIVERY_FAILED and notice["severity"] == "critical"
    assert notice["title"] == "acme: an alert could not be delivered to mail"
    assert "550" in notice["summary"] and "no such user" in notice["summary"]
    assert [i["text"] for i in notice["items"]] == ["my parcel never came"]  # nothing lost
    assert "my parcel never came" in rig.slack.requests[1].body.decode()
    assert rig.run(at=timedelta(minutes=5)).sent == 0 and rig.counts() == (0, 2, 2)  # once only


def test_outbox_a_data_gap_is_reported_once_on_every_channel(rig: Rig) -> None:
    now = clock.now()
    why = "the listing ended after 1000 items without reaching the newest item stored before"
    key = StreamKey("acme", "x", "mentions")
    store.record_run(rig.db, RunResult(key, started_at=now, finished_at=now, pages=10, gap=why))
    assert rig.run().sent == 3 and rig.counts() == (1, 1, 1)
    payload = rig.hook.requests[0].json()
    assert payload["kind"] == "data_gap"
    assert payload["title"] == "acme: 1 stream may have missed items"
    assert why in json.dumps(payload["items"])
    rig.run(at=timedelta(hours=1))  # (the stream then goes stale: a health alert, another kind)
    rig.run(at=timedelta(hours=4, minutes=1))  # when a repeat would be due, it has resolved
    kinds = [r.json()["kind"] for r in rig.hook.requests]
    assert kinds.count("data_gap") == 1
    gaps = [a.state for a in store.get_alerts(rig.db) if a.kind == "data_gap"]
    assert gaps == ["resolved"]


def test_outbox_a_failing_classifier_and_a_crash_loop_reach_every_channel_then_resolve(
    rig: Rig,
) -> None:
    now = clock.now()
    for _ in range(3):  # the default policy alerts on the third failure in a row
        store.record_classification(rig.db, error="model.skops: sha256 mismatch, refused", now=now)
    for pid in range(4):  # three starts that followed a run killed without a clean stop
        store.record_daemon_start(rig.db, pid=pid, now=now)
    assert rig.run().sent == 3 and rig.counts() == (1, 1, 1)
    payload = rig.hook.requests[0].json()
    assert payload["kind"] == "service_health" and payload["severity"] == "critical"
    assert payload["title"] == "touchpoint needs attention (2 problems)"
    assert "posts are not being labelled" in payload["summary"]
    body = json.dumps(payload["items"])
    assert "classifier" in body and "sha256 mismatch, refused" in body
    assert "restarted 3 times in 30 min" in payload["summary"] and "killed, crashed" in body
    mail = rig.emails()[0]
    text = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    assert "sha256 mismatch, refused" in text.get_payload(decode=True).decode()
    assert "touchpoint needs attention" in mail["Subject"]

    store.record_classification(rig.db, error=None)
    rig.run(at=timedelta(minutes=31))  # the restarts are out of the window, labelling works
    assert rig.counts() == (1, 1, 1)
    states = {a.fingerprint: a.state for a in store.get_alerts(rig.db)}
    assert states == {
        "service_health:acme:classifier": "resolved",
        "service_health:acme:restarts": "resolved",
    }


def test_outbox_a_service_problem_reaches_a_channel_brands_share_once(rig: Rig) -> None:
    # globex's alerts go to the webhook only, which acme uses too
    rig.configure(rig.config.read_text() + GLOBEX + '[brands.alerts]\nchannels = ["hook"]\n')
    for _ in range(3):
        store.record_classification(rig.db, error="model.skops: sha256 mismatch, refused")
    assert rig.run().sent == 3 and rig.counts() == (1, 1, 1)  # not two on the webhook
    assert {a.brand for a in store.get_alerts(rig.db)} == {"acme", "globex"}  # both recorded
    rig.run(at=timedelta(hours=4, minutes=1))  # repeated: again once per channel
    assert rig.counts() == (2, 2, 2)
    later = clock.now() + timedelta(hours=4, minutes=2)
    for pid in range(1, 5):  # a crash loop: a new problem, while the other goes on
        store.record_daemon_start(rig.db, pid=pid, now=later - timedelta(minutes=pid))
    rig.run(at=timedelta(hours=4, minutes=2))  # at once: service problems are not grouped
    assert rig.counts() == (3, 3, 3)
    assert "restarted" in rig.hook.requests[-1].json()["summary"]


def test_outbox_a_mention_of_two_brands_waits_for_each_brands_own_answer(rig: Rig) -> None:
    rig.configure(rig.config.read_text() + GLOBEX)
    # "@acme @globex where is my order?": acme's mentions stream stores it first
    of_acme = mention(1, minutes_ago=90)
    store.upsert_posts(rig.db, [of_acme, dataclasses.replace(of_acme, brand="globex")])
    rig.run()
    assert {(a.brand, a.fingerprint) for a in store.get_alerts(rig.db, states=["open"])} == {
        ("acme", f"unanswered_mention:acme:{of_acme.id}"),
        ("globex", f"unanswered_mention:globex:{of_acme.id}"),
    }
    assert rig.counts() == (2, 2, 2)  # a message for each brand
    store.upsert_posts(rig.db, [brand_reply(of_acme)])  # acme answers; globex has not
    rig.run(at=timedelta(minutes=5))
    assert {(a.brand, a.state) for a in store.get_alerts(rig.db)} == {
        ("acme", "resolved"),
        ("globex", "open"),
    }


def test_outbox_a_reply_of_the_brand_answering_for_it_answers_its_mention(rig: Rig) -> None:
    support = '[[brands]]\nname = "acme-care"\naccounts = {x = "acmecare"}\n'
    rig.configure(rig.config.read_text() + support)
    asked = mention(1, minutes_ago=90)
    # acme-care answers, tagging @acme: stored as acme's mention first, then as acme-care's reply
    answer = dataclasses.replace(
        brand_reply(asked), author_id="care", author_handle="acmecare", is_brand=False
    )
    as_care = dataclasses.replace(answer, brand="acme-care", is_brand=True, kind="reply")
    store.upsert_posts(rig.db, [asked, dataclasses.replace(answer, kind="mention")])
    store.upsert_posts(rig.db, [as_care])
    rig.run()  # acme-care's answer is not acme's: the mention waits
    assert [a.fingerprint for a in store.get_alerts(rig.db, states=["open"])] == [
        f"unanswered_mention:acme:{asked.id}"
    ]
    acme = '[[brands]]\nname = "acme"\n'
    rig.configure(rig.config.read_text().replace(acme, acme + 'answered_by = ["acme-care"]\n'))
    rig.run(at=timedelta(minutes=5))
    assert [a.state for a in store.get_alerts(rig.db)] == ["resolved"]


def test_outbox_a_brand_post_first_stored_as_another_brands_mention_counts_as_its_post(
    rig: Rig,
) -> None:
    rig.configure(rig.config.read_text() + GLOBEX)
    # globex's own posts, each mentioning acme: acme's mentions stream stores them first
    text = "Buy the new Globex x @acme bundle, 20% off today"
    pitches = [broadcast(n, minutes_ago=90 + n, brand="globex", text=text) for n in range(10)]
    as_mentions = [
        dataclasses.replace(p, brand="acme", is_brand=False, kind="mention") for p in pitches
    ]
    store.upsert_posts(rig.db, as_mentions)
    assert store.upsert_posts(rig.db, pitches) == (10, 0)
    (batch,) = store.iter_posts_to_label(rig.db, model_version="test")
    assert len(batch) == 10  # written by a brand: each gets a label
    store.upsert_labels(
        rig.db, [store.LabelRow(p.id, "sales-pitch", 0.9, {}, "test") for p in pitches]
    )
    rig.run()
    # a monitored brand's own posts tagging acme are no mentions waiting for acme's answer
    (alert,) = store.get_alerts(rig.db)
    assert alert.kind == "self_promotion"
    assert alert.brand == "globex" and alert.payload["share"] == 1.0


def test_outbox_500_mentions_become_one_grouped_message_per_channel(rig: Rig) -> None:
    store.upsert_posts(rig.db, [mention(n, minutes_ago=120 + n) for n in range(500)])
    rig.run()
    assert rig.counts() == (1, 1, 1)
    payload = rig.hook.requests[0].json()
    assert payload["items_total"] == 500 and payload["items"]
    assert "500 mentions waiting" in payload["title"]
    (mail,) = rig.emails()
    assert "500 mentions" in str(mail["Subject"])
    assert len(store.get_alerts(rig.db, states=["open"])) == 500


def mentions_told(hook: Receiver) -> list[list[str]]:
    """The mentions each webhook message listed (by URL), in the order they arrived."""
    return [[i["url"] for i in r.json()["items"]] for r in hook.requests]


def test_outbox_mentions_crossing_the_sla_pass_after_pass_make_a_message_per_interval(
    rig: Rig,
) -> None:
    """Reliability plan #50: a mention crosses the 1 h SLA every minute, and a pass runs every
    minute. The first goes out at once; the next wait out the group interval (5 minutes) and
    go out together, so 12 mentions make 4 messages, not 12, and none is left out."""
    late = [mention(n, minutes_ago=60.5 - n) for n in range(12)]  # mention n late at n - 0.5 min
    store.upsert_posts(rig.db, late)
    for minute in [*range(12), 15]:
        rig.run(at=timedelta(minutes=minute))
    told = mentions_told(rig.hook)
    assert [len(urls) for urls in told] == [1, 5, 5, 1]  # at 0, 5, 10 and 15 minutes
    assert sorted(u for urls in told for u in urls) == sorted(m.url for m in late)
    assert rig.counts() == (4, 4, 4)  # every channel alike

    grouping_off = "repeat_hours = 4\ngroup_interval_minutes = 0\n"
    rig.configure(rig.config.read_text().replace("repeat_hours = 4\n", grouping_off))
    again = [mention(100 + n, minutes_ago=60.5 - 20 - n) for n in range(3)]
    store.upsert_posts(rig.db, again)
    for minute in range(20, 23):
        rig.run(at=timedelta(minutes=minute))
    assert mentions_told(rig.hook)[4:] == [[m.url] for m in again]  # one a pass


def test_outbox_self_promotion_gives_one_alert(rig: Rig) -> None:
    posts = [broadcast(n, minutes_ago=60 * n) for n in range(10)]
    store.upsert_posts(rig.db, posts)
    labels = ["sales-pitch"] * 4 + ["inspiring"] * 6
    store.upsert_labels(
        rig.db,
        [
            store.LabelRow(p.id, label, 0.9, {label: 0.9}, "test")
            for p, label in zip(posts, labels, strict=True)
        ],
    )
    rig.run()
    rig.run(at=timedelta(minutes=5))
    (alert,) = store.get_alerts(rig.db)
    assert alert.kind == "self_promotion" and alert.payload["share"] == 0.4
    assert rig.counts() == (1, 1, 1)


def test_outbox_hostile_post_text_arrives_neutralised_everywhere(rig: Rig) -> None:
    store.upsert_posts(rig.db, [mention(1, minutes_ago=120, text=HOSTILE)])
    rig.run()
    slack_body = rig.slack.requests[0].body.decode()
    for raw in ("<!channel>", "<!here>", "<@U123ABC>", "<https://evil|click>", "<script>"):
        assert raw not in slack_body
    hook_body = json.loads(rig.hook.requests[0].body)
    assert "\x1b" not in json.dumps(hook_body) and "\r" not in hook_body["items"][0]["text"]
    (mail,) = rig.emails()
    assert mail.get_all("Bcc") is None
    ((_, recipients, raw),) = rig.sink.received
    assert recipients == ["social@example.com"]
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    body = html.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"<script>" not in body and b"&lt;script&gt;" in body
    assert b"\x1b" not in raw


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "[::1]"])
def test_outbox_private_webhook_refused_without_the_explicit_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    hook = Receiver()
    try:
        monkeypatch.setenv("TEST_SLACK_URL", f"http://{host}:9/services/x")
        monkeypatch.setenv("TEST_HOOK_SECRET", "s3cret-value")
        config = tmp_path / "touchpoint.toml"
        text = config_text(free_port(), hook, hook, allow=False)
        config.write_text(
            text.replace("127.0.0.1:", f"{host}:", 1).replace(
                hook.url("/touchpoint"), f"http://{host}:{hook.port}/touchpoint"
            )
        )
        monkeypatch.setenv("X_BEARER_TOKEN", "t0ken-value")
        result = CliRunner().invoke(cli, ["--config", str(config), "check-config"])
        assert result.exit_code == 1
        assert "alerts.channels." in result.stderr and "private" in result.stderr.lower()
        assert hook.requests == []
    finally:
        hook.close()


def test_check_config_names_a_slack_url_that_is_no_url_without_a_traceback(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/SLACKSEC\x01RET")
    monkeypatch.setenv("X_BEARER_TOKEN", "t0ken-value")
    result = CliRunner().invoke(cli, ["--config", str(rig.config), "check-config"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output + result.stderr
    # the key and the variable the URL comes from, never the URL itself
    assert "alerts.channels.slack.webhook_url_env: the URL in TEST_SLACK_URL: not a valid URL" in (
        result.stderr
    )
    assert "Fix: in TEST_SLACK_URL, copy the URL again" in result.stderr
    assert "SLACKSEC" not in result.stderr


@pytest.mark.parametrize(
    ("url", "problem", "fix"),
    [
        ("not a url", "scheme must be https", 'starting with https://, e.g. "https://'),
        ("https:///path", "no host", "starting with https://"),
        ("https://h.example/a#frag", "fragment", "leave out the part of the URL from #"),
        ("https://127.0.0.1/a", "non-public", "allow_private_addresses = true"),
    ],
)
def test_check_channels_gives_the_fix_for_what_is_wrong_with_the_url(
    tmp_path: Path, url: str, problem: str, fix: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[alerts.channels.hook]\ntype = "webhook"\nurl = "{url}"\n\n'
        '[[brands]]\nname = "a"\naccounts = {x = "a"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:  # the URL's form at load, its host by the check
        outbox.check_channels(load_settings(path))
    message = str(info.value)
    assert ": alerts.channels.hook.url: " in message and problem in message
    assert fix in message.split("Fix: ", 1)[1]
    if problem != "non-public":
        assert "public address" not in message


def test_outbox_held_back_while_the_mentions_stream_is_down(rig: Rig) -> None:
    from monitor.models import RunResult, StreamKey

    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])
    now = clock.now()
    for _ in range(3):
        store.record_run(
            rig.db,
            RunResult(
                key=StreamKey("acme", "x", "mentions"),
                started_at=now,
                outcome="failed",
                error="boom",
            ),
        )
    rig.run()
    kinds = [a.kind for a in store.get_alerts(rig.db)]
    assert kinds == ["collector_health"]
    payload: Any = rig.hook.requests[0].json()
    assert payload["kind"] == "collector_health"


def test_outbox_cli_list_ack_and_test(rig: Rig) -> None:
    runner = CliRunner()
    base = ["--config", str(rig.config)]
    assert runner.invoke(cli, [*base, "alerts", "list"]).stdout.strip() == "no alerts"
    store.upsert_posts(rig.db, [mention(1, minutes_ago=120)])
    rig.run()
    listed = runner.invoke(cli, [*base, "alerts", "list", "--open"])
    (alert,) = store.get_alerts(rig.db)
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[:2] == [str(alert.id), "open"] and "unanswered_mention" in row
    assert runner.invoke(cli, [*base, "alerts", "ack", str(alert.id)]).exit_code == 0
    again = runner.invoke(cli, [*base, "alerts", "ack", str(alert.id)])
    assert again.exit_code == 0 and "already acknowledged" in again.stdout
    rig.run(at=timedelta(hours=5))  # acknowledged: not repeated
    assert rig.counts() == (1, 1, 1)

    sent = runner.invoke(cli, [*base, "alerts", "test", "--channel", "hook"])
    assert sent.exit_code == 0 and "delivered" in sent.stdout
    assert rig.hook.requests[-1].json()["kind"] == "test"
    rig.slack.script(Reply(500))
    failed = runner.invoke(cli, [*base, "alerts", "test", "--channel", "slack"])
    assert failed.exit_code == 1 and "not delivered" in failed.stderr
    assert "secretpath" not in failed.stderr
    unknown = runner.invoke(cli, [*base, "alerts", "test", "--channel", "pager"])
    assert unknown.exit_code == 1 and "mail, slack, hook, log" in unknown.stderr


def test_outbox_a_stream_the_config_no_longer_asks_for_raises_no_health_alert(rig: Rig) -> None:
    """Old keywords (another query), an account removed from the brand: their runs stay in the
    store, but no stale alert comes of them; a stream the config asks for still gets one."""
    from monitor.models import RunResult, StreamKey

    rig.configure(
        rig.config.read_text().replace(
            'name = "acme"\n', 'name = "acme"\nkeywords = ["acme", "rocket skates"]\n'
        )
    )
    long_ago = clock.now() - timedelta(hours=3)  # stale: more than 3 intervals of 300 s
    current = StreamKey("acme", "x", "keywords", '(acme OR "rocket skates") -is:retweet')
    for key in (
        StreamKey("acme", "x", "keywords", "acme -is:retweet"),  # the keywords before
        StreamKey("acme", "reddit", "posts"),  # acme has no Reddit account now
        StreamKey("acme", "reddit", "account"),
        StreamKey("gone", "x", "posts"),  # a brand no longer configured
    ):
        store.record_run(rig.db, RunResult(key, long_ago, long_ago))
    store.record_run(rig.db, RunResult(current, clock.now(), clock.now()))
    rig.run()
    assert store.get_alerts(rig.db) == []
    store.record_run(rig.db, RunResult(StreamKey("acme", "x", "posts"), long_ago, long_ago))
    rig.run()
    (alert,) = store.get_alerts(rig.db)
    assert alert.fingerprint == "collector_health:acme:x:posts"


def test_outbox_a_brand_removed_from_the_config_closes_its_alerts_and_stops_no_other(
    rig: Rig,
) -> None:
    """Its open alerts expire (touchpoint no longer watches it); they must not stop the pass
    that alerts on the brands still configured."""
    store.upsert_posts(rig.db, [mention(1, minutes_ago=90)])
    rig.run()
    (acme,) = store.get_alerts(rig.db, states=["open"])
    rig.configure(rig.config.read_text().split("[[brands]]")[0] + GLOBEX)
    globex = dataclasses.replace(mention(2, minutes_ago=90), brand="globex", native_id="2002")
    store.upsert_posts(rig.db, [globex])
    rig.run(at=timedelta(hours=5))  # past acme's repeat interval: it would be due again
    states = {a.brand: a.state for a in store.get_alerts(rig.db)}
    assert states == {"acme": "expired", "globex": "open"}
    assert rig.counts() == (2, 2, 2)  # acme's first message, then globex's; no acme repeat


def test_outbox_an_account_removed_from_a_brand_closes_its_alerts_and_raises_no_more(
    rig: Rig,
) -> None:
    """acme leaves X for Mastodon: its X alerts (an unanswered mention, the self-promotion of
    its X posts) expire, and its X mentions and posts, still in the store and inside the rules'
    windows, raise nothing more: touchpoint no longer sees acme's answers there."""
    posts = [broadcast(n, minutes_ago=60 * n) for n in range(10)]
    store.upsert_posts(rig.db, [mention(1, minutes_ago=90), *posts])
    store.upsert_labels(rig.db, [store.LabelRow(p.id, "sales-pitch", 0.9, {}, "t") for p in posts])
    rig.run()
    assert {a.kind: a.state for a in store.get_alerts(rig.db)} == {
        "unanswered_mention": "open",
        "self_promotion": "open",
    }
    rig.configure(rig.config.read_text().replace('x = "acme"', 'mastodon = "acme@example.social"'))
    rig.run(at=timedelta(hours=5))  # past the repeat interval: they would be due again
    assert {a.state for a in store.get_alerts(rig.db)} == {"expired"}
    assert rig.counts() == (2, 2, 2)  # the first two messages; no repeat, no new alert
    store.upsert_posts(rig.db, [mention(2, minutes_ago=90)])  # say, collected before the edit
    rig.run(at=timedelta(hours=6))
    assert len(store.get_alerts(rig.db)) == 2 and rig.counts() == (2, 2, 2)
