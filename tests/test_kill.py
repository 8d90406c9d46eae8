"""`touchpoint collect` killed with SIGKILL half-way through a multi-page walk loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.platforms.x.sandbox import XSandbox
from tests.conftest import TOKEN, read_store

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def count_posts(db_path: Path) -> int:
    rows = read_store(db_path, "SELECT count(*) FROM posts")
    return int(str(rows[0][0])) if rows else 0


def collect(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "collect"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def test_kill_mid_walk_then_rerun_loses_and_duplicates_nothing(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    with XSandbox(
        seed=3,
        start=END - timedelta(days=2),
        end=END,
        bearer_token=TOKEN,
        posts_per_day=40,
        mentions_per_day=60,
    ) as sandbox:
        config = write_config(sandbox.url, extra="page_size = 10\n", keywords="[]")
        db_path = tmp_path / "touchpoint.db"
        expected = {
            f"x:{sandbox.tweet_id(i)}"
            for i in sandbox.visible()
            if i.kind in ("post", "reply", "mention")
        }
        sandbox.add_fault("slow", times=6, delay=0.5)  # time for the kill to land mid-walk

        proc = collect(config)
        deadline = time.monotonic() + 30
        while count_posts(db_path) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        partial = count_posts(db_path)
        assert 0 < partial < len(expected), "the kill must land inside the walk"

        rerun = collect(config)
        out, _ = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, out.decode()

    conn = sqlite3.connect(db_path)
    ids = [r[0] for r in conn.execute("SELECT id FROM posts")]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    newest = {
        stream: max(
            int(i[2:]) for (i,) in conn.execute(f"SELECT id FROM posts WHERE kind IN ({kinds})")
        )
        for stream, kinds in (("posts", "'post','reply'"), ("mentions", "'mention'"))
    }
    cursors = dict(conn.execute("SELECT stream, position FROM cursors WHERE pending IS NULL"))
    assert {s: int(p) for s, p in cursors.items()} == newest
    conn.close()
