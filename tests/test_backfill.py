"""Backfill walks a past window to its end, and an interrupted one resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.cli import cli
from monitor.config import Settings, load_settings
from monitor.models import Post, RunResult
from monitor.platforms.x.sandbox import XSandbox
from tests.conftest import TOKEN

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE, UNTIL = END - timedelta(days=4), END - timedelta(days=1)


@pytest.fixture
def sandbox() -> XSandbox:
    with XSandbox(seed=21, start=END - timedelta(days=6), end=END, bearer_token=TOKEN) as server:
        yield server


def in_window(sandbox: XSandbox) -> set[str]:
    return {f"x:{sandbox.tweet_id(i)}" for i in sandbox.visible() if SINCE <= i.created_at < UNTIL}


def all_ids(db: Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT id FROM posts")]


class Interrupt(KeyboardInterrupt):
    """Ctrl-C after a given number of committed pages."""


def stop_half_way(db: Database, settings: Settings, window: tuple[datetime, datetime]) -> None:
    """A backfill of the posts stream in ``window``, stopped (Ctrl-C) after its second page."""

    def stop_after_two(result: RunResult, posts: Sequence[Post]) -> None:
        if result.pages == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        pipeline.collect(
            db,
            settings,
            pipeline.Selection(stream="posts"),
            backfill=window,
            on_page=stop_after_two,
        )


def test_backfill_interrupted_resumes_and_stores_the_window_once(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database
) -> None:
    settings = load_settings(write_config(sandbox.url, extra="page_size = 10\n"))
    window = (SINCE, UNTIL)

    stop_half_way(db, settings, window)
    assert len(all_ids(db)) == 20
    seen = len(sandbox.requests)

    results = pipeline.collect(db, settings, backfill=window)
    assert {r.outcome for r in results} == {"ok"}
    resumed = sandbox.requests[seen]
    assert resumed.path.endswith("/tweets") and "pagination_token" in resumed.query
    ids = all_ids(db)
    assert len(ids) == len(set(ids))
    assert set(ids) == in_window(sandbox)
    assert not any(
        s.key.stream.startswith("backfill")
        for s in store.get_stream_status(db)
        if s.cursor_updated_at
    )  # finished walks leave no cursor behind
    # incremental cursors are untouched by a backfill
    assert store.get_cursor(db, results[0].key).position is None


def test_status_hides_finished_backfill_windows_and_keeps_an_unfinished_one(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database, tmp_path: Path
) -> None:
    config = write_config(sandbox.url, extra="page_size = 10\n")
    settings = load_settings(config)
    status = ["--config", str(config), "--db", str(tmp_path / "store.db"), "status"]

    stop_half_way(db, settings, (SINCE, UNTIL))
    half_way = CliRunner().invoke(cli, status).stdout
    assert "acme/x/backfill-posts" in half_way  # to be resumed: shown
    assert "finished backfill" not in half_way

    pipeline.collect(db, settings, backfill=(SINCE, UNTIL))  # every window walked to its end
    pipeline.collect(db, settings)  # and the incremental streams
    done = CliRunner().invoke(cli, status)
    assert done.exit_code == 0
    assert "backfill-" not in done.stdout and "acme/x/posts" in done.stdout
    windows = {s.key for s in store.get_stream_status(db) if s.key.stream.startswith("backfill")}
    assert f"({len(windows)} finished backfill windows not shown: `status --all`)" in done.stdout
    every = CliRunner().invoke(cli, [*status, "--all"]).stdout
    assert all(str(key) in every for key in windows) and "not shown" not in every


def test_backfill_cli_without_until_resumes_the_unfinished_window(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database, tmp_path: Path
) -> None:
    """The help's promise: killed half-way, the same command goes on. Without --until each run
    would be a new window ending now, walking from the top again."""
    config = write_config(sandbox.url, extra="page_size = 10\n")
    settings = load_settings(config)
    first_end = clock.now().replace(microsecond=0) - timedelta(minutes=5)

    stop_half_way(db, settings, (SINCE, first_end))  # `backfill --since SINCE --stream posts`
    seen = len(sandbox.requests)
    since = SINCE.strftime("%Y-%m-%dT%H:%M")
    args = ["--config", str(config), "--db", str(tmp_path / "store.db")]
    args += ["backfill", "--since", since, "--stream", "posts"]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "resuming the unfinished window" in again.stderr
    assert "pagination_token" in sandbox.requests[seen].query  # on from where it stopped
    ids = all_ids(db)
    assert len(ids) == len(set(ids))
    assert not [s for s in store.get_stream_status(db) if s.cursor_updated_at]  # window done
    # a finished window is not resumed: the next run is a new one
    third = CliRunner().invoke(cli, args)
    assert third.exit_code == 0 and "resuming" not in third.stderr


def test_backfill_cli_shows_progress_and_what_the_api_cannot_reach(
    sandbox: XSandbox, write_config: Callable[..., Path]
) -> None:
    config = write_config(sandbox.url, extra="page_size = 10\n")
    since = (clock.now() - timedelta(days=9)).strftime("%Y-%m-%d")
    result = CliRunner().invoke(cli, ["--config", str(config), "backfill", "--since", since])
    assert result.exit_code == 0, result.output
    assert "keyword search reaches back 7 days only" in result.stderr
    assert result.stderr.count("7 days") == 1  # said once, before the run, not again by X's walk
    assert "acme/x/backfill-mentions" in result.stderr  # the progress bar's label
    assert "backfill-posts" in result.stdout and "ok" in result.stdout


def test_backfill_of_a_past_window_searches_from_where_x_says_its_search_reaches(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database, tmp_path: Path
) -> None:
    # X's 7 days end now, not at --until: three days later the window's first days are gone
    settings = load_settings(write_config(sandbox.url, extra="page_size = 10\n"))
    sandbox.set_clock(END + timedelta(days=3))
    edge = END + timedelta(days=3) - timedelta(days=7)
    select = pipeline.Selection(stream="keywords")
    (result,) = pipeline.collect(db, settings, select, backfill=(END - timedelta(days=6), END))
    assert result.outcome == "ok", result.error
    starts = [r.query.get("start_time") for r in sandbox.requests if r.path.endswith("/recent")]
    first = edge + timedelta(minutes=1)
    assert starts[1] == [f"{first:%Y-%m-%dT%H:%M:%S}Z"]  # after one 400 naming the edge
    # the same as a backfill asked from the edge in the first place
    direct = store.open_db(tmp_path / "direct.db")
    pipeline.collect(direct, settings, select, backfill=(first, END))
    assert len(all_ids(db)) > 20 and set(all_ids(db)) == set(all_ids(direct))
    keywords = [i for i in sandbox.visible() if i.kind == "keyword" and first <= i.created_at < END]
    assert {f"x:{sandbox.tweet_id(i)}" for i in keywords} <= set(all_ids(db))

    # a window wholly before the edge: nothing to fetch, and no failure
    gone = (END - timedelta(days=6), edge - timedelta(hours=1))
    (result,) = pipeline.collect(db, settings, select, backfill=gone)
    assert result.outcome == "ok" and result.items_new == 0
