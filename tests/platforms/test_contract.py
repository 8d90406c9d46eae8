"""One contract for all four collectors, each driven by its real client against its sandbox."""

from __future__ import annotations

import json
import sqlite3
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.config import Settings, load_settings
from monitor.models import StreamKey
from monitor.platforms.base import Collector
from monitor.platforms.streams import build_collector
from monitor.sandbox import fleet
from monitor.sandbox.faults import ODD_TEXT_SUFFIX, TRICKLE_BYTES
from monitor.sandbox.traffic import TrafficSandbox

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=2)
FAST = (
    "[collect]\nmax_attempts = 2\nread_timeout_seconds = 1\nconnect_timeout_seconds = 1\n"
    "max_rate_limit_wait_seconds = 0\n"
)
# what a single expired-token answer does: X and Mastodon report it; Reddit renews its token and
# Bluesky refreshes its session, once, and go on
EXPIRED_TOKEN_OUTCOME = {
    "x": "auth_failed",
    "mastodon": "auth_failed",
    "reddit": "ok",
    "bluesky": "ok",
}


@dataclass
class World:
    """A sandbox, a config pointing at it, a store, and collectors kept across runs."""

    platform: str
    server: TrafficSandbox
    settings: Settings
    db: Database
    collectors: dict[str, Collector]

    def collect(self) -> dict[str, pipeline.RunResult]:
        results = pipeline.collect(self.db, self.settings, collectors=self.collectors)
        return {r.key.stream: r for r in results}

    def expected(self, *kinds: str) -> set[str]:
        visible = self.server.visible()  # type: ignore[attr-defined]
        return {self.server.store_id(i) for i in visible if i.kind in kinds}

    def stored(self, *kinds: str) -> set[str]:
        marks = ",".join("?" * len(kinds))
        sql = f"SELECT id FROM posts WHERE kind IN ({marks})"
        return {r[0] for r in self.db.execute(sql, kinds)}

    def cursor(self, stream: str) -> tuple[str | None, object]:
        query = next(iter(self.collect_keys()[stream]))
        c = store.get_cursor(self.db, StreamKey("acme", self.platform, stream, query))
        return c.position, c.pending

    def collect_keys(self) -> dict[str, set[str]]:
        keys: dict[str, set[str]] = {}
        for row in self.db.execute("SELECT stream, query FROM cursors"):
            keys.setdefault(row[0], set()).add(row[1])
        return keys


@contextmanager
def open_world(
    platform: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    tls: ssl.SSLContext | None = None,
) -> Iterator[World]:
    """The sandbox of ``platform`` running (over HTTPS with ``tls``), touchpoint pointed at it."""
    for name, value in fleet.environment([platform]).items():
        monkeypatch.setenv(name, value)
    sandbox = fleet.start_sandbox(platform, seed=31, start=START, end=END)
    sandbox.serve_tls(tls)
    with sandbox as server:
        config = tmp_path / "touchpoint.toml"
        config.write_text(
            f'[store]\npath = "touchpoint.db"\n\n{FAST}\n'
            f"{fleet.platform_section(platform, server.url, page_size=10)}\n"
            f"{fleet.brand_section([platform])}"
        )
        settings = load_settings(config)
        db = store.open_db(settings.db_path)
        collectors = {platform: build_collector(platform, settings)}
        yield World(platform, server, settings, db, collectors)
        collectors[platform].close()
        db.conn.close()


@pytest.fixture(params=fleet.PLATFORMS)
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with open_world(request.param, tmp_path, monkeypatch) as opened:
        yield opened


def all_kinds() -> tuple[str, ...]:
    return ("post", "reply", "mention", "keyword")


def test_contract_incremental_paginated_idempotent_and_linked(world: World) -> None:
    world.server.set_clock(START + timedelta(days=1))
    first = world.collect()
    assert {r.outcome for r in first.values()} == {"ok"}
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())
    assert max(r.pages for r in first.values()) >= 3  # page_size 10: paginated to the end

    world.server.set_clock(END)
    second = world.collect()
    assert {r.outcome for r in second.values()} == {"ok"}
    assert sum(r.items_new for r in second.values()) > 0
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())

    again = world.collect()
    assert [r.items_new for r in again.values()] == [0, 0, 0]
    total, distinct = world.db.execute("SELECT count(*), count(DISTINCT id) FROM posts").fetchone()
    assert total == distinct == len(world.expected(*all_kinds()))

    replies = world.db.execute(
        "SELECT r.in_reply_to_id, m.kind FROM posts r LEFT JOIN posts m ON m.id = r.in_reply_to_id"
        " WHERE r.kind = 'reply'"
    ).fetchall()
    assert replies and all(parent and kind == "mention" for parent, kind in replies)


POSTS_ENDPOINT = {
    "x": "tweets",
    "reddit": "overview",
    "mastodon": "statuses",
    "bluesky": "getAuthorFeed",
}


def advance(world: World) -> None:
    """Collect half the traffic, then publish the rest, so that a run has something to store."""
    world.server.set_clock(START + timedelta(days=1))
    world.collect()
    world.server.set_clock(END)


@pytest.mark.parametrize(
    ("fault", "delay"),
    [
        ("malformed", 3.0),
        ("html", 3.0),  # a 200 with a proxy's or captive portal's page (reliability plan #27)
        ("error_body", 3.0),  # a 200 whose body is the platform's error object
        ("not_a_page", 3.0),  # a 200 with a list of numbers
        ("slow", 3.0),  # a read timeout (1 s)
        ("503", 3.0),
        ("trickle", 0.4),  # every gap under the read timeout, the body 8 s: past the 2 s deadline
        ("trickle_headers", 0.4),  # the same with the status line and headers
    ],
)
def test_contract_bad_answers_fail_the_run_and_change_nothing(
    world: World, fault: str, delay: float
) -> None:
    advance(world)
    before = world.cursor("posts"), world.stored("post", "reply")
    # as many as the attempts (2): each is retried, and the last fails the run
    world.server.add_fault(fault, times=2, delay=delay, endpoint=POSTS_ENDPOINT[world.platform])
    started = time.monotonic()
    results = world.collect()
    took = time.monotonic() - started
    world.server.clear_faults()
    assert results["posts"].outcome == "failed" and results["posts"].error
    if fault.startswith("trickle"):  # cut at the deadline, not when it ends: 2 attempts of 8 s
        assert "not complete in 2s" in results["posts"].error
        assert took < TRICKLE_BYTES * delay, took
    assert (world.cursor("posts"), world.stored("post", "reply")) == before
    assert results["mentions"].outcome == "ok"  # the other streams went on
    healed = world.collect()
    assert healed["posts"].outcome == "ok"
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


@pytest.mark.parametrize("fault", ["malformed", "html", "error_body", "not_a_page"])
def test_contract_one_bad_answer_is_retried_within_the_run(world: World, fault: str) -> None:
    """A 200 that is no page (garbled, a portal's HTML, an error object, the wrong shape) is
    retried at once, like a 5xx: the run goes on and stores everything."""
    advance(world)
    world.server.add_fault(fault, times=1, endpoint=POSTS_ENDPOINT[world.platform])
    results = world.collect()
    assert world.server.clear_faults() == 0  # the bad answer was sent
    assert {r.outcome for r in results.values()} == {"ok"}, results["posts"].error
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_items_out_of_order_and_twice_in_a_page_change_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliability plan #28: every page comes with its items reversed and one of them twice.
    Each item is stored once, and the cursors end where an ordered twin's do (the newest item,
    not the last one seen), so the next run neither misses nor refetches anything."""
    twin_path = tmp_path / "twin"
    twin_path.mkdir()
    with open_world(world.platform, twin_path, monkeypatch) as twin:
        for w in (world, twin):
            w.server.set_clock(START + timedelta(days=1))
        world.server.add_fault("shuffled", times=10_000)

        for step in (START + timedelta(days=1), END):
            for w in (world, twin):
                w.server.set_clock(step)
                results = w.collect()
                assert {r.outcome for r in results.values()} == {"ok"}, results

        assert world.server.clear_faults() > 0  # some pages were shuffled, not all consumed
        assert world.stored(*all_kinds()) == world.expected(*all_kinds())
        assert world.stored(*all_kinds()) == twin.stored(*all_kinds())
        cursors = "SELECT stream, query, position, pending FROM cursors ORDER BY stream, query"
        assert list(world.db.execute(cursors)) == list(twin.db.execute(cursors))


def test_contract_odd_characters_in_texts_are_stored_and_never_block_a_stream(world: World) -> None:
    # a lone surrogate fits neither SQLite's UTF-8 nor orjson: unreplaced, the page would fail on
    # every run and the stream would never get past that post
    assert "\ud83d" in ODD_TEXT_SUFFIX
    advance(world)
    world.server.add_fault("odd_text", times=1000)
    results = world.collect()
    assert {r.outcome for r in results.values()} == {"ok"}, results
    assert sum(r.items_new for r in results.values()) > 0
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())
    rows = world.db.execute("SELECT text, raw FROM posts").fetchall()
    odd = [text for text, _ in rows if "\ufffd" in text]
    assert odd and all("\u202e" in text and "\ud83d" not in text for text in odd)
    assert all(json.loads(raw) is not None for _, raw in rows)


def test_contract_full_disk_fails_every_stream_clearly_and_loses_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    advance(world)
    before = {s: world.cursor(s) for s in ("posts", "mentions")}, world.stored(*all_kinds())
    pages = world.db.execute("PRAGMA page_count").fetchone()[0]
    world.db.execute(f"PRAGMA max_page_count = {pages}")  # no page left on the "disk"
    full = world.collect()
    assert {r.outcome for r in full.values()} == {"failed"}
    assert all("the disk is full" in (r.error or "") for r in full.values())
    assert not [r for r in caplog.records if r.exc_info]  # a clear line, not a traceback
    world.db.execute("PRAGMA max_page_count = 1073741823")
    assert ({s: world.cursor(s) for s in ("posts", "mentions")}, world.stored(*all_kinds())) == (
        before
    )
    healed = world.collect()
    assert {r.outcome for r in healed.values()} == {"ok"}
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_store_locked_by_another_program_fails_every_stream_clearly_and_heals(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    advance(world)
    before = {s: world.cursor(s) for s in ("posts", "mentions")}, world.stored(*all_kinds())
    world.db.execute("PRAGMA busy_timeout = 200")
    other = sqlite3.connect(world.settings.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. a sqlite3 shell left inside a transaction
    try:
        locked = world.collect()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert locked and {r.outcome for r in locked.values()} == {"failed"}
    assert all("held the database's write lock" in (r.error or "") for r in locked.values())
    assert not [r for r in caplog.records if r.exc_info]  # a clear line, not a traceback
    assert ({s: world.cursor(s) for s in ("posts", "mentions")}, world.stored(*all_kinds())) == (
        before
    )
    healed = world.collect()
    assert {r.outcome for r in healed.values()} == {"ok"}
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_full_disk_on_the_first_run_fails_it_and_raises_nothing(world: World) -> None:
    world.server.set_clock(END)
    pages = world.db.execute("PRAGMA page_count").fetchone()[0]
    world.db.execute(f"PRAGMA max_page_count = {pages}")
    full = world.collect()  # account ids, sessions, pages: nothing can be written
    assert full and {r.outcome for r in full.values()} == {"failed"}
    assert world.stored(*all_kinds()) == set()
    world.db.execute("PRAGMA max_page_count = 1073741823")
    assert {r.outcome for r in world.collect().values()} == {"ok"}
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_server_error_then_success(world: World) -> None:
    advance(world)
    world.server.add_fault("500", times=1)
    assert world.collect()["posts"].outcome == "ok"
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_rate_limit_defers_then_resumes(world: World) -> None:
    advance(world)
    before = world.cursor("posts")
    world.server.add_fault("429", times=1, reset_in=2)
    limited = world.collect()["posts"]
    assert limited.outcome == "deferred" and limited.retry_at is not None
    assert world.cursor("posts") == before
    assert world.collect()["posts"].outcome == "skipped"
    time.sleep(max(0.0, (limited.retry_at - clock.now()).total_seconds()) + 0.2)
    assert world.collect()["posts"].outcome == "ok"
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_expired_token_is_no_retry_storm(world: World) -> None:
    advance(world)
    seen = len(world.server.requests)
    world.server.add_fault("expired_token", times=1)
    result = world.collect()["posts"]
    assert result.outcome == EXPIRED_TOKEN_OUTCOME[world.platform]
    during = world.server.requests[seen:]
    assert [r.status for r in during].count(401) + [r.status for r in during].count(400) == 1
    renewals = [r for r in during if "Session" in r.path or "access_token" in r.path]
    assert len(renewals) <= 1  # at most one token renewal or session refresh, never a storm
    assert world.collect()["posts"].outcome == "ok"
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_contract_fault_on_one_platform_never_stops_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fleet.environment().items():
        monkeypatch.setenv(name, value)
    with fleet.running(seed=5, start=START, end=END) as servers:
        servers["x"].add_fault("slow", times=20, delay=3.0)
        servers["reddit"].add_fault("503", times=40)
        config = tmp_path / "all.toml"
        config.write_text(fleet.config_text({p: s.url for p, s in servers.items()}) + "\n" + FAST)
        settings = load_settings(config)
        db = store.open_db(settings.db_path)
        started = time.monotonic()
        results = pipeline.collect(db, settings)
        assert time.monotonic() - started < 60
        outcomes = {(r.key.platform, r.key.stream): r.outcome for r in results}
        for platform in ("mastodon", "bluesky"):
            server = servers[platform]
            expected = {server.store_id(i) for i in server.visible()}
            stored = {
                r[0] for r in db.execute("SELECT id FROM posts WHERE platform = ?", [platform])
            }
            assert stored == expected
            assert {o for (p, _), o in outcomes.items() if p == platform} == {"ok"}
        for platform in ("x", "reddit"):
            assert {o for (p, _), o in outcomes.items() if p == platform} == {"failed"}
        db.conn.close()


def test_contract_cli_collect_on_all_four_stores_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from monitor.cli import cli

    for name, value in fleet.environment().items():
        monkeypatch.setenv(name, value)
    with fleet.running(seed=9, start=START, end=END) as servers:
        config = tmp_path / "all.toml"
        config.write_text(fleet.config_text({p: s.url for p, s in servers.items()}))
        first = CliRunner().invoke(cli, ["--config", str(config), "collect"])
        assert first.exit_code == 0, first.output
        assert first.stdout.count(": ok, ") == 12
        assert "alerts: " in first.stdout  # collect ends with the alert step
        second = CliRunner().invoke(cli, ["--config", str(config), "collect"])
        assert second.exit_code == 0 and second.stdout.count(": ok, 0 new, ") == 12
        db = store.open_db(tmp_path / "touchpoint.db")
        for platform, server in servers.items():
            expected = {server.store_id(i) for i in server.visible()}
            stored = {
                r[0] for r in db.execute("SELECT id FROM posts WHERE platform = ?", [platform])
            }
            assert stored == expected, platform
            linked = db.execute(
                "SELECT count(*) FROM posts r JOIN posts m ON m.id = r.in_reply_to_id "
                "WHERE r.platform = ? AND r.kind = 'reply'",
                [platform],
            ).fetchone()[0]
            assert linked > 0
        db.conn.close()
