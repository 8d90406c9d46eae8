"""Posts: the ingest upsert (alone, or with the cursor that covers the page), reads and counts."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor.models import Cursor, Post, StreamKey, iso, utcnow
from monitor.store.db import _encode_json, valid_text, write_transaction
from monitor.store.streams import _set_cursor

logger = logging.getLogger(__name__)

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


def post_row(post: Post, now: str) -> tuple[Any, ...]:
    """Build the ``posts`` row of a post (in :data:`POST_COLUMNS` order), stamped ``now``."""
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
    rows = {row[0]: row for row in (post_row(p, stamp) for p in posts)}
    if not rows:
        return 0, 0
    new = len(rows) - len(_existing_ids(conn, list(rows)))
    before = conn.total_changes
    try:
        conn.executemany(UPSERT_POST_SQL, rows.values())
    except UnicodeEncodeError:  # a lone surrogate in a text (``raw`` is made valid when encoded)
        logger.warning("a page held text that is not valid Unicode; replaced with U+FFFD")
        # the rows before the bad one are written already: again with the same values they are
        # no-ops (the upsert's WHERE), so the change count stays right
        conn.executemany(UPSERT_POST_SQL, [_valid_row(row) for row in rows.values()])
    changed = conn.total_changes - before
    return new, changed - new


def _valid_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(valid_text(v) if isinstance(v, str) else v for v in row)


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
