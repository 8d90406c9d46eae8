"""What the 429 tests of every platform share: one stream collected through the real client,
with its waits recorded instead of slept."""

from __future__ import annotations

from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.config import Settings
from monitor.models import RunResult
from monitor.platforms.base import DEFAULT_DEFERRAL
from monitor.platforms.streams import build_collector


def collect_deferred_by_default(
    platform: str, settings: Settings, db: Database, stream: str
) -> RunResult:
    """Collect ``stream`` on ``platform`` once and check it was deferred by the default wait
    without a wait inside the run: what a 429 without a readable reset must give."""
    collector = build_collector(platform, settings)
    waits: list[float] = []
    collector._sleep = waits.append  # type: ignore[attr-defined]  # a wait, not a real sleep
    before = clock.now()
    try:
        selection = pipeline.Selection(stream=stream)
        (limited,) = pipeline.collect(db, settings, selection, collectors={platform: collector})
    finally:
        collector.close()
    after = clock.now()
    assert waits == []
    assert limited.outcome == "deferred", limited.error
    assert limited.retry_at is not None
    assert before + DEFAULT_DEFERRAL <= limited.retry_at <= after + DEFAULT_DEFERRAL
    assert store.get_deferral(db, limited.key) == limited.retry_at.replace(microsecond=0)
    return limited
