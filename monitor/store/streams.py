"""Streams: cursors, runs and the status built from them, deferrals, collector state, accounts."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor import clock
from monitor.models import Cursor, RunResult, StreamKey, iso, parse_iso
from monitor.store.db import valid_text, write_transaction

logger = logging.getLogger(__name__)

# -- cursors -------------------------------------------------------------------------------------


def get_cursor(db: Database, key: StreamKey) -> Cursor:
    """Return the committed cursor of a stream (empty when the stream never stored anything)."""
    row = db.conn.execute(
        "SELECT position, pending, updated_at, account FROM cursors "
        "WHERE brand=? AND platform=? AND stream=? AND query=?",
        (key.brand, key.platform, key.stream, key.query),
    ).fetchone()
    if row is None:
        return Cursor()
    pending = json.loads(row[1]) if row[1] else None
    updated = parse_iso(row[2]) if row[2] else None
    return Cursor(position=row[0], pending=pending, updated_at=updated, account=row[3])


def _set_cursor(
    conn: sqlite3.Connection, key: StreamKey, cursor: Cursor, now: datetime, account: str | None
) -> None:
    conn.execute(
        "INSERT INTO cursors (brand, platform, stream, query, position, pending, updated_at, "
        "account) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(brand, platform, stream, query) "
        "DO UPDATE SET position=excluded.position, pending=excluded.pending, "
        "updated_at=excluded.updated_at, account=excluded.account",
        (
            key.brand,
            key.platform,
            key.stream,
            key.query,
            cursor.position,
            json.dumps(cursor.pending, sort_keys=True) if cursor.pending is not None else None,
            iso(now),
            account,
        ),
    )


def delete_cursor(db: Database, key: StreamKey) -> None:
    """Forget a stream's cursor (a finished backfill)."""
    with write_transaction(db) as conn:
        conn.execute(
            "DELETE FROM cursors WHERE brand=? AND platform=? AND stream=? AND query=?",
            (key.brand, key.platform, key.stream, key.query),
        )


# -- runs ----------------------------------------------------------------------------------------


_FAILURES = ("failed", "auth_failed")  # the outcomes that count as failures in a row

# a run moves its stream's head: each id moves only when the run is of its sort
_HEAD_SQL = """
INSERT INTO stream_heads (brand, platform, stream, query, run_id, last_id, ok_id, error_id,
  failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (brand, platform, stream, query) DO UPDATE SET
  run_id = excluded.run_id,
  last_id = coalesce(excluded.last_id, last_id),
  ok_id = coalesce(excluded.ok_id, ok_id),
  error_id = coalesce(excluded.error_id, error_id),
  failures = CASE WHEN excluded.ok_id IS NOT NULL THEN 0 ELSE failures + excluded.failures END
"""


def record_run(db: Database, run: RunResult) -> None:
    """Append one run of one stream to ``runs``, and move the stream's head to it."""
    key = (run.key.brand, run.key.platform, run.key.stream, run.key.query)
    error = None if run.error is None else valid_text(run.error)
    with write_transaction(db) as conn:
        run_id = conn.execute(
            "INSERT INTO runs (brand, platform, stream, query, started_at, finished_at, outcome, "
            "items_new, items_updated, pages, error, retry_at, gap) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                *key,
                iso(run.started_at),
                iso(run.finished_at or clock.now()),
                run.outcome,
                run.items_new,
                run.items_updated,
                run.pages,
                error,
                iso(run.retry_at) if run.retry_at else None,
                None if run.gap is None else valid_text(run.gap),
            ),
        ).lastrowid
        conn.execute(
            _HEAD_SQL,
            (
                *key,
                run_id,
                run_id if run.outcome != "skipped" else None,
                run_id if run.outcome == "ok" else None,
                run_id if error is not None else None,
                int(run.outcome in _FAILURES),
            ),
        )


@dataclass(frozen=True)
class RunGap:
    """A run that went ok although items before it may be missing, and why."""

    key: StreamKey
    started_at: str
    gap: str


def get_gaps(db: Database, *, since: datetime) -> list[RunGap]:
    """Return the runs started at or after ``since`` that recorded a gap, oldest first."""
    rows = db.conn.execute(
        "SELECT brand, platform, stream, query, started_at, gap FROM runs "
        "WHERE gap IS NOT NULL AND started_at >= ? ORDER BY started_at",
        (iso(since),),
    )
    return [RunGap(StreamKey(b, p, s, q), started, gap) for b, p, s, q, started, gap in rows]


def get_deferral(db: Database, key: StreamKey) -> datetime | None:
    """Return until when the stream's last run deferred it (a rate limit), if it did."""
    row = db.conn.execute(
        "SELECT r.outcome, r.retry_at FROM stream_heads h JOIN runs r ON r.id = h.last_id "
        "WHERE h.brand=? AND h.platform=? AND h.stream=? AND h.query=?",
        (key.brand, key.platform, key.stream, key.query),
    ).fetchone()
    if row is None or row[0] != "deferred" or not row[1]:
        return None
    return parse_iso(row[1])


def last_run_starts(db: Database) -> dict[tuple[str, str, str], datetime]:
    """Return when each (brand, platform, stream) last started a run, over all its queries."""
    sql = (
        "SELECT h.brand, h.platform, h.stream, r.started_at FROM stream_heads h "
        "JOIN runs r ON r.id = h.run_id"
    )
    found: dict[tuple[str, str, str], datetime] = {}
    for brand, platform, stream, started in db.conn.execute(sql):
        when = parse_iso(started)
        key = (brand, platform, stream)
        if key not in found or when > found[key]:
            found[key] = when
    return found


@dataclass(frozen=True)
class StreamStatus:
    """A stream's health as ``touchpoint status`` shows it."""

    key: StreamKey
    last_run_at: str | None
    outcome: str | None
    items_new: int
    last_success_at: str | None
    consecutive_failures: int
    cursor_updated_at: str | None
    last_error: str | None
    retry_at: str | None


_STATUS_SQL = """
WITH keys AS (
  SELECT brand, platform, stream, query FROM stream_heads
  UNION SELECT brand, platform, stream, query FROM cursors
)
SELECT k.brand, k.platform, k.stream, k.query, last.started_at, last.outcome,
       coalesce(last.items_new, 0), ok.finished_at, coalesce(h.failures, 0), c.updated_at,
       e.error, last.retry_at
FROM keys k
LEFT JOIN stream_heads h ON h.brand = k.brand AND h.platform = k.platform
  AND h.stream = k.stream AND h.query = k.query
LEFT JOIN runs last ON last.id = coalesce(h.last_id, h.run_id)
LEFT JOIN runs ok ON ok.id = h.ok_id
LEFT JOIN runs e ON e.id = h.error_id
LEFT JOIN cursors c ON c.brand = k.brand AND c.platform = k.platform
  AND c.stream = k.stream AND c.query = k.query
ORDER BY k.brand, k.platform, k.stream, k.query
"""


def get_stream_status(db: Database) -> list[StreamStatus]:
    """Return every stream that has run or holds a cursor, with its latest outcome and errors."""
    return [
        StreamStatus(StreamKey(r[0], r[1], r[2], r[3]), *r[4:])
        for r in db.conn.execute(_STATUS_SQL)
    ]


# -- retention -----------------------------------------------------------------------------------

# the runs the heads point at (NOT IN a list holding a NULL would keep every row)
_HEAD_IDS = " UNION ".join(
    f"SELECT {column} FROM stream_heads WHERE {column} IS NOT NULL"
    for column in ("run_id", "last_id", "ok_id", "error_id")
)


def _first_run_from(conn: sqlite3.Connection, when: str) -> int:
    """The smallest run id that began at or after ``when`` (runs are appended in about the order
    they began): a binary search over ids, a few primary-key lookups whatever the history."""
    low, high = conn.execute("SELECT min(id), max(id) + 1 FROM runs").fetchone()
    if low is None:
        return 0
    while low < high:
        middle = (low + high) // 2
        found, started = conn.execute(  # there is one: ``middle`` is at most the largest id
            "SELECT id, started_at FROM runs WHERE id >= ? ORDER BY id LIMIT 1", (middle,)
        ).fetchone()
        if started < when:
            low = found + 1
        else:
            high = middle
    return int(low)


def prune_runs(db: Database, *, before: datetime, batch: int = 10_000) -> int:
    """Delete the runs that began before ``before``, in transactions of ``batch`` rows, keeping
    those a stream's head points at (its latest run, success and error, however old); return
    how many went."""
    when = iso(before)
    below = _first_run_from(db.conn, when)
    deleted = 0
    while True:
        with write_transaction(db) as conn:
            gone = conn.execute(
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE id < ? AND started_at < ? "
                f"AND id NOT IN ({_HEAD_IDS}) ORDER BY id LIMIT ?)",
                (below, when, batch),
            ).rowcount
        deleted += gone
        if gone < batch:
            return deleted


# -- collector state ------------------------------------------------------------------------------


def get_collector_state(db: Database, platform: str) -> dict[str, Any]:
    """Return the state a platform's collector kept from earlier runs ({} when none)."""
    row = db.conn.execute(
        "SELECT state FROM collector_state WHERE platform = ?", (platform,)
    ).fetchone()
    return dict(json.loads(row[0])) if row else {}


def set_collector_state(db: Database, platform: str, state: dict[str, Any]) -> None:
    """Keep a collector's state for the next run."""
    with write_transaction(db) as conn:
        conn.execute(
            "INSERT INTO collector_state (platform, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(platform) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
            (platform, json.dumps(state, sort_keys=True), iso(clock.now())),
        )


# -- accounts ------------------------------------------------------------------------------------


def get_account_id(db: Database, platform: str, handle: str) -> str | None:
    """Return a handle's platform id resolved earlier, if any."""
    row = db.conn.execute(
        "SELECT native_id FROM accounts WHERE platform = ? AND handle = ?",
        (platform, handle.lower()),
    ).fetchone()
    return str(row[0]) if row else None


def set_account_id(db: Database, platform: str, handle: str, native_id: str) -> None:
    """Remember a handle's platform id, so it is resolved only once."""
    with write_transaction(db) as conn:
        conn.execute(
            "INSERT INTO accounts (platform, handle, native_id, resolved_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(platform, handle) DO UPDATE SET native_id = excluded.native_id, "
            "resolved_at = excluded.resolved_at",
            (platform, handle.lower(), native_id, iso(clock.now())),
        )
