"""Labels: the classifier's verdicts on brand posts, and which posts still need one."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from monitor import clock
from monitor.models import iso
from monitor.store.db import _encode_json, write_transaction

logger = logging.getLogger(__name__)


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
    stamp = iso(now or clock.now())
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
