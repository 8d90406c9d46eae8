"""The X collector driven through the real tweepy client against the sandbox on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.cli import cli
from monitor.config import Settings, load_settings
from monitor.models import StreamKey, iso
from monitor.platforms.streams import build_collector
from monitor.platforms.x.sandbox import TWITTER_EPOCH, XSandbox
from monitor.sandbox.server import Request, Response, Route
from tests.conftest import TOKEN, TOKEN_ENV
from tests.platforms.ratelimits import collect_deferred_by_default

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=1)
FAST = "max_attempts = 2\nread_timeout_seconds = 1\nconnect_timeout_seconds = 1\n"


@pytest.fixture
def sandbox() -> Iterator[XSandbox]:
    with XSandbox(
        seed=11, brand_handle="acme", keywords=("acme",), start=START, end=END, bearer_token=TOKEN
    ) as server:
        yield server


@pytest.fixture
def settings(sandbox: XSandbox, write_config: Callable[..., Path]) -> Settings:
    return load_settings(write_config(sandbox.url, extra="page_size = 10\n", collect=FAST))


def expected_ids(sandbox: XSandbox, *kinds: str) -> set[str]:
    return {f"x:{sandbox.tweet_id(i)}" for i in sandbox.visible() if i.kind in kinds}


def stored(db: Database, *kinds: str) -> set[str]:
    marks = ",".join("?" * len(kinds))
    return {r[0] for r in db.execute(f"SELECT id FROM posts WHERE kind IN ({marks})", kinds)}


def by_stream(results: list[pipeline.RunResult]) -> dict[str, pipeline.RunResult]:
    return {r.key.stream: r for r in results}


def test_x_collect_stores_posts_mentions_and_linked_replies_once(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    results = by_stream(pipeline.collect(db, settings))
    assert {r.outcome for r in results.values()} == {"ok"}
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert stored(db, "keyword") == expected_ids(sandbox, "keyword")
    # every brand reply points at the mention it answers, and that mention is stored
    orphans = db.execute(
        "SELECT count(*) FROM posts r LEFT JOIN posts m ON m.id = r.in_reply_to_id "
        "WHERE r.kind = 'reply' AND m.id IS NULL"
    ).fetchone()[0]
    replies = db.execute("SELECT count(*) FROM posts WHERE kind = 'reply'").fetchone()[0]
    assert replies > 0 and orphans == 0
    assert results["posts"].pages >= 3  # page_size 10: pagination to the end
    total = db.execute("SELECT count(*) FROM posts").fetchone()[0]

    again = pipeline.collect(db, settings)
    assert [r.items_new for r in again] == [0, 0, 0]
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == total
    # idle poll: exactly one request per stream
    assert sum(r.pages for r in again) == 3


def test_x_collect_is_incremental_with_since_id(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    sandbox.set_clock(START + timedelta(hours=12))
    first = by_stream(pipeline.collect(db, settings))
    before = stored(db, "mention")
    assert before == expected_ids(sandbox, "mention") and first["mentions"].items_new == len(before)
    cursor = store.get_cursor(db, StreamKey("acme", "x", "mentions"))
    assert cursor.position == max(before, key=lambda i: int(i[2:]))[2:]

    sandbox.set_clock(END)
    seen = len(sandbox.requests)
    second = by_stream(pipeline.collect(db, settings))
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert second["mentions"].items_new == len(expected_ids(sandbox, "mention") - before) > 0
    mention_calls = [r for r in sandbox.requests[seen:] if r.path.endswith("/mentions")]
    assert mention_calls[0].query["since_id"] == [cursor.position]
    assert second["mentions"].gap is None and second["posts"].gap is None  # within X's reach


def test_x_collect_burst_past_the_mentions_reach_is_recorded_as_a_gap(
    write_config: Callable[..., Path], db: Database
) -> None:
    with XSandbox(
        seed=11, keywords=(), start=START, end=END, bearer_token=TOKEN, mentions_per_day=2400
    ) as sandbox:
        config = write_config(sandbox.url, extra="page_size = 100\n", keywords="[]")
        settings = load_settings(config)
        sandbox.set_clock(START + timedelta(hours=1))
        first = by_stream(pipeline.collect(db, settings))
        assert first["mentions"].outcome == "ok" and first["mentions"].gap is None
        sandbox.set_clock(END)  # about 2,300 more mentions: X lists the newest 800
        second = by_stream(pipeline.collect(db, settings))
        missed = expected_ids(sandbox, "mention") - stored(db, "mention")
    mentions = second["mentions"]
    assert mentions.outcome == "ok" and mentions.items_new == 800 and len(missed) > 1000
    assert mentions.gap and "X lists the newest 800 only" in mentions.gap
    assert second["posts"].gap is None  # a few posts: the timeline's reach is far off
    gaps = {g.key.stream: g.gap for g in store.get_gaps(db, since=START)}
    assert gaps == {"mentions": mentions.gap}  # recorded with the run, for the alert


def test_x_collect_keyword_search_quiet_for_over_a_week_searches_the_window_instead(
    sandbox: XSandbox, settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # X refuses a since_id older than its 7-day search window (400 Invalid Request): without care
    # a keyword with no hit for a week, or a week's outage, would fail the stream for good
    caplog.set_level(logging.DEBUG, logger="monitor.platforms.x.collector")
    collectors = {"x": build_collector("x", settings)}  # kept across runs, as the daemon does
    first = by_stream(pipeline.collect(db, settings, collectors=collectors))
    assert first["keywords"].outcome == "ok"
    three_weeks_ago = clock.now() - timedelta(days=21)  # before the sandbox clock's week too
    old_id = (three_weeks_ago - TWITTER_EPOCH) // timedelta(milliseconds=1) << 22

    def quiet_for_three_weeks() -> dict[str, pipeline.RunResult]:
        db.execute("UPDATE cursors SET position = ? WHERE stream = 'keywords'", [str(old_id)])
        db.execute("DELETE FROM posts WHERE kind = 'keyword'")
        db.conn.commit()
        return by_stream(pipeline.collect(db, settings, collectors=collectors))

    seen = len(sandbox.requests)
    results = quiet_for_three_weeks()
    assert results["keywords"].outcome == "ok", results["keywords"].error
    assert stored(db, "keyword") == expected_ids(sandbox, "keyword")
    searches = [r for r in sandbox.requests[seen:] if r.path.endswith("/search/recent")]
    assert searches and all("since_id" not in r.query for r in searches)
    assert searches[0].query["start_time"]
    again = by_stream(pipeline.collect(db, settings, collectors=collectors))
    assert again["keywords"].outcome == "ok" and again["keywords"].items_new == 0  # by since_id
    assert quiet_for_three_weeks()["keywords"].outcome == "ok"
    warned = [r for r in caplog.records if "older than X's 7-day search window" in r.getMessage()]
    assert [r.levelname for r in warned] == ["WARNING", "DEBUG"]  # said once per stream
    assert results["keywords"].gap is None  # searched all along: merely quiet, nothing lost

    # touchpoint stopped for ten days: the hits of the days X no longer searches are lost
    ten_days_ago = iso(clock.now() - timedelta(days=10))
    db.execute("UPDATE cursors SET updated_at = ? WHERE stream = 'keywords'", [ten_days_ago])
    stopped = quiet_for_three_weeks()["keywords"]
    assert stopped.outcome == "ok" and stopped.gap
    assert f"the last search was at {ten_days_ago}" in stopped.gap
    assert [g.gap for g in store.get_gaps(db, since=START)] == [stopped.gap]  # for the alert
    collectors["x"].close()


def test_x_collect_keyword_walk_from_the_window_edge_goes_on_across_runs(
    write_config: Callable[..., Path], db: Database
) -> None:
    """A walk from the window's edge longer than the page budget resumes where it stopped; it
    used to start again from the edge every run, so the older hits were never reached and the
    stored position never moved past the old id."""
    with XSandbox(
        seed=11,
        keywords=("acme",),
        start=START,
        end=END,
        bearer_token=TOKEN,
        keyword_hits_per_day=100,
    ) as sandbox:
        config = write_config(
            sandbox.url, extra="page_size = 10\n", collect=FAST + "max_pages = 2\n"
        )
        walk_from_the_edge(sandbox, load_settings(config), db)


def walk_from_the_edge(sandbox: XSandbox, settings: Settings, db: Database) -> None:
    select = pipeline.Selection(stream="keywords")
    collector = build_collector("x", settings)
    key = StreamKey("acme", "x", "keywords", collector.keyword_query(["acme"]))
    collector.close()
    three_weeks_ago = clock.now() - timedelta(days=21)
    old_id = str((three_weeks_ago - TWITTER_EPOCH) // timedelta(milliseconds=1) << 22)
    stopped_at = iso(clock.now() - timedelta(days=10))  # touchpoint stopped ten days
    db.execute(
        "INSERT INTO cursors (brand, platform, stream, query, position, updated_at) "
        "VALUES ('acme', 'x', 'keywords', ?, ?, ?)",
        [key.query, old_id, stopped_at],
    )
    db.conn.commit()
    expected = expected_ids(sandbox, "keyword")
    assert len(expected) > 3 * 2 * 10  # more than three runs' budget: the walk spans runs

    seen = len(sandbox.requests)
    runs = new = 0
    while runs < 20:
        runs += 1
        result = pipeline.collect(db, settings, select)[0]
        assert result.outcome == "ok", result.error
        new += result.items_new
        if store.get_cursor(db, key).pending is None:
            break
    assert stored(db, "keyword") == expected
    # the days X no longer searches are reported once, when the walk that began after them ends
    assert result.gap and f"the last search was at {stopped_at}" in result.gap
    assert [g.gap for g in store.get_gaps(db, since=START)] == [result.gap]
    newest = max(expected, key=lambda i: int(i[2:]))[2:]
    assert store.get_cursor(db, key).position == newest
    searches = [r for r in sandbox.requests[seen:] if r.path.endswith("/search/recent")]
    # the search matches the mentions too ("@acme"); page_size 10 and no page fetched twice
    assert len(searches) == -(-new // 10) and new > len(expected)
    assert all("since_id" not in r.query and r.query["start_time"] for r in searches)
    resumed = [r for r in searches if "until_id" in r.query and "next_token" not in r.query]
    assert len(resumed) == runs - 1  # each later run goes on below the oldest hit stored


class StuckTokenSandbox(XSandbox):
    """The mentions listing answers the pagination_token it was sent as its next_token."""

    def respond(self, route: Route, request: Request) -> Response:
        answer = super().respond(route, request)
        sent = request.query.get("pagination_token", [None])[0]
        if route.endpoint != "mentions" or sent is None:
            return answer
        if len([r for r in self.requests if r.path.endswith("/mentions")]) > 10:
            return Response.json(500, {"title": "the walk went on and on"})
        body = json.loads(answer.body)
        body["meta"]["next_token"] = sent
        return dataclasses.replace(answer, body=json.dumps(body).encode())


def test_x_collect_a_next_token_that_repeats_ends_the_walk(
    write_config: Callable[..., Path], db: Database
) -> None:
    kwargs = {"seed": 11, "brand_handle": "acme", "start": START, "end": END}
    with StuckTokenSandbox(**kwargs, bearer_token=TOKEN) as sandbox:
        settings = load_settings(write_config(sandbox.url, extra="page_size = 10\n", collect=FAST))
        select = pipeline.Selection(stream="mentions")
        for backfill in (None, (START, END)):  # a backfill has no page budget to stop it
            (result,) = pipeline.collect(db, settings, select, backfill=backfill)
            assert result.outcome == "ok", result.error
        mentions = [r for r in sandbox.requests if r.path.endswith("/mentions")]
        assert len(mentions) == 4  # two pages a walk: the second answered the token it was sent
        cursor = store.get_cursor(db, StreamKey("acme", "x", "mentions"))
        assert cursor.pending is None and cursor.position


class SuspendedSandbox(XSandbox):
    """The brand's timeline answers 200 with X's errors-only body (reliability plan #27): how X
    answers for an account suspended or gone, with no data and no meta."""

    suspended = True

    def respond(self, route: Route, request: Request) -> Response:
        if route.endpoint != "tweets" or not self.suspended:
            return super().respond(route, request)
        error = {
            "detail": "User has been suspended: [acme].",
            "title": "Forbidden",
            "resource_type": "user",
            "parameter": "id",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
        return Response.json(200, {"errors": [error]})


def test_x_collect_an_errors_only_answer_fails_the_run_and_stores_nothing(
    write_config: Callable[..., Path], db: Database
) -> None:
    with SuspendedSandbox(
        seed=5, brand_handle="acme", start=START, end=END, bearer_token=TOKEN
    ) as sb:
        settings = load_settings(write_config(sb.url, extra="page_size = 10\n", collect=FAST))
        select = pipeline.Selection(stream="posts")

        (failed,) = pipeline.collect(db, settings, select)

        assert failed.outcome == "failed"
        assert failed.error == "X answered with errors only: User has been suspended: [acme]."
        assert len([r for r in sb.requests if r.path.endswith("/tweets")]) == 1  # not retried
        assert store.table_counts(db, ("posts",)) == {"posts": 0}
        assert store.get_cursor(db, StreamKey("acme", "x", "posts")).position is None

        sb.suspended = False  # reinstated: the next run collects as usual
        (healed,) = pipeline.collect(db, settings, select)

        assert healed.outcome == "ok" and healed.items_new > 0


def test_x_collect_walk_interrupted_by_429_is_deferred_then_resumed(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database
) -> None:
    settings = load_settings(
        write_config(
            sandbox.url,
            extra="page_size = 10\n",
            collect=FAST + "max_pages = 2\nmax_rate_limit_wait_seconds = 0\n",
        )
    )
    select = pipeline.Selection(stream="posts")
    first = pipeline.collect(db, settings, select)[0]
    assert (first.outcome, first.pages) == ("ok", 2)
    key = StreamKey("acme", "x", "posts")
    walk = store.get_cursor(db, key)
    assert walk.pending is not None and walk.pending["next_token"]
    stored_before = stored(db, "post", "reply")

    sandbox.add_fault("429", endpoint="tweets", reset_in=2)
    limited = pipeline.collect(db, settings, select)[0]
    assert limited.outcome == "deferred" and limited.retry_at is not None
    assert store.get_cursor(db, key) == walk and stored(db, "post", "reply") == stored_before
    skipped = pipeline.collect(db, settings, select)[0]
    assert skipped.outcome == "skipped" and skipped.pages == 0

    time.sleep(max(0.0, (limited.retry_at - clock.now()).total_seconds()) + 0.1)
    for _ in range(10):  # page budget 2 per run: keep going until the walk is done
        pipeline.collect(db, settings, select)
        if store.get_cursor(db, key).pending is None:
            break
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")
    assert db.execute("SELECT count(*) = count(DISTINCT id) FROM posts").fetchone()[0] == 1


def test_x_collect_short_rate_limit_is_waited_out(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("429", endpoint="mentions", reset_in=1)
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


def test_x_collect_429_with_an_unreadable_reset_defers_the_default_wait(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    """Issue #35: a 429 whose x-rate-limit-reset is not epoch seconds ("nan": tweepy's int() of
    it fails) was a malformed answer: retried blind at once, and again at every interval."""
    sandbox.add_fault("429_bad_reset", endpoint="mentions", times=10)
    limited = collect_deferred_by_default("x", settings, db, "mentions")
    assert limited.error and "x-rate-limit-reset" in limited.error and "'nan'" in limited.error
    assert [r.status for r in sandbox.requests if r.path.endswith("/mentions")] == [429]
    mentions = pipeline.Selection(stream="mentions")
    (skipped,) = pipeline.collect(db, settings, mentions)  # deferred: no request before it ends
    assert skipped.outcome == "skipped"
    assert len([r for r in sandbox.requests if r.path.endswith("/mentions")]) == 1


def test_x_collect_retries_500_then_succeeds(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("500", endpoint="mentions")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    statuses = [r.status for r in sandbox.requests if r.path.endswith("/mentions")]
    assert statuses[:2] == [500, 200]


def test_x_collect_three_503s_then_200_succeed_with_the_default_attempts(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database
) -> None:
    # reliability plan #17: success after bounded retries, exactly the 200 page's items stored
    settings = load_settings(write_config(sandbox.url, extra="page_size = 100\n"))
    sandbox.add_fault("503", endpoint="mentions", times=3)
    select = pipeline.Selection(stream="mentions")
    (result,) = pipeline.collect(db, settings, select)
    assert result.outcome == "ok", result.error
    statuses = [r.status for r in sandbox.requests if r.path.endswith("/mentions")]
    assert statuses == [503, 503, 503, 200]
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


# "slow" and "503" on every platform: tests/platforms/test_contract.py
@pytest.mark.parametrize("fault", ["malformed"])
def test_x_collect_bad_answer_fails_the_run_and_changes_nothing(
    sandbox: XSandbox, write_config: Callable[..., Path], db: Database, fault: str
) -> None:
    # no keyword stream: mentions reach the store only through the mentions stream under test
    settings = load_settings(
        write_config(sandbox.url, extra="page_size = 10\n", collect=FAST, keywords="[]")
    )
    sandbox.add_fault(fault, endpoint="mentions", times=2, delay=3.0)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 15
    failed = results["mentions"]
    assert failed.outcome == "failed" and failed.error
    assert stored(db, "mention") == set()
    assert store.get_cursor(db, StreamKey("acme", "x", "mentions")).position is None
    assert results["posts"].outcome == "ok"  # the other streams went on
    (status,) = [s for s in store.get_stream_status(db) if s.key.stream == "mentions"]
    assert status.consecutive_failures == 1 and status.last_error == failed.error

    healed = by_stream(pipeline.collect(db, settings))["mentions"]
    assert healed.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


def test_x_collect_tweet_without_created_at_is_retried_as_a_malformed_answer(
    sandbox: XSandbox, settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #35: a page with a tweet without its created_at failed the run in normalize, with
    none of the bounded retries the README promises for malformed answers."""
    sandbox.add_fault("no_time", endpoint="mentions")
    with caplog.at_level(logging.INFO, logger="monitor.platforms.base"):
        (result,) = pipeline.collect(db, settings, pipeline.Selection(stream="mentions"))
    assert result.outcome == "ok", result.error
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    statuses = [r.status for r in sandbox.requests if r.path.endswith("/mentions")]
    assert statuses[:2] == [200, 200] and result.pages == len(statuses) - 1
    retried = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retried) == 1 and "has no created_at" in retried[0]


def test_x_collect_expired_token_is_one_auth_failure(
    sandbox: XSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("expired_token", endpoint="mentions")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "auth_failed"
    assert len([r for r in sandbox.requests if r.path.endswith("/mentions")]) == 1
    # the fix names the variable this config reads the token from, not only the key
    assert f"check the token in {TOKEN_ENV} (" in (result.error or ""), result.error


def test_x_bearer_token_never_reaches_logs_or_store_at_debug(
    sandbox: XSandbox, write_config: Callable[..., Path]
) -> None:
    config = write_config(sandbox.url, extra="page_size = 10\n", collect=FAST)
    sandbox.add_fault("500", endpoint="mentions")
    sandbox.add_fault("expired_token", endpoint="search")
    result = CliRunner().invoke(cli, ["-vv", "--config", str(config), "collect"])
    output = result.output + result.stderr
    assert "Making API request" in output  # tweepy's DEBUG lines, headers included, were logged
    assert "[redacted]" in output
    assert TOKEN not in output
    db = store.open_db(load_settings(config).db_path)
    dump = "\n".join(db.conn.iterdump())
    assert TOKEN not in dump


def test_x_collect_a_brand_moved_to_another_account_walks_it_afresh(
    sandbox: XSandbox,
    settings: Settings,
    db: Database,
    write_config: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """acme's X streams ran for @acme; the config now names @acmeglobal. Resuming from @acme's
    positions (since_id) would skip whatever @acmeglobal posted, or was told, before @acme's
    newest tweet; its posts and mentions streams start afresh and store all of it, while the
    keyword search, the same for either account, resumes."""
    pipeline.collect(db, settings)
    keywords = store.get_cursor(db, StreamKey("acme", "x", "keywords", "acme -is:retweet"))
    with XSandbox(
        seed=12,
        brand_handle="acmeglobal",
        brand_user_id="1500000000000000002",
        keywords=("acme",),
        start=START,
        end=END,
        bearer_token=TOKEN,
    ) as other:
        path = write_config(other.url, extra="page_size = 10\n", collect=FAST)
        path.write_text(path.read_text().replace('x = "acme"', 'x = "acmeglobal"'))
        with caplog.at_level(logging.WARNING, logger="monitor.pipeline"):
            results = by_stream(pipeline.collect(db, load_settings(path)))
        assert {r.outcome for r in results.values()} == {"ok"}
        assert expected_ids(other, "post", "reply") <= stored(db, "post", "reply")
        assert expected_ids(other, "mention") <= stored(db, "mention")
        timeline = [r for r in other.requests if r.path.endswith("/tweets")]
        assert "since_id" not in timeline[0].query
        search = [r for r in other.requests if r.path.endswith("/search/recent")]
        assert search[0].query["since_id"] == [keywords.position]
    moved = [r.getMessage() for r in caplog.records if "walked afresh" in r.getMessage()]
    assert len(moved) == 2 and all("@acmeglobal" in m for m in moved)
    assert store.get_cursor(db, StreamKey("acme", "x", "posts")).account == other.brand_user_id
