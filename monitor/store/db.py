"""The database itself: ``open_db()``, the schema migrations, write transactions and checkpoints.

Every write runs in a ``BEGIN IMMEDIATE`` transaction (a deferred one that reads and then writes
fails at once with SQLITE_BUSY_SNAPSHOT when another process committed in between).

The migrations are recorded by name in ``_sqlite_migrations``: never rename, reorder or remove
one, or an existing store would apply it again (or never).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlite_utils import Database, Migrations

from monitor.store.fs import network_mount

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 30.0
migrations = Migrations("touchpoint")


class StoreError(Exception):
    """The database cannot be opened or written; the message says why and what to do."""


class StoreFull(StoreError):
    """A write found the disk full (or the store at its size limit) and was rolled back whole."""


class StoreBusy(StoreError):
    """Another program held the write lock past the busy timeout; the write was rolled back."""


class StoreReadOnly(StoreError):
    """The database file, its folder or its disk cannot be written; the write was rolled back."""


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


@migrations()
def m005_fold_digest_recipients(db: Database) -> None:
    """Know a digest recipient by the address in lower case (``store.recipient_key``): where one
    address was recorded in two spellings for a day, keep the sent record (else the latest)."""
    db.execute(
        "DELETE FROM digest_sends WHERE rowid NOT IN (SELECT rowid FROM (SELECT rowid, "
        "row_number() OVER (PARTITION BY brand, day, lower(trim(recipient)) "
        "ORDER BY state = 'sent' DESC, updated_at DESC) AS n FROM digest_sends) WHERE n = 1)"
    )
    db.execute("UPDATE digest_sends SET recipient = lower(trim(recipient))")


@migrations()
def m006_add_run_gaps(db: Database) -> None:
    """Record on a run why items may be missing although it went ok (``runs.gap``)."""
    db.table("runs").add_column("gap", str)
    # the alert pass looks for recent gaps every minute: only the few runs with one are indexed
    db.execute("CREATE INDEX idx_runs_gap ON runs (started_at) WHERE gap IS NOT NULL")


@migrations()
def m007_create_service_state(db: Database) -> None:
    """Keep what the daemon knows about itself across restarts: its starts and stops, and how the
    last classification went (``store.service``)."""
    db.table("service_state").create({"name": str, "state": str, "updated_at": str}, pk="name")


@migrations()
def m008_create_post_brands(db: Database) -> None:
    """Know a post's role for each brand it concerns (``post_brands``): a post of brand A that
    mentions brand B is A's broadcast and B's mention; one row in ``posts`` keeps its content, and
    ``posts.brand``/``kind`` stay the role it was first stored in. Every per-brand query reads
    the roles."""
    # a post deleted (by hand: touchpoint deletes none) takes its roles with it; WITHOUT ROWID,
    # every index holds the post id too, so the indexes below answer the queries by themselves
    db.execute(
        "CREATE TABLE post_brands (post_id TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE, "
        "brand TEXT NOT NULL, platform TEXT NOT NULL, kind TEXT NOT NULL, "
        "is_brand INTEGER NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (post_id, brand)) "
        "WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO post_brands (post_id, brand, platform, kind, is_brand, created_at) "
        "SELECT id, brand, platform, kind, is_brand, created_at FROM posts"
    )
    # the alert rules' and the digest's range scans, as on posts before
    db.table("post_brands").create_index(["brand", "kind", "created_at", "is_brand", "platform"])
    db.table("post_brands").create_index(["brand", "platform", "kind", "created_at"])
    # each brand has its own alert for a mention of two: 'unanswered_mention:<brand>:<post id>'
    db.execute(
        "UPDATE alerts SET fingerprint = 'unanswered_mention:' || brand || ':' || "
        "substr(fingerprint, length('unanswered_mention:') + 1) "
        "WHERE kind = 'unanswered_mention' AND fingerprint LIKE 'unanswered_mention:%'"
    )


@migrations()
def m009_create_stream_heads(db: Database) -> None:
    """Keep each stream's latest runs by id (``stream_heads``): its latest run, latest run that
    was not a skip, latest success, latest error, and its failures since that success. Status,
    health, the daemon's start and the digest read these few rows; ``runs`` grows by a row per
    stream and interval (a million in weeks with many brands), and grouping it on every alert pass
    took seconds."""
    db.execute(
        "CREATE TABLE stream_heads (brand TEXT NOT NULL, platform TEXT NOT NULL, "
        "stream TEXT NOT NULL, query TEXT NOT NULL, run_id INTEGER NOT NULL, last_id INTEGER, "
        "ok_id INTEGER, error_id INTEGER, failures INTEGER NOT NULL DEFAULT 0, "
        "PRIMARY KEY (brand, platform, stream, query)) WITHOUT ROWID"
    )
    rebuild_stream_heads(db.conn)


@migrations()
def m010_add_cursor_account(db: Database) -> None:
    """Record on a cursor the id of the brand account its stream was walked for
    (``cursors.account``): a brand moved to another account on the platform walks that one
    afresh instead of resuming from the position of the old one. NULL: from before."""
    db.table("cursors").add_column("account", str)


def rebuild_stream_heads(conn: sqlite3.Connection) -> None:
    """Set every stream's head from its runs (a store from before the heads; a bulk load)."""
    conn.execute("DELETE FROM stream_heads")
    conn.execute(
        "INSERT INTO stream_heads (brand, platform, stream, query, run_id, last_id, ok_id, "
        "error_id) SELECT brand, platform, stream, query, max(id), "
        "max(CASE WHEN outcome != 'skipped' THEN id END), "
        "max(CASE WHEN outcome = 'ok' THEN id END), "
        "max(CASE WHEN error IS NOT NULL THEN id END) FROM runs GROUP BY 1, 2, 3, 4"
    )
    conn.execute(
        "UPDATE stream_heads SET failures = (SELECT count(*) FROM runs f "
        "WHERE f.brand = stream_heads.brand AND f.platform = stream_heads.platform "
        "AND f.stream = stream_heads.stream AND f.query = stream_heads.query "
        "AND f.id > coalesce(stream_heads.ok_id, 0) AND f.outcome IN ('failed', 'auth_failed'))"
    )


def open_db(path: Path | str) -> Database:
    """Open (creating if needed) the SQLite store in WAL mode and apply pending migrations."""
    path = Path(path)
    try:
        check_local_disk(path)  # before anything is made there, its folder included
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
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


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only (0600): it keeps the Bluesky session
    tokens. SQLite gives the -wal and -shm files the same mode; an existing file keeps its own."""
    # it may exist already, or its folder refuse writes, which sqlite3 then reports
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def check_local_disk(path: Path) -> None:
    """Refuse a database path on a network filesystem (``store.fs``): raise StoreError."""
    remote = network_mount(path)
    if remote is not None:
        raise StoreError(
            f"{path}: the database would be on a network filesystem ({remote.fstype} "
            f"{remote.source} mounted at {remote.point}), where SQLite's WAL mode, which "
            "touchpoint needs, can corrupt it. Fix: put [store] path (or TOUCHPOINT_DB) on a "
            "local disk"
        )


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
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; commit on success, else roll back.

    A full disk, a write lock held by another program past the busy timeout and a read-only
    database are :class:`StoreFull`, :class:`StoreBusy` and :class:`StoreReadOnly`, naming the
    file and the fix, instead of SQLite's bare message."""
    conn = db.conn
    with _WRITE_LOCK:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.commit()
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        except sqlite3.Error as exc:
            translated = _store_error(conn, exc)
            if translated is None:
                raise
            raise translated from None


def _store_error(conn: sqlite3.Connection, exc: sqlite3.Error) -> StoreError | None:
    """The :class:`StoreError` that says what ``exc`` means for the user, or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes keep it in 8 bits
    if primary == sqlite3.SQLITE_FULL:
        return StoreFull(
            f"{_file_of(conn)}: the disk is full (or the store is at its size limit); this "
            "write was rolled back whole. Fix: free space on that disk; collection resumes "
            "from the stored cursors"
        )
    if primary == sqlite3.SQLITE_BUSY:
        seconds = int(conn.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000
        return StoreBusy(
            f"{_file_of(conn)}: another program held the database's write lock for over "
            f"{seconds:g} s; this write was rolled back whole. Fix: end the other program's "
            "open write (a sqlite3 shell inside BEGIN, a copy or backup tool); the next run "
            "retries from the stored cursors"
        )
    if primary == sqlite3.SQLITE_READONLY:
        return StoreReadOnly(
            f"{_file_of(conn)}: the database cannot be written ({exc}); this write was rolled "
            "back whole. Fix: let the user touchpoint runs as write the file, its -wal and -shm "
            "files and their folder, on a disk mounted read-write"
        )
    return None


class _RolledBack(Exception):
    """Raised inside a write transaction to end it with a rollback."""


def check_writable(db: Database) -> None:
    """Raise :class:`StoreReadOnly` (or :class:`StoreBusy`) unless the store can be written now:
    a header write is tried in a transaction that is then rolled back, so nothing changes."""
    try:
        with write_transaction(db) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            raise _RolledBack
    except _RolledBack:
        return


def _file_of(conn: sqlite3.Connection) -> str:
    """The main database file of ``conn``."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file) or ":memory:"
    return "the store"


def wal_bytes(db: Database) -> int:
    """The size of the store's write-ahead log file now (0 when there is none)."""
    try:
        return os.stat(_file_of(db.conn) + "-wal").st_size
    except OSError:
        return 0


def checkpoint(db: Database) -> tuple[int, int, int]:
    """Copy the WAL into the database and truncate it (busy, WAL pages, pages checkpointed)."""
    with _WRITE_LOCK:
        row = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def shrink_wal(db: Database) -> bool:
    """Truncate the WAL file if no reader holds an old snapshot; True if it was truncated.

    A passive checkpoint first (it never waits): only if it copied every page back does the
    truncating one run, so a reader left open elsewhere never makes this wait out the busy
    timeout while holding up the writes."""
    with _WRITE_LOCK:
        busy, pages, done = db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy or done < pages:
            return False
        busy, _, _ = db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


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


# A lone UTF-16 surrogate: what an API's JSON escape of half an emoji (a text cut in the middle of a
# surrogate pair) decodes to. Neither SQLite's UTF-8 nor orjson can take one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` storable as UTF-8: each lone surrogate becomes U+FFFD (the replacement character),
    so that one odd post can never fail a page, and the stream with it, on every run."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _valid_json_value(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): _valid_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_json_value(v) for v in value]
    return value


def _encode_json(value: Any) -> str:
    """Compact JSON text; orjson, because rows are encoded on the ingest hot path. A lone surrogate
    anywhere in ``value`` (an API's raw answer) becomes U+FFFD."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson refuses lone surrogates; anything else unencodable raises again
        return orjson.dumps(_valid_json_value(value)).decode()


def table_counts(
    db: Database, tables: Iterable[str] = ("posts", "runs", "cursors")
) -> dict[str, int]:
    """Return the row count of each named table."""
    return {t: int(db.conn.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0]) for t in tables}


def stored_brands(db: Database) -> set[str]:
    """Return every brand name the store holds posts or alerts of."""
    sql = "SELECT brand FROM post_brands UNION SELECT brand FROM alerts"
    return {str(row[0]) for row in db.conn.execute(sql)}


def explain(db: Database, sql: str, params: Sequence[Any]) -> list[str]:
    """Return SQLite's query plan of ``sql`` (one line per step), to check what it scans."""
    return [str(row[3]) for row in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
