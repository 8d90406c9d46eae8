"""The watchdog: when alert passes stall, the channels are told directly, not through the outbox.

Against the real receivers of test_outbox (an SMTP server, Slack and webhook servers on 127.0.0.1)
and a real store; the clock is passed in, so hours of stall take no time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor import clock, store
from monitor.alerts import outbox
from monitor.alerts.watchdog import PassState, Watchdog, stalls
from tests.alerts.servers import Reply
from tests.alerts.test_outbox import Rig, queue_messages, rig

__all__ = ["rig"]  # the fixture, shared with test_outbox

AFTER = timedelta(minutes=15)
REPEAT = timedelta(hours=4)


def watchdog(r: Rig, started: datetime) -> Watchdog:
    return Watchdog(outbox.build_channels(r.settings), after=AFTER, repeat=REPEAT, started=started)


def attempts(r: Rig) -> list[tuple[str, int]]:
    return [(d["state"], d["attempts"]) for d in r.db["deliveries"].rows]


def test_a_stalled_outbox_is_told_to_every_channel_directly_then_again_then_all_clear(
    rig: Rig,
) -> None:
    t0 = clock.now()
    queue_messages(rig.db, "hook", 2)  # due at t0; no alert pass ever runs to send them
    dog = watchdog(rig, started=t0)
    assert dog.check(rig.db, t0 + timedelta(minutes=14)) == []  # a young daemon is not judged
    assert rig.counts() == (0, 0, 0)

    problems = dog.check(rig.db, t0 + timedelta(minutes=20))
    assert problems == [
        "no alert pass has finished since touchpoint run started, 20 min ago",
        "2 alert messages due for 20 min not sent yet",
    ]
    assert rig.counts() == (1, 1, 1)  # email, Slack and the webhook, each once
    body = rig.hook.requests[0].json()
    assert body["kind"] == "watchdog" and body["severity"] == "critical"
    assert "2 alert messages due for 20 min not sent yet" in body["summary"]
    assert "alerts are not going out" in rig.emails()[0]["Subject"]
    assert attempts(rig) == [("pending", 0), ("pending", 0)]  # the outbox is left as it was

    dog.check(rig.db, t0 + timedelta(minutes=21))  # still stalled: not told again so soon
    assert rig.counts() == (1, 1, 1)
    look_every_minute(rig, dog, t0 + timedelta(minutes=21), t0 + timedelta(minutes=19) + REPEAT)
    assert rig.counts() == (1, 1, 1)
    dog.check(rig.db, t0 + timedelta(minutes=20) + REPEAT)
    assert rig.counts() == (2, 2, 2)  # told again after repeat_hours

    later = t0 + timedelta(minutes=20) + REPEAT + timedelta(minutes=1)
    outbox.deliver(rig.db, outbox.build_channels(rig.settings), now=later, sleep=lambda s: 0)
    dog.passed(later)
    assert dog.check(rig.db, later + timedelta(minutes=1)) == []
    clear = rig.hook.requests[-1].json()
    assert clear["kind"] == "watchdog" and "going out again" in clear["title"]
    assert rig.counts() == (3, 3, 5)  # the hook: 2 notices, the 2 queued messages, the all-clear
    dog.check(rig.db, later + timedelta(minutes=2))
    assert rig.counts() == (3, 3, 5)  # the all-clear is told once


def look_every_minute(r: Rig, dog: Watchdog, start: datetime, end: datetime) -> None:
    """The watchdog thread's looks from ``start`` to ``end``."""
    now = start
    while now <= end:
        dog.check(r.db, now)
        now += timedelta(minutes=1)


def test_a_daemon_frozen_or_its_clock_stepped_forward_gets_time_before_it_is_judged(
    rig: Rig,
) -> None:
    t0 = clock.now()
    queue_messages(rig.db, "hook", 1)
    dog = watchdog(rig, started=t0)
    dog.passed(t0 + timedelta(minutes=1))
    assert dog.check(rig.db, t0 + timedelta(minutes=2)) == []
    woke = t0 + timedelta(hours=3)  # nothing looked for 3 h: SIGSTOP, a suspend, a clock step
    assert dog.check(rig.db, woke) == []
    look_every_minute(rig, dog, woke + timedelta(minutes=1), woke + timedelta(minutes=14))
    assert rig.counts() == (0, 0, 0)  # no false alarm while the passes catch up
    problems = dog.check(rig.db, woke + AFTER)  # ... but they did not: now it is a stall
    assert problems == [
        "no alert pass has finished for 3 h 14 min",
        "1 alert message due for 3 h 15 min not sent yet",
    ]
    assert rig.counts() == (1, 1, 1)


def test_a_pass_that_dies_every_time_is_told_with_its_reason(rig: Rig) -> None:
    t0 = clock.now()
    dog = watchdog(rig, started=t0)
    dog.passed(t0 + timedelta(minutes=1))
    dog.failed(f"{rig.settings.db_path}: the disk is full\nforged line")
    (problem,) = dog.check(rig.db, t0 + timedelta(minutes=17))
    assert problem == (
        f"no alert pass has finished for 16 min; the last one failed: "
        f"{rig.settings.db_path}: the disk is full\\nforged line"
    )
    assert "the disk is full" in rig.hook.requests[0].json()["summary"]


def test_a_held_channel_is_skipped_and_a_failing_one_silences_no_other(rig: Rig) -> None:
    t0 = clock.now()
    store.hold_channel(rig.db, "slack", until=t0 + timedelta(hours=1))
    rig.hook.script(Reply(500), Reply(500))
    dog = watchdog(rig, started=t0)
    dog.failed("database is locked")
    dog.check(rig.db, t0 + timedelta(minutes=16))
    assert rig.counts() == (1, 0, 1)  # email took it; Slack asked to wait; the webhook failed
    dog.check(rig.db, t0 + timedelta(minutes=17))
    assert rig.counts() == (1, 0, 1)  # one channel took it: that is enough until the repeat


def test_a_notice_no_channel_took_is_tried_again_at_the_next_check(rig: Rig) -> None:
    t0 = clock.now()
    channels = outbox.build_channels(rig.settings)
    dog = Watchdog({"hook": channels["hook"]}, after=AFTER, repeat=REPEAT, started=t0)
    rig.hook.script(Reply(503))
    dog.check(rig.db, t0 + timedelta(minutes=16))
    dog.check(rig.db, t0 + timedelta(minutes=17))
    assert [q.json()["kind"] for q in rig.hook.requests] == ["watchdog", "watchdog"]
    dog.check(rig.db, t0 + timedelta(minutes=18))
    assert len(rig.hook.requests) == 2  # the second one was taken


def test_stalls_blame_no_message_claimed_by_a_sender_nor_one_not_yet_due(rig: Rig) -> None:
    t0 = clock.now()
    queue_messages(rig.db, "hook", 3)
    now = t0 + timedelta(minutes=30)
    store.claim_due_deliveries(rig.db, now=now, until=now + timedelta(minutes=2))  # a sender
    assert stalls(rig.db, passed_lately(t0, now), now=now, after=AFTER) == []
    assert store.overdue_deliveries(rig.db, due_before=now).count == 0
    later = now + timedelta(minutes=20)  # the sender died: its claim lapsed 18 min ago
    assert stalls(rig.db, passed_lately(t0, later), now=later, after=AFTER) == [
        "3 alert messages due for 18 min not sent yet"
    ]


def passed_lately(started: datetime, now: datetime) -> PassState:
    """A daemon whose last alert pass finished a minute before ``now``."""
    return PassState(started, now - timedelta(minutes=1), None)
