"""Read what a brand's digest needs from the store and hand it to the pure :mod:`build`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlite_utils import Database

from monitor import store
from monitor.config import BrandSettings
from monitor.digest.build import (
    COLLECTED_STREAMS,
    WINDOW_DAYS,
    ActivityRow,
    BrandDigest,
    Period,
    StreamRuns,
    build_digest,
)
from monitor.models import ACCOUNT_STREAM, MentionRow, parse_iso


def read_digest(
    db: Database,
    brand: BrandSettings,
    period: Period,
    *,
    as_of: datetime,
    streams: Mapping[str, Sequence[str]] | None = None,
) -> BrandDigest:
    """Build ``brand``'s digest for ``period``, mentions counted as answered by ``as_of``;
    ``streams``: per platform, the streams the config collects (``Settings.platform_streams``;
    None: all)."""
    previous = period.previous()
    start = min(previous.start, period.end - timedelta(days=WINDOW_DAYS))
    activity = [
        ActivityRow(platform=r[0], kind=r[1], created_at=parse_iso(r[2]), label=r[3])
        for r in store.iter_brand_activity(db, brand.name, start=start, end=period.end)
    ]
    mentions = [
        MentionRow(
            id=r[0],
            brand=brand.name,
            platform=r[1],
            created_at=parse_iso(r[2]),
            answered_at=parse_iso(r[6]) if r[6] else None,
            text=r[3] or "",
            url=r[4] or "",
            author=r[5] or "",
        )
        for r in store.iter_mentions_between(
            db,
            brand.name,
            start=previous.start,
            end=period.end,
            answered_by=brand.answered_by,
        )
    ]
    # a platform no longer configured still shows while its items are in the rows
    seen = sorted({r.platform for r in activity} | {m.platform for m in mentions})
    platforms = list(dict.fromkeys([*brand.accounts, *seen]))
    last = store.get_last_activity(db, brand.name, platforms, before=period.end)
    return build_digest(
        brand.name,
        timezone=brand.timezone,
        platforms=list(brand.accounts),
        period=period,
        as_of=as_of,
        target_share=brand.alerts.self_promotion_max_share,
        activity=activity,
        mentions=mentions,
        last_activity={p: parse_iso(s) if s else None for p, s in last.items()},
        runs=_runs(db, brand),
        streams=streams or {},
    )


def _runs(db: Database, brand: BrandSettings) -> dict[tuple[str, str], StreamRuns]:
    """What the runs of the brand's configured channels say of how far they were collected."""
    found = store.get_collection_runs(
        db, brand.name, brand.accounts, (*COLLECTED_STREAMS, ACCOUNT_STREAM)
    )
    return {
        key: StreamRuns(
            last_ok=parse_iso(ok) if ok else None,
            last_run=parse_iso(last) if last else None,
            outcome=outcome,
            left_out=left_out,
        )
        for key, (ok, last, outcome, left_out) in found.items()
    }
