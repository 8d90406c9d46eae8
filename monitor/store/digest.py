"""The daily digest's queries, and ``digest_sends``: which digest reached which recipient."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor.models import iso, parse_iso
from monitor.store.alerts import mentions_params, mentions_sql
from monitor.store.db import write_transaction

logger = logging.getLogger(__name__)

# The digest's own queries, through the brands' roles (``post_brands``); each is a range scan of
# its (brand, kind, created_at) or (brand, platform, kind, created_at) index, whatever the size of
# the store (bench/digest.py).
DIGEST_ACTIVITY_SQL = """
SELECT b.platform, b.kind, b.created_at, l.label FROM post_brands b
LEFT JOIN labels l ON l.post_id = b.post_id
WHERE b.brand = ? AND b.kind IN ('post', 'reply') AND b.is_brand = 1
  AND b.created_at >= ? AND b.created_at < ?
"""
# the alerts' definition of answered, for the mentions of one period
_UNTIL = "  AND mb.created_at < ?\n"
DIGEST_MENTIONS_SQL = mentions_sql() + _UNTIL  # a brand that only its own replies answer
DIGEST_LAST_ACTIVITY_SQL = (
    "SELECT max(created_at) FROM post_brands "
    "WHERE brand = ? AND platform = ? AND kind = ? AND created_at < ?"
)
# how far a stream was collected: when its latest successful run began, when its latest run
# that was not a skip began and how it went, and the reason of a skip when that is the latest
# (a stream the collector leaves out)
DIGEST_STREAM_RUNS_SQL = """
SELECT ok.started_at, last.started_at, last.outcome, skip.error FROM stream_heads h
LEFT JOIN runs ok ON ok.id = h.ok_id
LEFT JOIN runs last ON last.id = h.last_id
LEFT JOIN runs skip ON skip.id = h.run_id AND skip.outcome = 'skipped'
WHERE h.brand = ? AND h.platform = ? AND h.stream = ? AND h.query = ''
"""


def iter_brand_activity(
    db: Database, brand: str, *, start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    """Yield (platform, kind, created_at, label or None) of the brand's own posts and replies
    created in [start, end)."""
    yield from db.conn.execute(DIGEST_ACTIVITY_SQL, (brand, iso(start), iso(end)))


def iter_mentions_between(
    db: Database,
    brand: str,
    *,
    start: datetime,
    end: datetime,
    answered_by: Sequence[str] = (),
) -> Iterator[tuple[Any, ...]]:
    """Yield the brand's mentions created in [start, end), as :func:`iter_mentions_with_answers`
    does (the time of the first answer, however late, is the last column)."""
    sql = mentions_sql(1 + len(answered_by)) + _UNTIL
    yield from db.conn.execute(sql, mentions_params(brand, answered_by, iso(start), iso(end)))


def get_last_activity(
    db: Database, brand: str, platforms: Iterable[str], *, before: datetime
) -> dict[str, str | None]:
    """Return, per platform, when the brand last posted or replied there before ``before``."""
    found: dict[str, str | None] = {}
    for platform in platforms:
        stamps = [
            db.conn.execute(DIGEST_LAST_ACTIVITY_SQL, (brand, platform, k, iso(before))).fetchone()[
                0
            ]
            for k in ("post", "reply")
        ]
        found[platform] = max((s for s in stamps if s), default=None)
    return found


CollectionRuns = tuple[str | None, str | None, str | None, str | None]


def get_collection_runs(
    db: Database, brand: str, platforms: Iterable[str], streams: Iterable[str]
) -> dict[tuple[str, str], CollectionRuns]:
    """Return, per (platform, stream) of the brand, when its latest successful run began, when
    its latest run that was not a skip began and how it went, and why the collector left the
    stream out, when its latest run was that skip (None each when there is none)."""
    found: dict[tuple[str, str], CollectionRuns] = {}
    for platform in platforms:
        for stream in streams:
            row = db.conn.execute(DIGEST_STREAM_RUNS_SQL, (brand, platform, stream)).fetchone()
            found[platform, stream] = tuple(row) if row else (None, None, None, None)
    return found


@dataclass(frozen=True)
class DigestSend:
    """Where the digest of one brand and day stands for one recipient."""

    recipient: str
    # "sent" | "failed" (tried again from next_attempt_at) | "dead" | "sending" (claimed by a
    # process until next_attempt_at: a crash before the outcome is recorded frees it then)
    state: str
    attempts: int
    next_attempt_at: str | None
    sent_at: str | None


def get_digest_sends(db: Database, brand: str, day: str) -> dict[str, DigestSend]:
    """Return the recorded sends of a brand's digest for ``day`` (YYYY-MM-DD), by recipient
    (its :func:`recipient_key`: one address in any case is one recipient)."""
    rows = db.conn.execute(
        "SELECT recipient, state, attempts, next_attempt_at, sent_at FROM digest_sends "
        "WHERE brand = ? AND day = ?",
        (brand, day),
    )
    return {r[0]: DigestSend(*r) for r in rows}


def recipient_key(address: str) -> str:
    """How ``digest_sends`` knows a recipient: the address in lower case, so that writing it
    another way in the config (``Anna@Brand.example``) never sends that day's digest again."""
    return address.strip().lower()


def last_digest_day(db: Database, brand: str) -> str | None:
    """The latest day (YYYY-MM-DD) a digest of ``brand`` was sent or tried, or None."""
    row = db.conn.execute("SELECT max(day) FROM digest_sends WHERE brand = ?", (brand,)).fetchone()
    return str(row[0]) if row and row[0] else None


def send_is_due(
    state: str, next_attempt_at: str | None, now: datetime, *, retry_now: bool = False
) -> bool:
    """Whether a recorded send may be tried at ``now``: never once sent or given up; a failed
    one from its next attempt (at once with ``retry_now``); a claimed one when its lease ends."""
    if state in ("sent", "dead"):
        return False
    if next_attempt_at is None or parse_iso(next_attempt_at) <= now:
        return True
    return retry_now and state != "sending"


def claim_digest_send(
    db: Database,
    brand: str,
    day: str,
    recipient: str,
    *,
    now: datetime,
    lease_until: datetime,
    retry_now: bool = False,
) -> bool:
    """Claim the send of a brand's digest for ``day`` to ``recipient`` until ``lease_until``;
    False if it was sent, given up, claimed by another process, or (unless ``retry_now``) waits
    for its next attempt. Two processes sending the same digest at once send it once."""
    recipient = recipient_key(recipient)
    with write_transaction(db) as conn:
        row = conn.execute(
            "SELECT state, next_attempt_at FROM digest_sends "
            "WHERE brand = ? AND day = ? AND recipient = ?",
            (brand, day, recipient),
        ).fetchone()
        if row is not None and not send_is_due(row[0], row[1], now, retry_now=retry_now):
            return False
        conn.execute(
            "INSERT INTO digest_sends (brand, day, recipient, state, attempts, next_attempt_at, "
            "updated_at) VALUES (?, ?, ?, 'sending', 0, ?, ?) "
            "ON CONFLICT(brand, day, recipient) DO UPDATE SET state = 'sending', "
            "next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
            (brand, day, recipient, iso(lease_until), iso(now)),
        )
    return True


def record_digest_sent(
    db: Database, brand: str, day: str, recipient: str, *, message_id: str, now: datetime
) -> None:
    """Record that the SMTP server accepted a brand's digest for ``day`` to ``recipient``."""
    recipient = recipient_key(recipient)
    with write_transaction(db) as conn:
        conn.execute(
            "INSERT INTO digest_sends (brand, day, recipient, state, attempts, message_id, "
            "sent_at, updated_at) VALUES (?, ?, ?, 'sent', 1, ?, ?, ?) "
            "ON CONFLICT(brand, day, recipient) DO UPDATE SET state = 'sent', "
            "attempts = digest_sends.attempts + 1, message_id = excluded.message_id, "
            "last_error = NULL, next_attempt_at = NULL, sent_at = excluded.sent_at, "
            "updated_at = excluded.updated_at",
            (brand, day, recipient, message_id, iso(now), iso(now)),
        )


def record_digest_failed(
    db: Database,
    brand: str,
    day: str,
    recipient: str,
    *,
    error: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> int:
    """Record a failed attempt (``next_attempt_at`` None: given up); return the attempts so far."""
    recipient = recipient_key(recipient)
    state = "failed" if next_attempt_at is not None else "dead"
    with write_transaction(db) as conn:
        conn.execute(
            "INSERT INTO digest_sends (brand, day, recipient, state, attempts, last_error, "
            "next_attempt_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
            "ON CONFLICT(brand, day, recipient) DO UPDATE SET state = excluded.state, "
            "attempts = digest_sends.attempts + 1, last_error = excluded.last_error, "
            "next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at "
            "WHERE digest_sends.state != 'sent'",
            (
                brand,
                day,
                recipient,
                state,
                error,
                iso(next_attempt_at) if next_attempt_at else None,
                iso(now),
            ),
        )
        row = conn.execute(
            "SELECT attempts FROM digest_sends WHERE brand = ? AND day = ? AND recipient = ?",
            (brand, day, recipient),
        ).fetchone()
    return int(row[0])
