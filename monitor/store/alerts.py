"""Alerts and their outbox: the mentions query the rules read, alert states, and deliveries."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor import clock
from monitor.models import Alert, iso, parse_iso
from monitor.store.db import write_transaction
from monitor.store.service import get_channel_holds

logger = logging.getLogger(__name__)


# A brand's mentions are read through its roles (``post_brands``), leaving out those that one of
# the monitored brands' own accounts wrote (a sister brand tagging it waits for no answer); an
# answer is a post that its own account wrote, or the account of a brand answering for it (a
# role of one of those brands with is_brand). The unary + keeps SQLite off the time index for the
# answer lookup: with it, it would walk the brand's whole history for every mention; without, it
# looks the replies up by in_reply_to_id. The brand may answer the person elsewhere in the
# thread: a reply to their follow-up, or, after the mention, to the post it follows up (a person
# who nags is answered where they started). Those are found two ways: the same author's reply to
# the mention itself or the post of theirs it replies to (Mastodon has no conversation ids), or
# any post of that author in the mention's conversation (X, Reddit, Bluesky).
def mentions_sql(answerers: int = 1) -> str:
    """The mentions query, for ``answerers`` brands whose replies count as answers. Parameters:
    the answering brands' names (the brand first), the brand, the earliest time."""
    marks = ", ".join("?" * answerers)
    return f"""
SELECT m.id, m.platform, m.created_at, m.text, m.url, m.author_handle,
  (SELECT min(r.created_at) FROM posts r
    WHERE +r.created_at >= m.created_at
      AND EXISTS (SELECT 1 FROM post_brands rb
        WHERE rb.post_id = r.id AND rb.brand IN ({marks}) AND rb.is_brand = 1)
      AND (r.in_reply_to_id = m.id
        OR r.in_reply_to_id IN (
          SELECT f.id FROM posts f WHERE f.in_reply_to_id = m.id AND f.author_id = m.author_id)
        OR r.in_reply_to_id IN (
          SELECT f.id FROM posts f WHERE f.id = m.in_reply_to_id AND f.author_id = m.author_id)
        OR r.in_reply_to_id IN (
          SELECT f.id FROM posts f WHERE m.conversation_id IS NOT NULL
            AND f.conversation_id = m.conversation_id AND f.author_id = m.author_id)))
    AS answered_at
FROM post_brands mb JOIN posts m ON m.id = mb.post_id
WHERE mb.brand = ? AND mb.kind = 'mention' AND mb.created_at >= ? AND m.is_brand = 0
"""


def mentions_params(brand: str, answered_by: Sequence[str], *times: str) -> tuple[str, ...]:
    """The parameters of :func:`mentions_sql` for ``brand`` and the brands answering for it."""
    return (brand, *answered_by, brand, *times)


def iter_mentions_with_answers(
    db: Database, brand: str, *, since: datetime, answered_by: Sequence[str] = ()
) -> Iterator[tuple[Any, ...]]:
    """Yield the brand's mentions since ``since`` with the time of the brand's first answer.

    Answered means a reply of the brand's own account (or of a brand in ``answered_by``, e.g. its
    support account), made after the mention, to the mention itself or to another post of the
    same author in the thread: in the same conversation, or the author's reply to the mention, or
    the author's post the mention replies to (the person followed up, and the brand answered
    the follow-up or the start)."""
    sql = mentions_sql(1 + len(answered_by))
    yield from db.conn.execute(sql, mentions_params(brand, answered_by, iso(since)))


def iter_labelled_posts(
    db: Database, brand: str, *, since: datetime | None
) -> Iterator[tuple[Any, ...]]:
    """Yield (id, platform, created_at, label, text, url) of the brand's own broadcasts."""
    sql = (
        "SELECT p.id, p.platform, p.created_at, l.label, p.text, p.url FROM post_brands b "
        "JOIN posts p ON p.id = b.post_id JOIN labels l ON l.post_id = b.post_id "
        "WHERE b.brand = ? AND b.kind = 'post' AND b.is_brand = 1 AND b.created_at >= ? "
        "ORDER BY b.created_at DESC"
    )
    yield from db.conn.execute(sql, (brand, iso(since) if since else ""))


@dataclass(frozen=True)
class StoredAlert:
    """An alert as the outbox keeps it."""

    id: int
    fingerprint: str
    kind: str
    brand: str
    platform: str
    severity: str
    title: str
    state: str
    created_at: str
    last_notified_at: str | None
    payload: dict[str, Any]
    subject: tuple[str, ...] = ()  # the ids it is about (an unanswered mention: the mention's)


_ALERT_COLUMNS = (
    "id, fingerprint, kind, brand, platform, severity, title, state, created_at, "
    "last_notified_at, payload, subject"
)


def _stored_alert(row: Sequence[Any]) -> StoredAlert:
    return StoredAlert(
        id=row[0],
        fingerprint=row[1],
        kind=row[2],
        brand=row[3],
        platform=row[4],
        severity=row[5],
        title=row[6],
        state=row[7],
        created_at=row[8],
        last_notified_at=row[9],
        payload=json.loads(row[10] or "{}"),
        subject=tuple(json.loads(row[11] or "[]")),
    )


def get_alerts(
    db: Database, *, states: Sequence[str] | None = None, brand: str | None = None
) -> list[StoredAlert]:
    """Return alerts, newest first, optionally only in ``states`` and of ``brand``."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        params.extend(states)
    if brand:
        where.append("brand = ?")
        params.append(brand)
    sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC"
    return [_stored_alert(r) for r in db.conn.execute(sql, params)]


def get_alert(db: Database, alert_id: int) -> StoredAlert | None:
    """Return one alert by id, or None."""
    row = db.conn.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
    found = row.fetchone()
    return _stored_alert(found) if found else None


CLOSED = ("resolved", "expired")  # an alert raised again in one of these states reopens


def sync_alerts(
    db: Database,
    alerts: Sequence[Alert],
    *,
    brands: Sequence[str],
    now: datetime,
    expired: Collection[str] = (),
    platforms: Mapping[str, Collection[str]] | None = None,
) -> tuple[int, int]:
    """Record what the rules raised (inside the caller's transaction); close what they no
    longer raise for ``brands``: as ``expired`` when its fingerprint is in ``expired`` (the rule
    stopped looking, e.g. a mention past ignore_older_than_days, still unanswered), else as
    ``resolved``. The open alerts of a brand not in ``brands`` (removed from the config, or
    renamed) expire too: touchpoint no longer watches it; so do those of a brand on a platform
    not in its ``platforms`` entry (an account removed from the brand), when given. Return
    (opened, closed)."""
    stamp, opened, raised = iso(now), 0, set()
    conn = db.conn
    for alert in alerts:
        raised.add(alert.fingerprint)
        row = conn.execute(
            "SELECT id, state, severity FROM alerts WHERE fingerprint = ?", (alert.fingerprint,)
        ).fetchone()
        if row is None and alert.held:
            continue
        if row is None or row[1] in CLOSED:
            opened += 1
        _upsert_alert(conn, alert, row, stamp)
    unwatched = _expire_unwatched(conn, brands, platforms or {}, stamp)
    marks = ",".join("?" * len(brands))
    open_rows = conn.execute(
        "SELECT id, fingerprint FROM alerts WHERE state IN ('open', 'acked') "
        f"AND brand IN ({marks})",
        list(brands),
    ).fetchall()
    gone = [
        ("expired" if r[1] in expired else "resolved", stamp, stamp, r[0])
        for r in open_rows
        if r[1] not in raised
    ]
    conn.executemany(
        "UPDATE alerts SET state = ?, resolved_at = ?, updated_at = ? WHERE id = ?", gone
    )
    return opened, len(gone) + unwatched


def _expire_unwatched(
    conn: sqlite3.Connection,
    brands: Sequence[str],
    platforms: Mapping[str, Collection[str]],
    stamp: str,
) -> int:
    """Expire the open and acked alerts of a brand not in ``brands``, and of a brand on a
    platform not in its ``platforms`` entry; return how many."""
    marks = ",".join("?" * len(brands))
    closed = conn.execute(
        "UPDATE alerts SET state = 'expired', resolved_at = ?, updated_at = ? "
        f"WHERE state IN ('open', 'acked') AND brand NOT IN ({marks})",
        [stamp, stamp, *brands],
    ).rowcount
    for brand, kept in platforms.items():
        closed += conn.execute(
            "UPDATE alerts SET state = 'expired', resolved_at = ?, updated_at = ? "
            "WHERE state IN ('open', 'acked') AND brand = ? "
            f"AND platform NOT IN ({','.join('?' * len(kept))})",
            [stamp, stamp, brand, *kept],
        ).rowcount
    return closed


_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def _upsert_alert(
    conn: sqlite3.Connection, alert: Alert, row: Sequence[Any] | None, stamp: str
) -> None:
    payload = json.dumps(alert.payload, sort_keys=True)
    subject = json.dumps(list(alert.subject))
    if row is None:
        conn.execute(
            "INSERT INTO alerts (fingerprint, kind, brand, platform, subject, payload, created_at, "
            "state, updated_at, severity, title) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
            (
                alert.fingerprint,
                alert.kind,
                alert.brand,
                alert.platform,
                subject,
                payload,
                stamp,
                stamp,
                alert.severity,
                alert.title,
            ),
        )
        return
    state = "open" if row[1] in CLOSED else row[1]
    escalated = _SEVERITY.get(alert.severity, 0) > _SEVERITY.get(row[2] or "", 0)
    # a reopened or escalated alert is news: it is sent again now, not at the next repeat
    renotify = row[1] in CLOSED or (escalated and state == "open")
    conn.execute(
        "UPDATE alerts SET state = ?, severity = ?, title = ?, subject = ?, payload = ?, "
        "updated_at = ?, resolved_at = NULL"
        f"{', last_notified_at = NULL' if renotify else ''} WHERE id = ?",
        (state, alert.severity, alert.title, subject, payload, stamp, row[0]),
    )


def mark_notified(db: Database, alert_ids: Sequence[int], *, now: datetime) -> None:
    """Remember when alerts were last put in a delivery (inside the caller's transaction)."""
    db.conn.executemany(
        "UPDATE alerts SET last_notified_at = ? WHERE id = ?", [(iso(now), i) for i in alert_ids]
    )


def ack_alert(db: Database, alert_id: int) -> bool:
    """Acknowledge an open alert: it is not repeated any more. Return False if there is none."""
    with write_transaction(db) as conn:
        done = conn.execute(
            "UPDATE alerts SET state = 'acked', acked_at = ?, updated_at = ? "
            "WHERE id = ? AND state = 'open'",
            (iso(clock.now()), iso(clock.now()), alert_id),
        ).rowcount
    return bool(done)


@dataclass(frozen=True)
class Delivery:
    """One grouped message for one channel, in the outbox until it is sent."""

    id: int
    key: str
    channel: str
    brand: str
    kind: str
    alert_ids: tuple[int, ...]
    message: dict[str, Any]
    attempts: int
    state: str


def queue_delivery(
    db: Database,
    *,
    key: str,
    channel: str,
    brand: str,
    kind: str,
    severity: str,
    alert_ids: Sequence[int],
    message: dict[str, Any],
    now: datetime,
) -> None:
    """Put one grouped message in the outbox (inside the caller's transaction)."""
    db.conn.execute(
        "INSERT INTO deliveries (key, channel, brand, kind, severity, alert_ids, message, "
        "created_at, state, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
        "'pending', 0, ?) ON CONFLICT(key) DO NOTHING",
        (
            key,
            channel,
            brand,
            kind,
            severity,
            json.dumps(list(alert_ids)),
            json.dumps(message, sort_keys=True),
            iso(now),
            iso(now),
        ),
    )


def last_queued_at(db: Database, brand: str, kind: str) -> datetime | None:
    """When the newest message about a brand's alerts of ``kind`` was put in the outbox."""
    row = db.conn.execute(
        "SELECT max(created_at) FROM deliveries WHERE brand = ? AND kind = ?", (brand, kind)
    ).fetchone()
    return parse_iso(row[0]) if row and row[0] else None


def claim_due_deliveries(db: Database, *, now: datetime, until: datetime) -> list[Delivery]:
    """Take the pending deliveries whose next attempt is due, oldest first, for this process
    until ``until``: their next attempt moves there in the same transaction, so that no other
    process (the daemon, a ``touchpoint collect``) sends them meanwhile. A claim whose holder dies
    before recording an outcome lapses at ``until``: the message is sent again, with its key.
    Nothing is taken for a channel held past ``now`` (``hold_channel``)."""
    with write_transaction(db) as conn:
        held = sorted(get_channel_holds(db, now=now))
        rows = conn.execute(
            "SELECT id, key, channel, brand, kind, alert_ids, message, attempts, state "
            "FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? "
            f"AND channel NOT IN ({', '.join('?' * len(held))}) ORDER BY id",
            (iso(now), *held),
        ).fetchall()
        _hold(conn, [r[0] for r in rows], until)
    return [
        Delivery(
            r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), json.loads(r[6]), r[7], r[8]
        )
        for r in rows
    ]


def extend_claims(db: Database, delivery_ids: Sequence[int], *, until: datetime) -> None:
    """Hold this process's claims (deliveries still pending, still being sent) until ``until``."""
    with write_transaction(db) as conn:
        _hold(conn, delivery_ids, until)


def _hold(conn: sqlite3.Connection, delivery_ids: Sequence[int], until: datetime) -> None:
    """Move the next attempt of the pending ones of ``delivery_ids`` to ``until``."""
    conn.executemany(
        "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND state = 'pending'",
        [(iso(until), i) for i in delivery_ids],
    )


def record_delivery(
    db: Database,
    delivery_id: int,
    *,
    state: str,
    attempts: int,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Record the outcome of delivery attempts: sent, pending again, or dead."""
    with write_transaction(db) as conn:
        conn.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, last_error = ?, next_attempt_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
            (
                state,
                attempts,
                error,
                iso(next_attempt_at) if next_attempt_at else None,
                state,
                iso(now),
                delivery_id,
            ),
        )


def count_deliveries(db: Database) -> dict[str, int]:
    """Return the number of deliveries per state."""
    return {
        str(k): int(n)
        for k, n in db.conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state")
    }


@dataclass(frozen=True)
class Overdue:
    """The messages due by some time and still waiting (none claimed by a sender meanwhile)."""

    count: int
    oldest_due: datetime | None


def overdue_deliveries(db: Database, *, due_before: datetime) -> Overdue:
    """The pending messages whose next attempt was due at ``due_before`` or earlier: nothing has
    claimed them since (a claim moves the next attempt to its lease's end), so no sender runs."""
    count, oldest = db.conn.execute(
        "SELECT count(*), min(next_attempt_at) FROM deliveries "
        "WHERE state = 'pending' AND next_attempt_at <= ?",
        (iso(due_before),),
    ).fetchone()
    return Overdue(int(count), parse_iso(oldest) if oldest else None)
