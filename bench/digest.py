"""Digest and alert speed on a small and a large store: the work for one brand and day must not
grow with the store.

Builds two stores (default 10k and 1M rows of posts and mentions) with the same traffic per brand
and day: the large one holds more brands and more days, as a store does after a year. Each brand
has four channels; each day brings brand posts (labelled), customer mentions, brand replies to
most of them (some only to the customer's follow-up in the same conversation), and keyword hits.
Each stream (posts, mentions, keywords) of each brand and platform ran hourly over those days and
the day after, every run ok: the ``runs`` history the alert pass's stream health reads. Rows (posts,
their labels, their roles in ``post_brands``, and the runs) go in by bulk ``executemany`` in one
transaction; the streams' heads are built from the runs as the store's migration does.

Then it times, for one brand and its last full day, building the digest (the store's queries and
the pure figures), rendering it as HTML and text, and one alert evaluation for that brand
(``outbox.evaluate``), and prints both timings and their ratio. It also prints the query plans
and fails when one scans the posts table instead of searching an index.

Usage: python bench/digest.py [--small 10000] [--large 1000000] [--rounds 5] [--dir DIR]
Target: large / small at most 5.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from monitor import store
from monitor.alerts import outbox
from monitor.config import Settings, parse_settings
from monitor.digest import day_period, read_digest, render_html, render_text
from monitor.models import iso

PLATFORMS = ("x", "reddit", "mastodon", "bluesky")
LABELS = (("engaging", 0.55), ("inspiring", 0.30), ("sales-pitch", 0.15))
POSTS_PER_DAY = 2  # per brand and platform, on average
MENTIONS_PER_DAY = 10
KEYWORDS_PER_DAY = 3
RUNS_PER_DAY = 24  # per stream (posts, mentions, keywords): hourly (the daemon's default is 5 min)
ANSWERED = 0.7
FOLLOW_UP = 0.1  # mentions whose author follows up in the conversation before the brand answers
ROWS_PER_BRAND_DAY = 88  # about, over the four platforms
LAST_DAY = date(2026, 11, 22)
LARGE_BRANDS = 40
TARGET_RATIO = 5.0
TEXT = (
    "Thanks for reaching out about your order, we are looking into it right now and will get back "
    "to you shortly"
)


@dataclass(frozen=True)
class Shape:
    """How a store is spread: brands times days of the same daily traffic."""

    brands: int
    days: int

    @classmethod
    def for_rows(cls, rows: int) -> Shape:
        """Two brands for a small store, forty for a large one; days to reach ``rows``."""
        brands = 2 if rows < 100_000 else LARGE_BRANDS
        return cls(brands, max(15, round(rows / (brands * ROWS_PER_BRAND_DAY))))


_COLUMNS = (
    "id, platform, native_id, brand, author_id, author_handle, is_brand, kind, text, url, lang, "
    "created_at, in_reply_to_id, conversation_id, metrics, raw, collected_at, updated_at"
)
_ROLES = (
    "INSERT INTO post_brands (post_id, brand, platform, kind, is_brand, created_at) "
    "SELECT id, brand, platform, kind, is_brand, created_at FROM posts"
)
_INSERT = f"INSERT INTO posts ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"
_RUN = (
    "INSERT INTO runs (brand, platform, stream, query, started_at, finished_at, outcome, "
    "items_new, items_updated, pages) VALUES (?, ?, ?, '', ?, ?, 'ok', 1, 0, 1)"
)
_LABEL = (
    "INSERT INTO labels (post_id, label, confidence, probabilities, model_version, labeled_at) "
    "VALUES (?, ?, 0.9, '{}', 'bench', ?)"
)


class _Rows:
    """Generates one brand-day of one platform at a time."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def _id(self, platform: str) -> tuple[str, str]:
        self.serial += 1
        return f"{platform}:{self.serial}", str(self.serial)

    def _row(self, platform: str, brand: str, kind: str, when: datetime, **extra: Any) -> tuple:
        pid, native = self._id(platform)
        customer = f"u{self.serial % 5000}"
        author = extra.get("author", brand if kind in ("post", "reply") else customer)
        stamp = iso(when)
        return (
            pid,
            platform,
            native,
            brand,
            author,
            author,
            int(kind in ("post", "reply")),
            kind,
            TEXT,
            f"https://example.com/{platform}/{native}",
            "en",
            stamp,
            extra.get("reply_to"),
            extra.get("conversation", pid),
            '{"likes": 1}',
            "{}",
            stamp,
            stamp,
        )

    def _when(self, day_start: datetime) -> datetime:
        return day_start + timedelta(seconds=self.rng.randrange(86400))

    def _label(self) -> str:
        return self.rng.choices([n for n, _ in LABELS], [w for _, w in LABELS])[0]

    def day(
        self, platform: str, brand: str, day_start: datetime
    ) -> tuple[list[tuple], list[tuple[str, str]]]:
        """Rows and labels of one brand's day on one platform."""
        rows, labels = [], []
        for _ in range(self.rng.randint(0, 2 * POSTS_PER_DAY)):
            rows.append(self._row(platform, brand, "post", self._when(day_start)))
            labels.append((rows[-1][0], self._label()))
        for _ in range(self.rng.randint(MENTIONS_PER_DAY // 2, MENTIONS_PER_DAY * 3 // 2)):
            mention = self._row(platform, brand, "mention", self._when(day_start))
            rows.append(mention)
            answer_to, at = mention, datetime.fromisoformat(mention[11])
            if self.rng.random() < FOLLOW_UP:
                at += timedelta(minutes=10)
                answer_to = self._row(
                    platform,
                    brand,
                    "mention",
                    at,
                    author=mention[4],
                    reply_to=mention[0],
                    conversation=mention[0],
                )
                rows.append(answer_to)
            if self.rng.random() < ANSWERED:
                delay = timedelta(minutes=self.rng.choice([5, 20, 45, 120, 600, 1500]))
                rows.append(
                    self._row(
                        platform,
                        brand,
                        "reply",
                        at + delay,
                        reply_to=answer_to[0],
                        conversation=mention[0],
                    )
                )
                labels.append((rows[-1][0], self._label()))
        for _ in range(self.rng.randint(0, 2 * KEYWORDS_PER_DAY)):
            rows.append(self._row(platform, brand, "keyword", self._when(day_start)))
        return rows, labels

    @staticmethod
    def runs(platform: str, brand: str, day_start: datetime) -> list[tuple[str, ...]]:
        """The collection runs of one brand's day on one platform, each stream hourly."""
        every = timedelta(days=1) / RUNS_PER_DAY
        return [
            (brand, platform, stream, iso(at), iso(at + timedelta(seconds=2)))
            for at in (day_start + every * n for n in range(RUNS_PER_DAY))
            for stream in ("posts", "mentions", "keywords")
        ]


def _brand(i: int) -> str:
    return f"brand{i:03d}"


def brand_days(
    shape: Shape, seed: int
) -> Iterator[tuple[list[tuple], list[tuple[str, str]], list[tuple[str, ...]]]]:
    """Every brand-day of the store, oldest day first (as collection would store them), with
    the runs that collected it."""
    rows = _Rows(seed)
    first = LAST_DAY - timedelta(days=shape.days - 1)
    for offset in range(shape.days + 1):  # and the runs of the day after, when digests are built
        start = datetime.combine(first + timedelta(days=offset), datetime.min.time(), UTC)
        for b in range(shape.brands):
            for platform in PLATFORMS:
                posts, labels = (
                    rows.day(platform, _brand(b), start) if offset < shape.days else ([], [])
                )
                yield posts, labels, rows.runs(platform, _brand(b), start)


def build_store(path: Path, rows: int, *, seed: int = 7) -> tuple[Database, Shape, int]:
    """Create and fill a store of about ``rows`` posts; return it, its shape and its row count."""
    db = store.open_db(path)
    shape = Shape.for_rows(rows)
    conn = db.conn
    conn.execute("PRAGMA synchronous=OFF")  # a bulk load: a crash would just mean building again
    stamp = iso(datetime.now(UTC))
    conn.execute("BEGIN")
    for posts, labels, runs in brand_days(shape, seed):
        conn.executemany(_INSERT, posts)
        conn.executemany(_LABEL, [(pid, label, stamp) for pid, label in labels])
        conn.executemany(_RUN, runs)
    conn.execute(_ROLES)  # each post concerns its one brand: its role there
    store.rebuild_stream_heads(conn)
    conn.commit()
    conn.execute("PRAGMA synchronous=FULL")  # and no ANALYZE: touchpoint never runs it either
    count = int(conn.execute("SELECT count(*) FROM posts").fetchone()[0])
    return db, shape, count


def settings_for(brand: str, path: Path) -> Settings:
    """A configuration with one brand on the four platforms (alerts to the log)."""
    data = {"brands": [{"name": brand, "accounts": {p: brand for p in PLATFORMS}}]}
    return parse_settings(data, path)


def run_once(db: Database, settings: Settings, day: date) -> float:
    """Build and render one brand's digest for ``day`` and evaluate its alerts; return seconds."""
    brand = settings.brands[0]
    period = day_period(day, brand.timezone)
    as_of = period.end + timedelta(hours=8)
    started = time.perf_counter()
    digest = read_digest(db, brand, period, as_of=as_of)
    render_html(digest)
    render_text(digest)
    outbox.evaluate(db, settings, now=as_of)
    return time.perf_counter() - started


def scans(db: Database, brand: str, day: date) -> list[str]:
    """The plan lines of the digest queries (the mentions one is the alerts' too); a step that
    scans a table instead of searching an index is marked ``BAD``."""
    period = day_period(day, "UTC")
    start, end = iso(period.start), iso(period.end)
    queries = {
        "digest activity": (store.DIGEST_ACTIVITY_SQL, (brand, start, end)),
        "digest mentions": (store.DIGEST_MENTIONS_SQL, (brand, brand, start, end)),
        "last activity": (store.DIGEST_LAST_ACTIVITY_SQL, (brand, "x", "post", end)),
        "stream runs": (store.DIGEST_STREAM_RUNS_SQL, (brand, "x", "mentions")),
    }
    lines = []
    for name, (sql, params) in queries.items():
        for step in store.explain(db, sql, params):
            bad = step.startswith("SCAN ")  # every step of these should SEARCH an index
            lines.append(f"{'BAD ' if bad else '    '}{name}: {step}")
    return lines


def measure(path: Path, rows: int, rounds: int) -> tuple[float, int, Shape, list[str]]:
    """Build a store and time ``rounds`` runs (after one warm-up); return the median."""
    started = time.perf_counter()
    db, shape, count = build_store(path, rows)
    print(
        f"built {count:,} posts ({shape.brands} brands x {shape.days} days x 4 platforms) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    settings = settings_for(_brand(0), path)
    run_once(db, settings, LAST_DAY)
    times = [run_once(db, settings, LAST_DAY) for _ in range(rounds)]
    plan = scans(db, _brand(0), LAST_DAY)
    db.conn.close()
    return statistics.median(times), count, shape, plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="Where the stores go (default: a temporary one).")
    args = parser.parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        small, small_rows, _, _ = measure(Path(tmp) / "small.db", args.small, args.rounds)
        large, large_rows, _, plan = measure(Path(tmp) / "large.db", args.large, args.rounds)
    print("\n".join(plan))
    ratio = large / small
    print(
        f"digest + alerts for one brand and day: {small * 1000:.1f} ms on {small_rows:,} posts, "
        f"{large * 1000:.1f} ms on {large_rows:,} posts; ratio {ratio:.2f} "
        f"(target at most {TARGET_RATIO:g})"
    )
    if any(line.startswith("BAD") for line in plan):
        print("a query scans the posts table", file=sys.stderr)
        return 1
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
