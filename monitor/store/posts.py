"""Posts: the ingest upsert (alone, or with the cursor that covers the page), reads and counts."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor import clock
from monitor.models import Cursor, Post, StreamKey, iso
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
# ``posts`` holds an item's content; ``brand`` and ``kind`` are the role it was first stored in
# (its roles for every brand are in ``post_brands``). A keyword hit later seen as a mention of the
# same brand becomes a mention; ``is_brand`` is set once any brand's own account wrote it.
_PROMOTED = "posts.brand = excluded.brand AND posts.kind = 'keyword' AND excluded.kind != 'keyword'"
UPSERT_POST_SQL = (
    f"INSERT INTO posts ({', '.join(POST_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(POST_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET text=excluded.text, metrics=excluded.metrics, "
    "lang=excluded.lang, in_reply_to_id=excluded.in_reply_to_id, "
    "conversation_id=excluded.conversation_id, author_handle=excluded.author_handle, "
    "raw=excluded.raw, updated_at=excluded.updated_at, "
    f"kind=CASE WHEN {_PROMOTED} THEN excluded.kind ELSE posts.kind END, "
    "is_brand=max(posts.is_brand, excluded.is_brand), "
    # first stored as another brand's mention, now seen as a brand's own: collected as a brand
    # post now (the daemon looks for posts to label among those collected since its last look)
    "collected_at=CASE WHEN posts.is_brand < excluded.is_brand THEN excluded.collected_at "
    "ELSE posts.collected_at END "
    f"WHERE {_CHANGED} OR ({_PROMOTED}) OR posts.is_brand < excluded.is_brand"
)
# where a ``posts`` row (in POST_COLUMNS order) holds the columns of its ``post_brands`` row
_ROLE_COLUMNS_IN_ROW = tuple(
    POST_COLUMNS.index(c) for c in ("id", "brand", "platform", "kind", "is_brand", "created_at")
)
_ID, _BRAND, _KIND = (POST_COLUMNS.index(c) for c in ("id", "brand", "kind"))
# An item's role for one brand: what it is to that brand (its post, its reply, a mention of it, a
# keyword hit) and whether that brand's account wrote it. Only a keyword hit changes: into what
# the same brand's mentions or posts stream later sees it as.
UPSERT_ROLE_SQL = (
    "INSERT INTO post_brands (post_id, brand, platform, kind, is_brand, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(post_id, brand) DO UPDATE SET "
    "kind=excluded.kind WHERE post_brands.kind = 'keyword' AND excluded.kind != 'keyword'"
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


def _stored_roles(
    conn: sqlite3.Connection, ids: Sequence[str]
) -> dict[tuple[str, str], tuple[str, str]]:
    """The stored roles of ``ids``: (post id, brand) -> (kind, the brand first stored)."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        sql = (
            "SELECT b.post_id, b.brand, b.kind, p.brand FROM post_brands b "
            f"JOIN posts p ON p.id = b.post_id WHERE b.post_id IN ({marks})"
        )
        found.update(((r[0], r[1]), (r[2], r[3])) for r in conn.execute(sql, chunk))
    return found


def _upsert(conn: sqlite3.Connection, posts: Sequence[Post], now: datetime) -> tuple[int, int]:
    """Write the posts and their roles; return (new, updated). An item is new to a brand the
    first time it is stored for that brand (though another brand's stream stored it before), and
    updated when its content changed or its keyword hit became a mention or post."""
    stamp = iso(now)
    # keyed by (id, brand): a page may repeat an item, and the last one wins
    rows = {(row[_ID], row[_BRAND]): row for row in (post_row(p, stamp) for p in posts)}
    if not rows:
        return 0, 0
    stored = _stored_roles(conn, list({post_id for post_id, _ in rows}))
    new = [key for key in rows if key not in stored]
    # this brand's keyword hit, now its mention or post, on a row another brand stored first
    # (whose kind stays): updated, whether or not the content changed
    promoted = [
        key
        for key, (kind, first) in stored.items()
        if key in rows and kind == "keyword" and rows[key][_KIND] != "keyword" and first != key[1]
    ]
    uncounted = {*new, *promoted}
    # only the rows already stored for their brand count as updated through their content
    _write(conn, UPSERT_POST_SQL, [row for key, row in rows.items() if key in uncounted])
    before = conn.total_changes
    _write(conn, UPSERT_POST_SQL, [row for key, row in rows.items() if key not in uncounted])
    changed = conn.total_changes - before
    _write(conn, UPSERT_ROLE_SQL, [role_row(row) for row in rows.values()])
    return len(new), changed + len(promoted)


def role_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``post_brands`` row of a ``posts`` row: id, brand, platform, kind, is_brand, time."""
    return tuple(row[i] for i in _ROLE_COLUMNS_IN_ROW)


def _write(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    try:
        conn.executemany(sql, rows)
    except UnicodeEncodeError:  # a lone surrogate in a text (``raw`` is made valid when encoded)
        logger.warning("a page held text that is not valid Unicode; replaced with U+FFFD")
        # the rows before the bad one are written already: again with the same values they are
        # no-ops (the upsert's WHERE), so the change count stays right
        conn.executemany(sql, [_valid_row(row) for row in rows])


def _valid_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(valid_text(v) if isinstance(v, str) else v for v in row)


def upsert_posts(
    db: Database, posts: Sequence[Post], *, now: datetime | None = None
) -> tuple[int, int]:
    """Insert or update posts in one transaction; return (new, updated) counts."""
    with write_transaction(db) as conn:
        return _upsert(conn, posts, now or clock.now())


def store_page(
    db: Database,
    key: StreamKey,
    posts: Sequence[Post],
    cursor: Cursor,
    *,
    account: str | None = None,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Upsert a page of posts and advance the stream's cursor in the same transaction;
    ``account``: the id of the brand account the stream is walked for."""
    now = now or clock.now()
    with write_transaction(db) as conn:
        counts = _upsert(conn, posts, now)
        _set_cursor(conn, key, cursor, now, account)
    return counts


_ROLE_COLUMNS = ("brand", "kind", "is_brand")
# a post as one brand sees it: its content, with that brand's role
_POST_AS_ROLE = ", ".join(f"b.{c}" if c in _ROLE_COLUMNS else f"p.{c}" for c in POST_COLUMNS)


def iter_posts(
    db: Database,
    *,
    brand: str | None = None,
    platform: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield stored posts (oldest first) as dicts, filtered by brand, platform, kind and time,
    with the classifier's ``label`` and its ``confidence`` (None for a post not labelled: every
    post that is no brand post, and a brand post before its classify pass).

    A post is yielded once for each brand it concerns, with that brand's ``brand``, ``kind`` and
    ``is_brand`` (a post of brand A that mentions brand B: A's post, and B's mention)."""
    where, params = [], []
    for column, value in (("brand", brand), ("platform", platform), ("kind", kind)):
        if value is not None:
            where.append(f"b.{column} = ?")
            params.append(value)
    if since is not None:
        where.append("b.created_at >= ?")
        params.append(iso(since))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {_POST_AS_ROLE}, l.label, l.confidence FROM post_brands b "
        "JOIN posts p ON p.id = b.post_id LEFT JOIN labels l ON l.post_id = p.id "
        f"{clause} ORDER BY b.created_at, b.post_id, b.brand"
    )
    cursor = db.conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def count_posts(db: Database) -> dict[tuple[str, str, str], int]:
    """Return the number of posts per (brand, platform, kind), each counted for every brand it
    concerns."""
    rows = db.conn.execute(
        "SELECT brand, platform, kind, count(*) FROM post_brands GROUP BY 1, 2, 3"
    )
    return {(b, p, k): n for b, p, k, n in rows}
