"""The Reddit collector driven through the real praw client against the sandbox on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Unpack

import praw
import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.cli import cli
from monitor.config import Settings, load_settings
from monitor.models import Cursor, RunResult, StreamKey
from monitor.platforms.reddit.collector import NO_LOGIN, RedditCollector
from monitor.platforms.reddit.sandbox import RedditSandbox
from monitor.platforms.reddit.walk import Mark
from monitor.sandbox.server import Request, Response, Route
from monitor.sandbox.traffic import TrafficRates
from tests.platforms.ratelimits import collect_deferred_by_default

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=1)
FAST = "max_attempts = 2\nread_timeout_seconds = 1\nconnect_timeout_seconds = 1\n"
CLIENT_ID, CLIENT_SECRET = "sandbox-client-id", "SECRET-CLIENT-1234567890"
USERNAME, PASSWORD = "acme", "SECRET-PASSWORD-0987654321"
ENV = {
    "TOUCHPOINT_TEST_REDDIT_ID": CLIENT_ID,
    "TOUCHPOINT_TEST_REDDIT_SECRET": CLIENT_SECRET,
    "TOUCHPOINT_TEST_REDDIT_USER": USERNAME,
    "TOUCHPOINT_TEST_REDDIT_PASSWORD": PASSWORD,
}
TOKEN_PATH = "/api/v1/access_token"


@pytest.fixture(autouse=True)
def reddit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def reddit_sandbox(
    keywords: tuple[str, ...] = ("acme",), **rates: Unpack[TrafficRates]
) -> RedditSandbox:
    """The Reddit sandbox of these tests (the script app's credentials), not yet started."""
    return RedditSandbox(
        seed=11,
        brand_handle="acme",
        keywords=keywords,
        start=START,
        end=END,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        username=USERNAME,
        password=PASSWORD,
        **rates,
    )


@pytest.fixture
def sandbox() -> Iterator[RedditSandbox]:
    with reddit_sandbox() as server:
        yield server


def write_config(
    tmp_path: Path,
    url: str,
    *,
    collect: str = FAST,
    keywords: str = '["acme"]',
    login: bool = True,
    extra: str = "page_size = 10\n",
) -> Path:
    """A config with brand acme on the Reddit sandbox at ``url`` only."""
    credentials = (
        'username_env = "TOUCHPOINT_TEST_REDDIT_USER"\n'
        'password_env = "TOUCHPOINT_TEST_REDDIT_PASSWORD"\n'
        if login
        else 'username_env = "TOUCHPOINT_TEST_REDDIT_NOUSER"\n'
        'password_env = "TOUCHPOINT_TEST_REDDIT_NOPASSWORD"\n'
    )
    text = (
        f'[store]\npath = "touchpoint.db"\n\n[collect]\n{collect}\n'
        f'[platforms.reddit]\napi_base = "{url}"\nauth_base = "{url}"\n'
        'client_id_env = "TOUCHPOINT_TEST_REDDIT_ID"\n'
        'client_secret_env = "TOUCHPOINT_TEST_REDDIT_SECRET"\n'
        f"{credentials}{extra}\n"
        f'[[brands]]\nname = "acme"\nkeywords = {keywords}\n\n[brands.accounts]\nreddit = "acme"\n'
    )
    path = tmp_path / "touchpoint.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def settings(sandbox: RedditSandbox, tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path, sandbox.url))


def expected_ids(sandbox: RedditSandbox, *kinds: str) -> set[str]:
    return {f"reddit:{sandbox.fullname(i)}" for i in sandbox.visible() if i.kind in kinds}


def stored(db: Database, *kinds: str) -> set[str]:
    marks = ",".join("?" * len(kinds))
    return {r[0] for r in db.execute(f"SELECT id FROM posts WHERE kind IN ({marks})", kinds)}


def by_stream(results: list[RunResult]) -> dict[str, RunResult]:
    return {r.key.stream: r for r in results}


def api_requests(sandbox: RedditSandbox, fragment: str) -> list[int]:
    return [r.status for r in sandbox.requests if fragment in r.path]


def test_reddit_collect_stores_posts_mentions_and_linked_replies_once(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    results = by_stream(pipeline.collect(db, settings))
    assert {s: r.outcome for s, r in results.items()} == {
        "posts": "ok",
        "mentions": "ok",
        "keywords": "ok",
    }
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert stored(db, "keyword") == expected_ids(sandbox, "keyword")
    # every brand reply points at the mention it answers, and that mention is stored
    replies = db.execute(
        "SELECT r.in_reply_to_id, m.kind FROM posts r LEFT JOIN posts m ON m.id = r.in_reply_to_id "
        "WHERE r.kind = 'reply'"
    ).fetchall()
    assert replies and all(kind == "mention" for _, kind in replies)
    answered = {
        f"reddit:{sandbox.fullname(sandbox.items[i.in_reply_to_seq])}"
        for i in sandbox.visible()
        if i.kind == "reply" and i.in_reply_to_seq is not None
    }
    assert {r[0] for r in replies} == answered
    assert results["posts"].pages >= 3  # page_size 10: pagination to the end
    assert results["mentions"].pages >= 3
    total = db.execute("SELECT count(*) FROM posts").fetchone()[0]
    tokens = api_requests(sandbox, TOKEN_PATH)

    again = pipeline.collect(db, settings)
    assert [(r.items_new, r.items_updated) for r in again] == [(0, 0)] * 3
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == total
    assert sum(r.pages for r in again) == 3  # idle poll: one request per stream
    assert len(api_requests(sandbox, TOKEN_PATH)) == len(tokens) + 1  # one login per collect


def test_reddit_collect_is_incremental_by_fullname_and_time(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    sandbox.set_clock(START + timedelta(hours=12))
    first = by_stream(pipeline.collect(db, settings))
    before = stored(db, "mention")
    assert before == expected_ids(sandbox, "mention") and first["mentions"].items_new == len(before)
    cursor = store.get_cursor(db, StreamKey("acme", "reddit", "mentions"))
    newest = max((i for i in sandbox.visible() if i.kind == "mention"), key=lambda i: i.seq)
    assert cursor.pending is None
    assert (
        cursor.position
        == Mark(int(newest.created_at.timestamp()), sandbox.fullname(newest)).encode()
    )

    sandbox.set_clock(END)
    seen = len(sandbox.requests)
    second = by_stream(pipeline.collect(db, settings))
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert second["mentions"].items_new == len(expected_ids(sandbox, "mention") - before) > 0
    assert second["mentions"].items_updated == 0
    inbox_calls = [r for r in sandbox.requests[seen:] if r.path.startswith("/message/inbox")]
    # the walk stops at the stored position: no page beyond the one holding it
    assert len(inbox_calls) == second["mentions"].pages
    assert len(inbox_calls) <= len(expected_ids(sandbox, "mention") - before) // 10 + 1


def test_reddit_collect_burst_past_the_listing_reach_is_recorded_as_a_gap(
    tmp_path: Path, db: Database
) -> None:
    with reddit_sandbox(keywords=(), mentions_per_day=2400) as sandbox:
        extra = "page_size = 100\n"
        settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]", extra=extra))
        sandbox.set_clock(START + timedelta(hours=1))
        first = by_stream(pipeline.collect(db, settings))
        assert first["mentions"].outcome == "ok" and first["mentions"].gap is None
        sandbox.set_clock(END)  # about 2,300 more mentions: the inbox lists the newest 1,000
        second = by_stream(pipeline.collect(db, settings))
    mentions = second["mentions"]
    assert mentions.outcome == "ok" and mentions.items_new == 1000
    assert mentions.gap and "without reaching the newest item stored" in mentions.gap
    gaps = {g.key.stream: g.gap for g in store.get_gaps(db, since=START)}
    assert gaps["mentions"] == mentions.gap  # recorded with the run, for the alert


@pytest.mark.parametrize(("mentions_per_day", "warned"), [(2400, True), (40, False)])
def test_reddit_backfill_warns_of_older_items_only_when_a_listing_reached_its_end(
    tmp_path: Path,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    mentions_per_day: int,
    warned: bool,
) -> None:
    # the window starts before the account's first item: a short listing ends by itself
    with reddit_sandbox(keywords=(), mentions_per_day=mentions_per_day) as sandbox:
        extra = "page_size = 100\n"
        settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]", extra=extra))
        sandbox.set_clock(END)
        select = pipeline.Selection(stream="mentions")
        with caplog.at_level(logging.WARNING, logger="monitor.platforms.reddit.collector"):
            window = (START - timedelta(days=3), END)
            (result,) = pipeline.collect(db, settings, select, backfill=window)
    assert result.outcome == "ok" and (result.items_new == 1000) is warned
    cut = [r for r in caplog.records if "the listing ended" in r.getMessage()]
    assert bool(cut) is warned


def test_reddit_collect_walk_interrupted_by_429_is_deferred_then_resumed(
    sandbox: RedditSandbox, tmp_path: Path, db: Database
) -> None:
    collect = FAST + "max_pages = 2\nmax_rate_limit_wait_seconds = 0\n"
    settings = load_settings(write_config(tmp_path, sandbox.url, collect=collect))
    select = pipeline.Selection(stream="posts")
    first = pipeline.collect(db, settings, select)[0]
    assert (first.outcome, first.pages) == ("ok", 2)
    key = StreamKey("acme", "reddit", "posts")
    walk = store.get_cursor(db, key)
    assert walk.position is None and walk.pending is not None and walk.pending["after"]
    stored_before = stored(db, "post", "reply")

    sandbox.add_fault("429", endpoint="overview", reset_in=2)
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
    assert store.get_cursor(db, key).position is not None
    assert db.execute("SELECT count(*) = count(DISTINCT id) FROM posts").fetchone()[0] == 1


def test_reddit_collect_short_rate_limit_is_waited_out(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("429", endpoint="inbox", reset_in=1)
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


def test_reddit_collect_long_rate_limit_defers_every_stream_without_sleeping(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    # Reddit's budget is per client: once it is used up for longer than max_rate_limit_wait
    # (10 s here), the next streams are deferred too, before any request, instead of letting
    # prawcore sleep until the reset
    sandbox.add_fault("429", endpoint="overview", reset_in=60)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 3
    assert {s: r.outcome for s, r in results.items()} == dict.fromkeys(
        ("posts", "mentions", "keywords"), "deferred"
    )
    assert all(r.retry_at is not None for r in results.values())
    assert api_requests(sandbox, "/message/") == api_requests(sandbox, "/search") == []


def test_reddit_collect_429_with_an_unreadable_reset_defers_the_default_wait(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    """Issue #35: a 429 whose retry-after and x-ratelimit-reset are not seconds ("nan": prawcore's
    float() and int() of them fail) was a malformed answer: retried blind at once."""
    sandbox.add_fault("429_bad_reset", endpoint="inbox", times=10)
    limited = collect_deferred_by_default("reddit", settings, db, "mentions")
    assert limited.error and "retry-after 'nan'" in limited.error
    assert api_requests(sandbox, "/message/inbox") == [429]
    (skipped,) = pipeline.collect(db, settings, pipeline.Selection(stream="mentions"))
    assert skipped.outcome == "skipped" and api_requests(sandbox, "/message/inbox") == [429]


def test_reddit_collect_429_with_retry_after_as_an_http_date_is_honoured(
    sandbox: RedditSandbox, settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9110 allows Retry-After as an HTTP date; prawcore's float() of it failed the answer as
    malformed (retried, and only then deferred by the budget prawcore had noted)."""
    sandbox.add_fault("429_http_date", endpoint="inbox", times=10, reset_in=300)
    with caplog.at_level(logging.INFO):
        (limited,) = pipeline.collect(db, settings, pipeline.Selection(stream="mentions"))
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]
    assert limited.outcome == "deferred", limited.error
    assert limited.retry_at is not None
    assert abs((limited.retry_at - clock.now()).total_seconds() - 300) < 5
    assert api_requests(sandbox, "/message/inbox") == [429]


def test_reddit_collect_429_on_the_token_endpoint_is_a_rate_limit(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    pipeline.collect(db, settings, pipeline.Selection(stream="posts"))  # the account is known
    sandbox.add_fault("429", endpoint="token", times=10, reset_in=120)
    (limited,) = pipeline.collect(db, settings, pipeline.Selection(stream="mentions"))
    assert limited.outcome == "deferred", limited.error
    assert limited.retry_at is not None
    assert abs((limited.retry_at - clock.now()).total_seconds() - 120) < 5
    assert api_requests(sandbox, TOKEN_PATH)[-1:] == [429]
    assert len(api_requests(sandbox, TOKEN_PATH)) == 2  # the first run's, then this one's


def test_reddit_collect_retries_500_then_succeeds(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("500", endpoint="inbox")
    started = time.monotonic()
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    statuses = api_requests(sandbox, "/message/inbox")
    assert statuses[:2] == [500, 200]  # one retry of ours, none of prawcore's
    assert time.monotonic() - started < 5


# "slow" and "503" on every platform: tests/platforms/test_contract.py
@pytest.mark.parametrize("fault", ["malformed"])
def test_reddit_collect_bad_answer_fails_the_run_and_changes_nothing(
    sandbox: RedditSandbox, tmp_path: Path, db: Database, fault: str
) -> None:
    # no keyword stream: nothing reaches the store but through the stream under test
    settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]"))
    sandbox.add_fault(fault, endpoint="inbox", times=2, delay=3.0)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 10
    failed = results["mentions"]
    assert failed.outcome == "failed" and failed.error
    assert len(api_requests(sandbox, "/message/inbox")) == 2  # max_attempts, nothing more
    assert stored(db, "mention") == set()
    assert store.get_cursor(db, StreamKey("acme", "reddit", "mentions")) == Cursor()
    assert results["posts"].outcome == "ok"  # the other streams went on
    (status,) = [s for s in store.get_stream_status(db) if s.key.stream == "mentions"]
    assert status.consecutive_failures == 1 and status.last_error == failed.error

    healed = by_stream(pipeline.collect(db, settings))["mentions"]
    assert healed.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


class BrokenInboxSandbox(RedditSandbox):
    """The inbox answers 200 with a malformed rate-limit header, or with a body not a Listing."""

    def __init__(self, breakage: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.breakage = breakage

    def respond(self, route: Route, request: Request) -> Response:
        answer = super().respond(route, request)
        if route.endpoint != "inbox":
            return answer
        if self.breakage == "header":
            bad = tuple(
                (k, "lots" if k == "x-ratelimit-remaining" else v) for k, v in answer.headers
            )
            return dataclasses.replace(answer, headers=bad)
        return Response.json(200, {"kind": "t2", "data": {"name": "acme"}}, answer.headers)


@pytest.mark.parametrize("breakage", ["header", "body"])
def test_reddit_collect_malformed_header_or_body_fails_the_run(
    tmp_path: Path, db: Database, breakage: str
) -> None:
    with BrokenInboxSandbox(
        breakage, seed=11, start=START, end=END, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as sandbox:
        settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]"))
        results = by_stream(pipeline.collect(db, settings))
        failed = results["mentions"]
        assert failed.outcome == "failed"
        assert ("ValueError" if breakage == "header" else "expected a Listing") in (
            failed.error or ""
        )
        assert len(api_requests(sandbox, "/message/inbox")) == 2  # retried within max_attempts
        assert stored(db, "mention") == set()
        assert store.get_cursor(db, StreamKey("acme", "reddit", "mentions")) == Cursor()
        assert results["posts"].outcome == "ok"


class StuckCursorSandbox(RedditSandbox):
    """The brand's overview answers the ``after`` it was sent as its next one (``"repeat"``), or
    an empty page that still names a next one (``"empty"``): a listing that never ends."""

    def __init__(self, stuck: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stuck = stuck

    def respond(self, route: Route, request: Request) -> Response:
        answer = super().respond(route, request)
        sent = request.query.get("after", [None])[0]
        if route.endpoint != "overview" or sent is None:
            return answer
        if len(api_requests(self, "/overview")) > 10:
            return Response.json(500, {"message": "the walk went on and on"})
        body = json.loads(answer.body)
        if self.stuck == "repeat":
            body["data"]["after"] = sent
        else:
            body["data"].update(children=[], after="t1_zzzzzz")
        return dataclasses.replace(answer, body=json.dumps(body).encode())


@pytest.mark.parametrize("stuck", ["repeat", "empty"])
def test_reddit_collect_a_listing_that_repeats_its_cursor_ends_the_walk(
    tmp_path: Path, db: Database, stuck: str, caplog: pytest.LogCaptureFixture
) -> None:
    # praw's ListingGenerator stops when `after` repeats or a page is empty; so must the walk,
    # or it fetched max_pages copies and resumed there for good (a backfill: for ever)
    kwargs = {"seed": 11, "start": START, "end": END, "client_id": CLIENT_ID}
    with StuckCursorSandbox(stuck, **kwargs, client_secret=CLIENT_SECRET) as sandbox:
        settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]", login=False))
        select = pipeline.Selection(stream="posts")
        (result,) = pipeline.collect(db, settings, select)
        assert result.outcome == "ok", result.error
        assert len(api_requests(sandbox, "/overview")) == 2
        cursor = store.get_cursor(db, StreamKey("acme", "reddit", "posts"))
        assert cursor.pending is None and cursor.position  # the walk ended, not left half-way
        assert stored(db, "post", "reply")  # the first page is kept
        (result,) = pipeline.collect(db, settings, select, backfill=(START, END))
        assert result.outcome == "ok", result.error
        assert len(api_requests(sandbox, "/overview")) == 4
    assert "ending the walk" in caplog.text


def test_reddit_collect_expired_token_is_renewed_once(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("expired_token", endpoint="inbox")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert sandbox.tokens_issued == 2  # the login, and one new token after the 401


def test_reddit_collect_refused_token_is_one_auth_failure(
    sandbox: RedditSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("expired_token", endpoint="inbox", times=20)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 5
    assert results["mentions"].outcome == "auth_failed"
    assert "401" in (results["mentions"].error or "")
    assert api_requests(sandbox, "/message/inbox") == [401, 401]  # renewed once, then stop
    # the login, the one renewal, and a fresh token for the next stream (the refused one is gone)
    assert sandbox.tokens_issued == 3
    assert results["posts"].outcome == results["keywords"].outcome == "ok"


def test_reddit_collect_wrong_password_is_an_auth_failure(
    sandbox: RedditSandbox, tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHPOINT_TEST_REDDIT_PASSWORD", "not-the-password")
    settings = load_settings(write_config(tmp_path, sandbox.url))
    (result,) = pipeline.collect(db, settings)
    assert (result.key.stream, result.outcome) == ("account", "auth_failed")
    assert "invalid_grant" in (result.error or "")
    assert len(api_requests(sandbox, TOKEN_PATH)) == 1
    assert "not-the-password" not in (result.error or "")


def test_reddit_collect_without_a_login_leaves_the_inbox_out_and_says_why(
    sandbox: RedditSandbox, tmp_path: Path
) -> None:
    """praw without a login is read-only: the mentions stream is not collected, and collect,
    status and the digest say so and how to fix it (before, only an INFO log line did)."""
    config = write_config(tmp_path, sandbox.url, login=False)
    base = ["--config", str(config)]
    collected = CliRunner().invoke(cli, [*base, "collect"])
    assert collected.exit_code == 0, collected.output
    assert "acme/reddit/mentions: skipped" in collected.stdout
    assert "acme/reddit/keywords 'acme': ok, 10 new, 0 updated, 1 page\n" in collected.stdout
    assert "platforms.reddit.username_env and password_env" in collected.stdout
    assert 'or, to go without Reddit mentions, set platforms.reddit.streams = ["posts"' in (
        collected.stdout
    )
    assert api_requests(sandbox, "/message/") == []
    db = store.open_db(load_settings(config).db_path)
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")
    assert stored(db, "mention") == set()
    streams = {s.key.stream: s for s in store.get_stream_status(db)}
    assert streams["mentions"].outcome == "skipped" and streams["mentions"].last_error == NO_LOGIN
    assert streams["posts"].outcome == streams["keywords"].outcome == "ok"

    status = CliRunner().invoke(cli, [*base, "status"]).stdout
    (row,) = [line for line in status.splitlines() if line.startswith("acme/reddit/mentions")]
    assert " skipped " in row and " not collected " in row
    assert "the inbox needs the brand account's login" in row
    digest = CliRunner().invoke(cli, [*base, "digest", "--date", f"{START:%Y-%m-%d}"]).stdout
    assert "mentions never collected: the inbox needs the brand account's login" in digest


def test_reddit_without_mentions_by_config_is_not_counted_as_missing(
    sandbox: RedditSandbox, tmp_path: Path
) -> None:
    """platforms.reddit.streams = ["posts", "keywords"]: going without the inbox on purpose. No
    skipped run, nothing "not collected" in status, no COLLECTION INCOMPLETE in the digest, which
    says the stream is off instead."""
    extra = 'page_size = 10\nstreams = ["keywords", "posts"]\n'
    config = write_config(tmp_path, sandbox.url, login=False, extra=extra)
    base = ["--config", str(config)]
    collected = CliRunner().invoke(cli, [*base, "collect"])
    assert collected.exit_code == 0, collected.output
    assert "mentions" not in collected.stdout and "username_env" not in collected.stdout
    assert "acme/reddit/posts: ok" in collected.stdout
    assert "acme/reddit/keywords 'acme': ok, 10 new" in collected.stdout
    db = store.open_db(load_settings(config).db_path)
    assert {s.key.stream for s in store.get_stream_status(db)} == {"posts", "keywords"}
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")

    status = CliRunner().invoke(cli, [*base, "status", "--check"])
    assert status.exit_code == 0 and "not collected" not in status.stdout
    digest = CliRunner().invoke(cli, [*base, "digest", "--date", f"{START:%Y-%m-%d}"]).stdout
    assert "COLLECTION INCOMPLETE" not in digest
    (row,) = [line for line in digest.splitlines() if "off by config" in line]
    assert row.startswith("  reddit ") and row.rstrip().endswith("  mentions off by config")
    page = tmp_path / "d.html"
    day = f"{START:%Y-%m-%d}"
    written = CliRunner().invoke(cli, [*base, "digest", "--date", day, "--out", str(page)])
    assert written.exit_code == 0, written.output
    html = page.read_text(encoding="utf-8")
    assert "(mentions off by config)" in html and "Collection incomplete" not in html


def test_reddit_backfill_stores_the_window_once_and_resumes(
    sandbox: RedditSandbox, tmp_path: Path, db: Database
) -> None:
    settings = load_settings(write_config(tmp_path, sandbox.url, keywords="[]"))
    since, until = START + timedelta(hours=4), START + timedelta(hours=16)
    in_window = {
        f"reddit:{sandbox.fullname(i)}"
        for i in sandbox.visible()
        if i.kind in ("post", "reply") and since <= i.created_at < until
    }

    class Interrupt(KeyboardInterrupt):
        """Ctrl-C after a page."""

    def stop_after_one(result: RunResult, posts: object) -> None:
        if result.pages == 1:
            raise Interrupt

    select = pipeline.Selection(stream="posts")
    with pytest.raises(Interrupt):
        pipeline.collect(db, settings, select, backfill=(since, until), on_page=stop_after_one)
    seen = len(sandbox.requests)
    (result,) = pipeline.collect(db, settings, select, backfill=(since, until))
    assert result.outcome == "ok"
    resumed = [r for r in sandbox.requests[seen:] if r.path.endswith("/overview")]
    assert "after" in resumed[0].query  # went on from the page it had stored
    assert stored(db, "post", "reply") == in_window
    assert store.get_cursor(db, result.key).pending is None  # the window is done: cursor deleted


def test_reddit_secrets_never_reach_logs_or_store_at_debug(
    sandbox: RedditSandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox.url)
    sandbox.add_fault("500", endpoint="inbox")
    sandbox.add_fault("expired_token", endpoint="search")
    result = CliRunner().invoke(cli, ["-vv", "--config", str(config), "collect"])
    output = result.output + result.stderr
    assert "Fetching: GET" in output  # prawcore's DEBUG lines were logged
    for secret in (CLIENT_SECRET, PASSWORD):
        assert secret not in output
    db = store.open_db(load_settings(config).db_path)
    dump = "\n".join(db.conn.iterdump())
    for secret in (CLIENT_SECRET, PASSWORD):
        assert secret not in dump


def test_reddit_collector_takes_nothing_from_praw_ini_or_env(
    sandbox: RedditSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    (tmp_path / "praw.ini").write_text(
        "[DEFAULT]\nusername=intruder\npassword=intruder-password\ntimeout=abc\n"
        "[other]\nclient_id=other\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)  # read the files again, here
    monkeypatch.setenv("praw_site", "other")
    monkeypatch.setenv("praw_username", "intruder")
    collector = RedditCollector(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_base=sandbox.url,
        auth_base=sandbox.url,
    )
    try:
        assert collector.reddit.read_only and collector.streams == ("posts", "keywords")
        assert collector.resolve_account("acme") == sandbox.user_fullname("acme")
    finally:
        collector.close()
