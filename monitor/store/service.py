"""touchpoint's own state across restarts (``service_state``): the daemon's starts and clean stops,
how the last classification went (the alert rules read them to tell a crash loop or a classifier
that stopped labelling, ``rules.SERVICE``), and the alert channels that asked to be left alone
until a time (a 429 with ``Retry-After``), which no process sends to before then."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor import clock
from monitor.models import iso, parse_iso
from monitor.store.db import write_transaction

DAEMON = "daemon"
CLASSIFIER = "classifier"
KEEP_STARTS = 20  # the daemon's last starts kept (enough to see a crash loop)
CHANNEL_HOLD = "channel:"  # + a channel's name: the time it asked to be left alone until


@dataclass(frozen=True)
class ClassifierStatus:
    """How the last classification went: ``failures`` in a row (0 after a success)."""

    at: datetime
    failures: int
    error: str | None
    failing_since: datetime | None


def _get(db: Database, name: str) -> dict[str, Any]:
    row = db.conn.execute("SELECT state FROM service_state WHERE name = ?", (name,)).fetchone()
    return dict(json.loads(row[0])) if row else {}


def _set(db: Database, name: str, state: dict[str, Any], now: datetime) -> None:
    db.conn.execute(
        "INSERT INTO service_state (name, state, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        (name, json.dumps(state, sort_keys=True), iso(now)),
    )


def record_daemon_start(db: Database, *, pid: int, now: datetime | None = None) -> None:
    """Remember that a daemon started; the one before it stopped cleanly only if it said so."""
    now = now or clock.now()
    with write_transaction(db):
        starts = _get(db, DAEMON).get("starts", [])
        starts.append({"pid": pid, "started_at": iso(now), "stopped_at": None})
        _set(db, DAEMON, {"starts": starts[-KEEP_STARTS:]}, now)


def record_daemon_stop(db: Database, *, pid: int, now: datetime | None = None) -> None:
    """Remember that the daemon ``pid`` stopped cleanly (a SIGTERM, not a crash or a kill)."""
    now = now or clock.now()
    with write_transaction(db):
        starts = _get(db, DAEMON).get("starts", [])
        for start in reversed(starts):
            if start["pid"] == pid and start["stopped_at"] is None:
                start["stopped_at"] = iso(now)
                break
        _set(db, DAEMON, {"starts": starts}, now)


def restarts_after_crash(db: Database) -> list[datetime]:
    """When the daemon started again after a run that never stopped cleanly (killed, crashed or
    the machine went down), oldest first, among the last starts kept."""
    starts = _get(db, DAEMON).get("starts", [])
    return [
        parse_iso(after["started_at"])
        for before, after in zip(starts, starts[1:], strict=False)
        if before["stopped_at"] is None
    ]


def record_classification(db: Database, *, error: str | None, now: datetime | None = None) -> None:
    """Remember how a classification pass went: ``error`` None for a success."""
    now = now or clock.now()
    with write_transaction(db):
        before = _get(db, CLASSIFIER)
        failures = 0 if error is None else int(before.get("failures", 0)) + 1
        since = None if error is None else before.get("failing_since") or iso(now)
        state = {"at": iso(now), "failures": failures, "error": error, "failing_since": since}
        _set(db, CLASSIFIER, state, now)


def get_classifier_status(db: Database) -> ClassifierStatus | None:
    """How the last classification went, or None if none was recorded."""
    state = _get(db, CLASSIFIER)
    if not state:
        return None
    since = state.get("failing_since")
    return ClassifierStatus(
        at=parse_iso(state["at"]),
        failures=int(state["failures"]),
        error=state.get("error"),
        failing_since=parse_iso(since) if since else None,
    )


def hold_channel(db: Database, channel: str, *, until: datetime) -> None:
    """Send nothing to ``channel`` before ``until`` (it answered 429 or 503 with Retry-After);
    a later hold already recorded stays."""
    with write_transaction(db):
        now = clock.now()
        before = _get(db, CHANNEL_HOLD + channel).get("until")
        if before is None or parse_iso(before) < until:
            _set(db, CHANNEL_HOLD + channel, {"until": iso(until)}, now)


def get_channel_holds(db: Database, *, now: datetime) -> dict[str, datetime]:
    """The channels held past ``now``, and until when."""
    rows = db.conn.execute(
        "SELECT substr(name, ?), json_extract(state, '$.until') FROM service_state "
        "WHERE name LIKE ? AND json_extract(state, '$.until') > ?",
        (len(CHANNEL_HOLD) + 1, CHANNEL_HOLD + "%", iso(now)),
    )
    return {str(name): parse_iso(until) for name, until in rows}
