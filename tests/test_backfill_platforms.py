"""A 30-day backfill on every platform, killed half-way with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.sandbox import fleet
from monitor.sandbox.traffic import TrafficItem
from tests.conftest import read_store

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE = END - timedelta(days=30)
X_SEARCH_FLOOR = END - timedelta(days=7) + timedelta(minutes=1)  # recent search: 7 days back


def reachable(platform: str, item: TrafficItem) -> bool:
    """Whether the platform's API can give this item of the window at all."""
    return not (platform == "x" and item.kind == "keyword" and item.created_at < X_SEARCH_FLOOR)


def posts_in(db_path: Path) -> list[str]:
    return [str(r[0]) for r in read_store(db_path, "SELECT id FROM posts")]


def backfill(config: Path) -> subprocess.Popen[bytes]:
    window = ["--since", f"{SINCE:%Y-%m-%dT%H:%M:%S}", "--until", f"{END:%Y-%m-%dT%H:%M:%S}"]
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "backfill", *window],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


@pytest.mark.parametrize("platform", fleet.PLATFORMS)
def test_backfill_30_days_killed_and_restarted_loses_and_duplicates_nothing(
    platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fleet.environment([platform]).items():
        monkeypatch.setenv(name, value)
    sandbox = fleet.start_sandbox(
        platform,
        seed=13,
        start=SINCE - timedelta(days=2),
        end=END,
        posts_per_day=3,
        mentions_per_day=8,
        keyword_hits_per_day=2,
    )
    with sandbox:
        config = tmp_path / "touchpoint.toml"
        config.write_text(
            f'[store]\npath = "touchpoint.db"\n\n'
            f"{fleet.platform_section(platform, sandbox.url, page_size=10)}\n"
            f"{fleet.brand_section([platform])}"
        )
        db_path = tmp_path / "touchpoint.db"
        items = [i for i in sandbox.visible() if SINCE <= i.created_at < END]  # type: ignore[attr-defined]
        expected = {sandbox.store_id(i) for i in items if reachable(platform, i)}
        assert len(expected) > 300

        sandbox.add_fault("slow", times=8, delay=0.4)  # time for the kill to land mid-walk
        first = backfill(config)
        deadline = time.monotonic() + 60
        while not posts_in(db_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        assert first.returncode == -signal.SIGKILL
        assert 0 < len(posts_in(db_path)) < len(expected), "the kill must land inside the walk"

        second = backfill(config)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 0, out.decode()

    ids = posts_in(db_path)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
