"""Ingest speed: posts upserted through touchpoint's store against a bare sqlite3 upsert.

Both write the same N rows into the same schema (a fresh, migrated WAL database each round, on
the same disk), in one transaction each, in this one process. The store's path includes building
the rows from Post records, finding which ids are new to their brand, and BEGIN IMMEDIATE; the
baseline is one ``executemany`` of the same posts upsert and one of the same role upsert
(``post_brands``) over rows built beforehand.

Usage: python bench/ingest.py [--posts 20000] [--rounds 9]
Target: the store reaches at least 0.7 of the bare rate (the printed ratio).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from monitor import clock, store
from monitor.models import Post, iso


def make_posts(n: int) -> list[Post]:
    """Build n distinct, realistic posts."""
    return [
        Post(
            platform="x",
            native_id=str(1_600_000_000_000_000_000 + i),
            brand="acme",
            author_id=str(1000 + i % 997),
            author_handle=f"user{i % 997}",
            is_brand=i % 7 == 0,
            kind="post" if i % 7 == 0 else "mention",
            text=f"@acme my order #{i} has not arrived yet, can you help? " * 2,
            url=f"https://x.com/user/status/{i}",
            created_at="2026-11-20T10:00:00Z",
            lang="en",
            in_reply_to_id=None,
            conversation_id=f"x:{i}",
            metrics={"likes": i % 13, "replies": i % 3, "reposts": 0, "quotes": 0},
            raw={"id": str(i), "text": "..."},
        )
        for i in range(n)
    ]


def time_store(path: Path, posts: list[Post]) -> float:
    db = store.open_db(path)
    started = time.perf_counter()
    new, _ = store.upsert_posts(db, posts)
    elapsed = time.perf_counter() - started
    assert new == len(posts)
    db.conn.close()
    return elapsed


def time_bare(path: Path, posts: list[Post]) -> float:
    db = store.open_db(path)  # same schema, pragmas and indexes
    stamp = iso(clock.now())
    rows = [store.post_row(p, stamp) for p in posts]
    roles = [store.role_row(row) for row in rows]
    conn = db.conn
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(store.UPSERT_POST_SQL, rows)
    conn.executemany(store.UPSERT_ROLE_SQL, roles)
    conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    posts = make_posts(args.posts)
    store_times, bare_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            bare_times.append(time_bare(Path(tmp) / f"bare{i}.db", posts))
            store_times.append(time_store(Path(tmp) / f"store{i}.db", posts))
    store_rate = args.posts / statistics.median(store_times)
    bare_rate = args.posts / statistics.median(bare_times)
    print(f"posts per round: {args.posts}, rounds: {args.rounds} (medians)")
    print(f"store.upsert_posts: {store_rate:,.0f} rows/s")
    print(f"bare executemany:   {bare_rate:,.0f} rows/s (posts and roles)")
    # each round pairs the two runs back to back, so machine drift cancels in the ratio
    ratio = statistics.median(b / s for s, b in zip(store_times, bare_times, strict=True))
    print(f"ratio store/bare:   {ratio:.2f} (median of per-round ratios; target >= 0.70)")


if __name__ == "__main__":
    main()
