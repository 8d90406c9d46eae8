"""The store: one ``open_db()``, the schema migrations, and every SQL statement touchpoint runs.

Every write runs in a ``BEGIN IMMEDIATE`` transaction (a deferred one that reads and then writes
fails at once with SQLITE_BUSY_SNAPSHOT when another process committed in between); posts and the
cursor that covers them commit together.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlite_utils import Database, Migrations

from monitor.models import Alert, Cursor, Post, RunResult, StreamKey, iso, parse_iso, utcnow

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 30.0
migrations = Migrations("touchpoint")


class StoreError(Exception):
    """The database cannot be opened or written; the message says why and what to do."""


@migrations()
def m001_create_tables(db: Database) -> None:
    """Create every table of the data model, with the indexes the alerts and digest query."""
    db.table("posts").create(
        {
            "id": str,
            "platform": str,
            "native_id": str,
            "brand": str,
            "author_id": str,
            "author_handle": str,
            "is_brand": int,
            "kind": str,
            "text": str,
            "url": str,
            "lang": str,
            "created_at": str,
            "in_reply_to_id": str,
            "conversation_id": str,
            "metrics": str,
            "raw": str,
            "collected_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"platform", "native_id", "brand", "kind", "text", "created_at"},
    )
    db.table("posts").create_index(["brand", "platform", "kind", "created_at"])
    db.table("posts").create_index(["in_reply_to_id"])
    db.table("posts").create_index(["conversation_id"])
    db.table("posts").create_index(["collected_at"])
    db.table("labels").create(
        {
            "post_id": str,
            "label": str,
            "confidence": float,
            "probabilities": str,
            "model_version": str,
            "labeled_at": str,
        },
        pk="post_id",
        foreign_keys=[("post_id", "posts", "id")],
    )
    db.table("cursors").create(
        {
            "brand": str,
            "platform": str,
            "stream": str,
            "query": str,
            "position": str,
            "pending": str,
            "updated_at": str,
        },
        pk=("brand", "platform", "stream", "query"),
    )
    db.table("runs").create(
        {
            "id": int,
            "brand": str,
            "platform": str,
            "stream": str,
            "query": str,
            "started_at": str,
            "finished_at": str,
            "outcome": str,
            "items_new": int,
            "items_updated": int,
            "pages": int,
            "error": str,
            "retry_at": str,
        },
        pk="id",
    )
    db.table("runs").create_index(["brand", "platform", "stream", "query", "id"])
    db.table("alerts").create(
        {
            "id": int,
            "fingerprint": str,
            "kind": str,
            "brand": str,
            "platform": str,
            "subject": str,
            "payload": str,
            "created_at": str,
            "state": str,
            "updated_at": str,
        },
        pk="id",
    )
    db.table("alerts").create_index(["fingerprint"], unique=True)
    db.table("alerts").create_index(["state", "brand"])
    db.table("deliveries").create(
        {
            "id": int,
            "alert_id": int,
            "channel": str,
            "attempts": int,
            "last_error": str,
            "sent_at": str,
            "next_attempt_at": str,
        },
        pk="id",
        foreign_keys=[("alert_id", "alerts", "id")],
    )
    db.table("deliveries").create_index(["alert_id", "channel"], unique=True)
    db.table("accounts").create(
        {"platform": str, "handle": str, "native_id": str, "resolved_at": str},
        pk=("platform", "handle"),
    )


@migrations()
def m002_create_collector_state(db: Database) -> None:
    """Keep what a collector needs across runs, e.g. a Bluesky session (not its password)."""
    db.table("collector_state").create(
        {"platform": str, "state": str, "updated_at": str}, pk="platform"
    )


@migrations()
def m003_create_outbox(db: Database) -> None:
    """Alerts keep their severity and notification times; deliveries become the grouped outbox."""
    alerts = db.table("alerts")
    for column in ("severity", "title", "last_notified_at", "resolved_at", "acked_at"):
        alerts.add_column(column, str)
    db.table("deliveries").drop()
    db.table("deliveries").create(
        {
            "id": int,
            "key": str,
            "channel": str,
            "brand": str,
            "kind": str,
            "severity": str,
            "alert_ids": str,
            "message": str,
            "created_at": str,
            "state": str,
            "attempts": int,
            "next_attempt_at": str,
            "last_error": str,
            "sent_at": str,
        },
        pk="id",
    )
    db.table("deliveries").create_index(["key"], unique=True)
    db.table("deliveries").create_index(["state", "next_attempt_at"])


@migrations()
def m004_create_digest_sends(db: Database) -> None:
    """Remember which daily digests reached which recipient; index posts by (brand, kind, time)."""
    db.table("digest_sends").create(
        {
            "brand": str,
            "day": str,
            "recipient": str,
            "state": str,
            "attempts": int,
            "message_id": str,
            "last_error": str,
            "next_attempt_at": str,
            "sent_at": str,
            "updated_at": str,
        },
        pk=("brand", "day", "recipient"),
    )
    # a brand's mentions or posts over a time range, whatever the platform (digest and alerts)
    db.table("posts").create_index(["brand", "kind", "created_at"])


def open_db(path: Path | str) -> Database:
    """Open (creating if needed) the SQLite store in WAL mode and apply pending migrations."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS)
        db = Database(conn)
        _set_pragmas(conn)
        if migrations.pending(db):
            with write_transaction(db):
                migrations.apply(db)
    except sqlite3.Error as exc:
        raise StoreError(
            f"{path}: cannot open the database ({exc}). Fix: check that the path is "
            "a touchpoint database on a local disk and that its folder is writable"
        ) from None
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot create its folder ({exc.strerror}). Fix: choose a "
            "writable [store] path or TOUCHPOINT_DB"
        ) from None
    return db


def _set_pragmas(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"journal_mode stays {mode!r}, WAL is required")
    # Cursors and the alert outbox drive what is sent and fetched next: a commit that a power loss
    # could take back would be a duplicate or a gap.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")


# SQLite already lets one connection write at a time; holding this lock as well means that within
# one process (the daemon's threads) a commit, and the automatic checkpoint it may run, never
# overlap another connection's write: the in-process half of the WAL-reset race (see
# sqlite_version_warning).
_WRITE_LOCK = threading.RLock()


@contextmanager
def write_transaction(db: Database) -> Iterator[sqlite3.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; commit on success, else roll back."""
    conn = db.conn
    with _WRITE_LOCK:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.commit()


def checkpoint(db: Database) -> tuple[int, int, int]:
    """Copy the WAL into the database and truncate it (busy, WAL pages, pages checkpointed)."""
    with _WRITE_LOCK:
        row = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def sqlite_version_warning() -> str | None:
    """Say so when this SQLite has the WAL-reset bug (3.7.0 to 3.51.2 without a backport)."""
    version = tuple(int(p) for p in sqlite3.sqlite_version.split("."))
    fixed = (
        version >= (3, 51, 3) or (3, 50, 7) <= version < (3, 51) or (3, 44, 6) <= version < (3, 45)
    )
    if fixed:
        return None
    return (
        f"SQLite {sqlite3.sqlite_version} has the WAL-reset bug (fixed in 3.51.3, 3.50.7, "
        "3.44.6): two processes writing the store at the same instant can corrupt it"
    )


# -- posts ---------------------------------------------------------------------------------------

POST_COLUMNS = (
    "id",
    "platform",
    "native_id",
    "brand",
    "author_id",
    "author_handle",
    "is_brand",
    "kind",
    "text",
    "url",
    "lang",
    "created_at",
    "in_reply_to_id",
    "conversation_id",
    "metrics",
    "raw",
    "collected_at",
    "updated_at",
)
_CHANGED = " OR ".join(
    f"posts.{c} IS NOT excluded.{c}"
    for c in ("text", "metrics", "lang", "in_reply_to_id", "conversation_id", "author_handle")
)
# A keyword hit later seen as a mention becomes a mention; nothing else changes an item's kind.
UPSERT_POST_SQL = (
    f"INSERT INTO posts ({', '.join(POST_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(POST_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET text=excluded.text, metrics=excluded.metrics, "
    "lang=excluded.lang, in_reply_to_id=excluded.in_reply_to_id, "
    "conversation_id=excluded.conversation_id, author_handle=excluded.author_handle, "
    "raw=excluded.raw, updated_at=excluded.updated_at, "
    "kind=CASE WHEN posts.kind='keyword' THEN excluded.kind ELSE posts.kind END "
    f"WHERE {_CHANGED} OR (posts.kind='keyword' AND excluded.kind!='keyword')"
)


def _encode_json(value: Any) -> str:
    """Compact JSON text; orjson, because rows are encoded on the ingest hot path."""
    return orjson.dumps(value).decode()


def _post_row(post: Post, now: str) -> tuple[Any, ...]:
    return (
        f"{post.platform}:{post.native_id}",
        post.platform,
        post.native_id,
        post.brand,
        post.author_id,
        post.author_handle,
        int(post.is_brand),
        post.kind,
        post.text,
        post.url,
        post.lang,
        post.created_at,
        post.in_reply_to_id,
        post.conversation_id,
        _encode_json(post.metrics),
        _encode_json(post.raw),
        now,
        now,
    )


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0] for r in conn.execute(f"SELECT id FROM posts WHERE id IN ({marks})", chunk)
        )
    return found


def _upsert(conn: sqlite3.Connection, posts: Sequence[Post], now: datetime) -> tuple[int, int]:
    stamp = iso(now)
    # keyed by id: a page may repeat an item, and the last one wins
    rows = {row[0]: row for row in (_post_row(p, stamp) for p in posts)}
    if not rows:
        return 0, 0
    new = len(rows) - len(_existing_ids(conn, list(rows)))
    before = conn.total_changes
    conn.executemany(UPSERT_POST_SQL, rows.values())
    changed = conn.total_changes - before
    return new, changed - new


def upsert_posts(
    db: Database, posts: Sequence[Post], *, now: datetime | None = None
) -> tuple[int, int]:
    """Insert or update posts in one transaction; return (new, updated) counts."""
    with write_transaction(db) as conn:
        return _upsert(conn, posts, now or utcnow())


def store_page(
    db: Database,
    key: StreamKey,
    posts: Sequence[Post],
    cursor: Cursor,
    *,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Upsert a page of posts and advance the stream's cursor in the same transaction."""
    now = now or utcnow()
    with write_transaction(db) as conn:
        counts = _upsert(conn, posts, now)
        _set_cursor(conn, key, cursor, now)
    return counts


def iter_posts(
    db: Database,
    *,
    brand: str | None = None,
    platform: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield stored posts (oldest first) as dicts, filtered by brand, platform, kind and time."""
    where, params = [], []
    for column, value in (("brand", brand), ("platform", platform), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(iso(since))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT * FROM posts {clause} ORDER BY created_at, id"
    cursor = db.conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def count_posts(db: Database) -> dict[tuple[str, str, str], int]:
    """Return the number of posts per (brand, platform, kind)."""
    rows = db.conn.execute("SELECT brand, platform, kind, count(*) FROM posts GROUP BY 1, 2, 3")
    return {(b, p, k): n for b, p, k, n in rows}


# -- labels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRow:
    """A classifier's verdict on one brand post."""

    post_id: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str


def iter_posts_to_label(
    db: Database,
    *,
    model_version: str,
    relabel: bool = False,
    since: datetime | None = None,
    batch_size: int = 1000,
) -> Iterator[list[tuple[str, str]]]:
    """Yield batches of (post id, text) of brand posts with no label (or, with ``relabel``,
    a label from another model version), oldest first."""
    where = ["p.is_brand = 1"]
    params: list[Any] = []
    if relabel:
        where.append("(l.post_id IS NULL OR l.model_version IS NOT ?)")
        params.append(model_version)
    else:
        where.append("l.post_id IS NULL")
    if since is not None:
        where.append("p.created_at >= ?")
        params.append(iso(since))
    sql = (
        "SELECT p.id, p.text FROM posts p LEFT JOIN labels l ON l.post_id = p.id "
        f"WHERE {' AND '.join(where)} AND p.id > ? ORDER BY p.id LIMIT ?"
    )
    last = ""
    while True:
        rows = [(str(r[0]), str(r[1])) for r in db.conn.execute(sql, [*params, last, batch_size])]
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def upsert_labels(db: Database, rows: Sequence[LabelRow], *, now: datetime | None = None) -> int:
    """Write labels (replacing older ones of the same posts) in one transaction."""
    stamp = iso(now or utcnow())
    with write_transaction(db) as conn:
        conn.executemany(
            "INSERT INTO labels (post_id, label, confidence, probabilities, model_version, "
            "labeled_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(post_id) DO UPDATE SET "
            "label = excluded.label, confidence = excluded.confidence, "
            "probabilities = excluded.probabilities, model_version = excluded.model_version, "
            "labeled_at = excluded.labeled_at",
            [
                (
                    r.post_id,
                    r.label,
                    r.confidence,
                    _encode_json(r.probabilities),
                    r.model_version,
                    stamp,
                )
                for r in rows
            ],
        )
    return len(rows)


def count_labels(db: Database) -> dict[str, int]:
    """Return how many brand posts carry each label."""
    return {
        str(k): int(n)
        for k, n in db.conn.execute("SELECT label, count(*) FROM labels GROUP BY label")
    }


# -- alerts ---------------------------------------------------------------------------------------

# The unary + keeps SQLite off the brand indexes for the answer lookup: with them it would walk
# the brand's whole history for every mention; without, it looks the replies up by in_reply_to_id.
_MENTIONS_SQL = """
SELECT m.id, m.platform, m.created_at, m.text, m.url, m.author_handle,
  (SELECT min(r.created_at) FROM posts r
    WHERE r.is_brand = 1 AND +r.brand = m.brand AND +r.created_at >= m.created_at
      AND (r.in_reply_to_id = m.id OR r.in_reply_to_id IN (
        SELECT f.id FROM posts f WHERE m.conversation_id IS NOT NULL
          AND f.conversation_id = m.conversation_id AND f.author_id = m.author_id
          AND f.created_at >= m.created_at))) AS answered_at
FROM posts m
WHERE m.brand = ? AND m.kind = 'mention' AND m.created_at >= ?
"""


def iter_mentions_with_answers(
    db: Database, brand: str, *, since: datetime
) -> Iterator[tuple[Any, ...]]:
    """Yield the brand's mentions since ``since`` with the time of the brand's first answer.

    Answered means a brand reply to the mention itself, or to a later post of the same author in
    the same conversation (the person followed up, and the brand answered that)."""
    yield from db.conn.execute(_MENTIONS_SQL, (brand, iso(since)))


def iter_labelled_posts(
    db: Database, brand: str, *, since: datetime | None
) -> Iterator[tuple[Any, ...]]:
    """Yield (id, platform, created_at, label, text, url) of the brand's own broadcasts."""
    sql = (
        "SELECT p.id, p.platform, p.created_at, l.label, p.text, p.url FROM posts p "
        "JOIN labels l ON l.post_id = p.id WHERE p.brand = ? AND p.kind = 'post' "
        "AND p.is_brand = 1 AND p.created_at >= ? ORDER BY p.created_at DESC"
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


_ALERT_COLUMNS = (
    "id, fingerprint, kind, brand, platform, severity, title, state, created_at, "
    "last_notified_at, payload"
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


def sync_alerts(
    db: Database, alerts: Sequence[Alert], *, brands: Sequence[str], now: datetime
) -> tuple[int, int]:
    """Record what the rules raised (inside the caller's transaction); resolve what they no
    longer raise for ``brands``. Return (opened, resolved)."""
    stamp, opened, raised = iso(now), 0, set()
    conn = db.conn
    for alert in alerts:
        raised.add(alert.fingerprint)
        row = conn.execute(
            "SELECT id, state, severity FROM alerts WHERE fingerprint = ?", (alert.fingerprint,)
        ).fetchone()
        if row is None and alert.held:
            continue
        if row is None or row[1] == "resolved":
            opened += 1
        _upsert_alert(conn, alert, row, stamp)
    marks = ",".join("?" * len(brands))
    open_rows = conn.execute(
        "SELECT id, fingerprint FROM alerts WHERE state IN ('open', 'acked') "
        f"AND brand IN ({marks})",
        list(brands),
    ).fetchall()
    gone = [(stamp, stamp, r[0]) for r in open_rows if r[1] not in raised]
    conn.executemany(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?, updated_at = ? WHERE id = ?", gone
    )
    return opened, len(gone)


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
    state = "open" if row[1] == "resolved" else row[1]
    escalated = _SEVERITY.get(alert.severity, 0) > _SEVERITY.get(row[2] or "", 0)
    # a reopened or escalated alert is news: it is sent again now, not at the next repeat
    renotify = row[1] == "resolved" or (escalated and state == "open")
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
            (iso(utcnow()), iso(utcnow()), alert_id),
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


def get_due_deliveries(db: Database, *, now: datetime) -> list[Delivery]:
    """Return the pending deliveries whose next attempt is due, oldest first."""
    rows = db.conn.execute(
        "SELECT id, key, channel, brand, kind, alert_ids, message, attempts, state "
        "FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id",
        (iso(now),),
    )
    return [
        Delivery(
            r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), json.loads(r[6]), r[7], r[8]
        )
        for r in rows
    ]


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


# -- cursors -------------------------------------------------------------------------------------


def get_cursor(db: Database, key: StreamKey) -> Cursor:
    """Return the committed cursor of a stream (empty when the stream never stored anything)."""
    row = db.conn.execute(
        "SELECT position, pending FROM cursors "
        "WHERE brand=? AND platform=? AND stream=? AND query=?",
        (key.brand, key.platform, key.stream, key.query),
    ).fetchone()
    if row is None:
        return Cursor()
    return Cursor(position=row[0], pending=json.loads(row[1]) if row[1] else None)


def _set_cursor(conn: sqlite3.Connection, key: StreamKey, cursor: Cursor, now: datetime) -> None:
    conn.execute(
        "INSERT INTO cursors (brand, platform, stream, query, position, pending, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(brand, platform, stream, query) DO UPDATE SET "
        "position=excluded.position, pending=excluded.pending, updated_at=excluded.updated_at",
        (
            key.brand,
            key.platform,
            key.stream,
            key.query,
            cursor.position,
            json.dumps(cursor.pending, sort_keys=True) if cursor.pending is not None else None,
            iso(now),
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


def record_run(db: Database, run: RunResult) -> None:
    """Append one run of one stream to ``runs``."""
    with write_transaction(db) as conn:
        conn.execute(
            "INSERT INTO runs (brand, platform, stream, query, started_at, finished_at, outcome, "
            "items_new, items_updated, pages, error, retry_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run.key.brand,
                run.key.platform,
                run.key.stream,
                run.key.query,
                iso(run.started_at),
                iso(run.finished_at or utcnow()),
                run.outcome,
                run.items_new,
                run.items_updated,
                run.pages,
                run.error,
                iso(run.retry_at) if run.retry_at else None,
            ),
        )


def get_deferral(db: Database, key: StreamKey) -> datetime | None:
    """Return until when the stream's last run deferred it (a rate limit), if it did."""
    row = db.conn.execute(
        "SELECT outcome, retry_at FROM runs WHERE brand=? AND platform=? AND stream=? AND query=? "
        "AND outcome != 'skipped' ORDER BY id DESC LIMIT 1",
        (key.brand, key.platform, key.stream, key.query),
    ).fetchone()
    if row is None or row[0] != "deferred" or not row[1]:
        return None
    return parse_iso(row[1])


def last_run_starts(db: Database) -> dict[tuple[str, str, str], datetime]:
    """Return when each (brand, platform, stream) last started a run, over all its queries."""
    sql = (
        "SELECT r.brand, r.platform, r.stream, r.started_at FROM runs r JOIN ("
        " SELECT max(id) AS id FROM runs GROUP BY brand, platform, stream, query"
        ") m ON r.id = m.id"
    )
    found: dict[tuple[str, str, str], datetime] = {}
    for brand, platform, stream, started in db.conn.execute(sql):
        when = parse_iso(started)
        key = (brand, platform, stream)
        if key not in found or when > found[key]:
            found[key] = when
    return found


def has_posts_to_label(db: Database, *, collected_since: datetime | None = None) -> bool:
    """Whether a brand post (collected at or after ``collected_since``) has no label yet."""
    sql = (
        "SELECT 1 FROM posts p WHERE p.is_brand = 1 "
        "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.post_id = p.id)"
    )
    params: list[Any] = []
    if collected_since is not None:
        sql += " AND p.collected_at >= ?"
        params.append(iso(collected_since))
    return db.conn.execute(sql + " LIMIT 1", params).fetchone() is not None


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
  SELECT brand, platform, stream, query FROM runs
  UNION SELECT brand, platform, stream, query FROM cursors
),
last AS (
  SELECT r.* FROM runs r JOIN (
    SELECT max(id) AS id FROM runs WHERE outcome != 'skipped'
    GROUP BY brand, platform, stream, query
  ) m ON r.id = m.id
),
ok AS (
  SELECT brand, platform, stream, query, max(id) AS id, max(finished_at) AS at FROM runs
  WHERE outcome = 'ok' GROUP BY 1, 2, 3, 4
)
SELECT k.brand, k.platform, k.stream, k.query, last.started_at, last.outcome,
       coalesce(last.items_new, 0), ok.at,
       (SELECT count(*) FROM runs f WHERE f.brand = k.brand AND f.platform = k.platform
          AND f.stream = k.stream AND f.query = k.query AND f.outcome IN ('failed', 'auth_failed')
          AND f.id > coalesce(ok.id, 0)),
       c.updated_at,
       (SELECT e.error FROM runs e WHERE e.brand = k.brand AND e.platform = k.platform
          AND e.stream = k.stream AND e.query = k.query AND e.error IS NOT NULL
          ORDER BY e.id DESC LIMIT 1),
       last.retry_at
FROM keys k
LEFT JOIN last ON last.brand = k.brand AND last.platform = k.platform
  AND last.stream = k.stream AND last.query = k.query
LEFT JOIN ok ON ok.brand = k.brand AND ok.platform = k.platform
  AND ok.stream = k.stream AND ok.query = k.query
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
            (platform, json.dumps(state, sort_keys=True), iso(utcnow())),
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
            (platform, handle.lower(), native_id, iso(utcnow())),
        )


def table_counts(
    db: Database, tables: Iterable[str] = ("posts", "runs", "cursors")
) -> dict[str, int]:
    """Return the row count of each named table."""
    return {t: int(db.conn.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0]) for t in tables}


# -- digest ---------------------------------------------------------------------------------------

# The digest's own queries; each is a range scan of the (brand, kind, created_at) or the
# (brand, platform, kind, created_at) index, whatever the size of the store (bench/digest.py).
DIGEST_ACTIVITY_SQL = """
SELECT p.platform, p.kind, p.created_at, l.label FROM posts p
LEFT JOIN labels l ON l.post_id = p.id
WHERE p.brand = ? AND p.kind IN ('post', 'reply') AND p.is_brand = 1
  AND p.created_at >= ? AND p.created_at < ?
"""
# the alerts' definition of answered, for the mentions of one period
DIGEST_MENTIONS_SQL = _MENTIONS_SQL + "  AND m.created_at < ?\n"
DIGEST_LAST_ACTIVITY_SQL = (
    "SELECT max(created_at) FROM posts "
    "WHERE brand = ? AND platform = ? AND kind = ? AND created_at < ?"
)


def iter_brand_activity(
    db: Database, brand: str, *, start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    """Yield (platform, kind, created_at, label or None) of the brand's own posts and replies
    created in [start, end)."""
    yield from db.conn.execute(DIGEST_ACTIVITY_SQL, (brand, iso(start), iso(end)))


def iter_mentions_between(
    db: Database, brand: str, *, start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    """Yield the brand's mentions created in [start, end), as :func:`iter_mentions_with_answers`
    does (the time of the first answer, however late, is the last column)."""
    yield from db.conn.execute(DIGEST_MENTIONS_SQL, (brand, iso(start), iso(end)))


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


def explain(db: Database, sql: str, params: Sequence[Any]) -> list[str]:
    """Return SQLite's query plan of ``sql`` (one line per step), to check what it scans."""
    return [str(row[3]) for row in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@dataclass(frozen=True)
class DigestSend:
    """Where the digest of one brand and day stands for one recipient."""

    recipient: str
    state: str  # "sent" | "failed" (tried again from next_attempt_at) | "dead"
    attempts: int
    next_attempt_at: str | None
    sent_at: str | None


def get_digest_sends(db: Database, brand: str, day: str) -> dict[str, DigestSend]:
    """Return the recorded sends of a brand's digest for ``day`` (YYYY-MM-DD), by recipient."""
    rows = db.conn.execute(
        "SELECT recipient, state, attempts, next_attempt_at, sent_at FROM digest_sends "
        "WHERE brand = ? AND day = ?",
        (brand, day),
    )
    return {r[0]: DigestSend(*r) for r in rows}


def record_digest_sent(
    db: Database, brand: str, day: str, recipient: str, *, message_id: str, now: datetime
) -> None:
    """Record that the SMTP server accepted a brand's digest for ``day`` to ``recipient``."""
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
