"""The Mastodon collector driven over real HTTP against the Mastodon sandbox on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.cli import cli
from monitor.config import Settings, load_settings
from monitor.models import Cursor, Post, RunResult, StreamKey
from monitor.platforms.mastodon.sandbox import MastodonSandbox
from monitor.sandbox.server import Request, Response, Route
from monitor.sandbox.traffic import MENTION, POST, TrafficItem, brand_post_texts
from tests.platforms.ratelimits import collect_deferred_by_default

TOKEN_ENV = "TOUCHPOINT_TEST_MASTODON_TOKEN"
TOKEN = "MASTODON-SECRET-TOKEN-0987654321"
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=1)
FAST = "max_attempts = 2\nread_timeout_seconds = 1\nconnect_timeout_seconds = 1\n"
KEYWORDS = '["acme", "rocket skates"]'

ConfigWriter = Callable[..., Path]


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.fixture
def sandbox() -> Iterator[MastodonSandbox]:
    with MastodonSandbox(
        seed=11, keywords=("acme", "rocket skates"), start=START, end=END, access_token=TOKEN
    ) as server:
        yield server


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write a config with brand acme on the Mastodon sandbox at ``api_base``."""

    def write(
        api_base: str,
        *,
        page_size: int = 10,
        collect: str = FAST,
        keywords: str = KEYWORDS,
        handle: str = "acme",
    ) -> Path:
        path = tmp_path / "touchpoint.toml"
        path.write_text(
            f'[store]\npath = "touchpoint.db"\n\n[collect]\n{collect}\n'
            f'[platforms.mastodon]\napi_base = "{api_base}"\naccess_token_env = "{TOKEN_ENV}"\n'
            f"page_size = {page_size}\n\n"
            f'[[brands]]\nname = "acme"\nkeywords = {keywords}\n\n'
            f'[brands.accounts]\nmastodon = "{handle}"\n',
            encoding="utf-8",
        )
        return path

    return write


@pytest.fixture
def settings(sandbox: MastodonSandbox, write_config: ConfigWriter) -> Settings:
    return load_settings(write_config(sandbox.url))


def expected_ids(sandbox: MastodonSandbox, *kinds: str) -> set[str]:
    return {f"mastodon:{sandbox.status_id(i)}" for i in sandbox.visible() if i.kind in kinds}


def stored(db: Database, *kinds: str) -> set[str]:
    marks = ",".join("?" * len(kinds))
    return {r[0] for r in db.execute(f"SELECT id FROM posts WHERE kind IN ({marks})", kinds)}


def by_stream(results: list[RunResult]) -> dict[str, RunResult]:
    return {r.key.stream: r for r in results}


def calls(sandbox: MastodonSandbox, suffix: str, since: int = 0) -> list[dict[str, list[str]]]:
    return [r.query for r in sandbox.requests[since:] if r.path.endswith(suffix)]


def test_mastodon_collect_stores_posts_mentions_and_linked_replies_once(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    results = by_stream(pipeline.collect(db, settings))
    assert {r.outcome for r in results.values()} == {"ok"}
    assert stored(db, "post", "reply") == expected_ids(sandbox, "post", "reply")
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert stored(db, "keyword") == expected_ids(sandbox, "keyword")
    # every brand reply points at the mention it answers, and that mention is stored
    rows = db.execute(
        "SELECT r.in_reply_to_id, m.kind, r.text FROM posts r "
        "LEFT JOIN posts m ON m.id = r.in_reply_to_id WHERE r.kind = 'reply'"
    ).fetchall()
    assert rows and all(kind == "mention" for _, kind, _ in rows)
    # the HTML content is stored as the text the author wrote
    texts = {f"mastodon:{sandbox.status_id(i)}": i.text for i in sandbox.visible()}
    assert all(texts[r[0]] == r[1] for r in db.execute("SELECT id, text FROM posts"))
    assert results["posts"].pages >= 3  # page_size 10: pagination to the end
    total = db.execute("SELECT count(*) FROM posts").fetchone()[0]

    seen = len(sandbox.requests)
    again = pipeline.collect(db, settings)
    assert [r.items_new for r in again] == [0, 0, 0]
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == total
    # idle poll: one request per stream, and one per keyword
    assert len(sandbox.requests) - seen == sum(r.pages for r in again) == 4


def test_mastodon_collect_pages_forward_with_min_id_and_the_link_header(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    pipeline.collect(db, settings, pipeline.Selection(stream="posts"))
    pages = calls(sandbox, "/statuses")
    assert len(pages) >= 4
    min_ids = [int(q["min_id"][0]) for q in pages]
    assert min_ids[0] == 0 and min_ids == sorted(min_ids) and len(set(min_ids)) == len(min_ids)
    # Mastodon's Link header drops exclude_reblogs: the collector keeps asking for it
    assert all(q["exclude_reblogs"] == ["true"] and q["limit"] == ["10"] for q in pages)
    assert all("since_id" not in q and "max_id" not in q for q in pages)
    assert [r.status for r in sandbox.requests if r.path.endswith("/statuses")] == [200] * len(
        pages
    )
    key = StreamKey("acme", "mastodon", "posts")
    newest = max(expected_ids(sandbox, "post", "reply"), key=lambda i: int(i.split(":")[1]))
    assert store.get_cursor(db, key).position == newest.split(":")[1]


def test_mastodon_collect_is_incremental_by_notification_id(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    sandbox.set_clock(START + timedelta(hours=12))
    first = by_stream(pipeline.collect(db, settings))
    before = stored(db, "mention")
    assert before == expected_ids(sandbox, "mention") and first["mentions"].items_new == len(before)
    cursor = store.get_cursor(db, StreamKey("acme", "mastodon", "mentions"))
    mentions = [i for i in sandbox.visible() if i.kind == MENTION]
    # the cursor is the newest notification id; the stored posts carry status ids
    assert cursor.position == sandbox.notification_id(mentions[-1])
    assert cursor.position != sandbox.status_id(mentions[-1])

    sandbox.set_clock(END)
    seen = len(sandbox.requests)
    second = by_stream(pipeline.collect(db, settings))
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert second["mentions"].items_new == len(expected_ids(sandbox, "mention") - before) > 0
    mention_calls = calls(sandbox, "/notifications", seen)
    assert mention_calls[0]["min_id"] == [cursor.position]
    assert all(q["types[]"] == ["mention"] for q in mention_calls)
    keyword_key = StreamKey("acme", "mastodon", "keywords", 'acme OR "rocket skates"')
    positions = store.get_cursor(db, keyword_key).position
    assert positions is not None and len(positions.split(",")) == 2  # one per keyword


def burst_traffic(old: int, new: int) -> list[TrafficItem]:
    """``old`` brand posts, then ``new`` more a minute apart."""
    texts = brand_post_texts()
    first = START
    return [
        TrafficItem(
            seq=i,
            kind=POST,
            author_handle="acme",
            text=texts[i % len(texts)],
            created_at=first + timedelta(minutes=i),
            in_reply_to_seq=None,
            root_seq=i,
            lang="en",
            likes=0,
            reposts=0,
            replies=0,
            quotes=0,
        )
        for i in range(old + new)
    ]


def test_mastodon_burst_of_120_statuses_with_page_size_40_is_stored_whole(
    write_config: ConfigWriter, db: Database
) -> None:
    items = burst_traffic(old=10, new=120)
    with MastodonSandbox(traffic=items, clock=items[9].created_at, access_token=TOKEN) as sandbox:
        settings = load_settings(write_config(sandbox.url, page_size=40, keywords="[]"))
        select = pipeline.Selection(stream="posts")
        assert pipeline.collect(db, settings, select)[0].items_new == 10
        key = StreamKey("acme", "mastodon", "posts")
        cursor = store.get_cursor(db, key).position
        assert cursor == sandbox.status_id(items[9])

        sandbox.set_clock(items[-1].created_at)  # 120 new statuses at once
        seen = len(sandbox.requests)
        committed: list[str | None] = []

        def note(result: RunResult, posts: Sequence[Post]) -> None:
            committed.append(store.get_cursor(db, key).position)

        (burst,) = pipeline.collect(db, settings, select, on_page=note)
        assert burst.outcome == "ok" and burst.items_new == 120
        assert stored(db, "post") == {f"mastodon:{sandbox.status_id(i)}" for i in items}
        # three full pages, each committed with its newest id, then one empty page
        walk = calls(sandbox, "/statuses", seen)
        assert [q["min_id"] for q in walk] == [
            [cursor],
            [sandbox.status_id(items[49])],
            [sandbox.status_id(items[89])],
            [sandbox.status_id(items[129])],
        ]
        assert committed == [sandbox.status_id(items[i]) for i in (49, 89, 129, 129)]

        # what a since_id-only poller gets: the newest page above the cursor, then nothing
        url = f"{sandbox.url}/api/v1/accounts/{sandbox.brand_account_id}/statuses"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        newest = httpx.get(url, params={"since_id": cursor, "limit": 40}, headers=auth).json()
        assert [s["id"] for s in newest] == [sandbox.status_id(i) for i in items[:89:-1]]
        poll = httpx.get(url, params={"since_id": newest[0]["id"], "limit": 40}, headers=auth)
        assert poll.json() == []  # 80 of the 120 would never have been seen


def test_mastodon_walk_interrupted_by_429_is_deferred_then_resumed(
    sandbox: MastodonSandbox, write_config: ConfigWriter, db: Database
) -> None:
    collect = FAST + "max_pages = 2\nmax_rate_limit_wait_seconds = 0\n"
    settings = load_settings(write_config(sandbox.url, collect=collect))
    select = pipeline.Selection(stream="mentions")
    first = pipeline.collect(db, settings, select)[0]
    assert (first.outcome, first.pages, first.items_new) == ("ok", 2, 20)
    key = StreamKey("acme", "mastodon", "mentions")
    position = store.get_cursor(db, key)
    stored_before = stored(db, "mention")

    sandbox.add_fault("429", endpoint="notifications", reset_in=2)
    asked = clock.now()
    limited = pipeline.collect(db, settings, select)[0]
    assert limited.outcome == "deferred" and limited.retry_at is not None
    # the ISO-8601 X-RateLimit-Reset is honoured: about two seconds on
    assert asked + timedelta(seconds=1) <= limited.retry_at <= asked + timedelta(seconds=4)
    assert store.get_cursor(db, key) == position and stored(db, "mention") == stored_before
    skipped = pipeline.collect(db, settings, select)[0]
    assert skipped.outcome == "skipped" and skipped.pages == 0

    time.sleep(max(0.0, (limited.retry_at - clock.now()).total_seconds()) + 0.1)
    for _ in range(10):  # page budget 2 per run: keep going until a run ends on an empty page
        if pipeline.collect(db, settings, select)[0].pages < 2:
            break
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    assert db.execute("SELECT count(*) = count(DISTINCT id) FROM posts").fetchone()[0] == 1


def test_mastodon_short_rate_limit_is_waited_out(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("429", endpoint="notifications", reset_in=1)
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


def test_mastodon_429_with_an_unreadable_reset_defers_the_default_wait(
    sandbox: MastodonSandbox, write_config: ConfigWriter, db: Database
) -> None:
    """Issue #35: a 429 is a rate limit whatever its X-RateLimit-Reset says. Without a readable
    reset the wait is a guess: the stream is deferred by the default, never waited out and
    retried within the run (a max_rate_limit_wait above the default used to do that)."""
    collect = FAST + "max_rate_limit_wait_seconds = 120\n"
    settings = load_settings(write_config(sandbox.url, collect=collect))
    sandbox.add_fault("429_bad_reset", endpoint="notifications", times=10)
    collect_deferred_by_default("mastodon", settings, db, "mentions")
    assert [r.status for r in sandbox.requests if r.path.endswith("/notifications")] == [429]


def test_mastodon_retries_500_then_succeeds(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("500", endpoint="notifications")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")
    statuses = [r.status for r in sandbox.requests if r.path.endswith("/notifications")]
    assert statuses[:2] == [500, 200]


# "slow" and "503" on every platform: tests/platforms/test_contract.py
@pytest.mark.parametrize("fault", ["malformed"])
def test_mastodon_bad_answer_fails_the_run_and_changes_nothing(
    sandbox: MastodonSandbox, write_config: ConfigWriter, db: Database, fault: str
) -> None:
    # no keyword stream: mentions reach the store only through the mentions stream under test
    settings = load_settings(write_config(sandbox.url, keywords="[]"))
    sandbox.add_fault(fault, endpoint="notifications", times=2, delay=3.0)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 15
    failed = results["mentions"]
    assert failed.outcome == "failed" and failed.error
    assert len(calls(sandbox, "/notifications")) == 2  # max_attempts, no more
    assert stored(db, "mention") == set()
    assert store.get_cursor(db, StreamKey("acme", "mastodon", "mentions")).position is None
    assert results["posts"].outcome == "ok"  # the other streams went on
    (status,) = [s for s in store.get_stream_status(db) if s.key.stream == "mentions"]
    assert status.consecutive_failures == 1 and status.last_error == failed.error

    healed = by_stream(pipeline.collect(db, settings))["mentions"]
    assert healed.outcome == "ok"
    assert stored(db, "mention") == expected_ids(sandbox, "mention")


def test_mastodon_expired_token_is_one_auth_failure(
    sandbox: MastodonSandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("expired_token", endpoint="notifications")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "auth_failed" and "expired" in (result.error or "")
    assert len(calls(sandbox, "/notifications")) == 1


def test_mastodon_wrong_token_fails_the_account_once(
    sandbox: MastodonSandbox, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    (result,) = pipeline.collect(db, settings)
    assert result.outcome == "auth_failed" and "access token is invalid" in (result.error or "")
    assert len(sandbox.requests) == 1
    assert f"check the user token in {TOKEN_ENV} (" in (result.error or "")  # its variable


def test_mastodon_unknown_handle_is_a_clear_failure(
    sandbox: MastodonSandbox, write_config: ConfigWriter, db: Database
) -> None:
    settings = load_settings(write_config(sandbox.url, handle="nobody"))
    (result,) = pipeline.collect(db, settings)
    assert result.outcome == "failed"
    assert "no account @nobody" in (result.error or "") and "Record not found" in (
        result.error or ""
    )


class Interrupt(KeyboardInterrupt):
    """Ctrl-C after a given number of committed pages."""


def test_mastodon_backfill_over_30_days_interrupted_resumes_and_stores_the_window_once(
    write_config: ConfigWriter, db: Database
) -> None:
    since, until = END - timedelta(days=30), END - timedelta(days=2)
    with MastodonSandbox(
        seed=5,
        start=since - timedelta(days=1),
        end=END,
        access_token=TOKEN,
        posts_per_day=3,
        mentions_per_day=6,
        keyword_hits_per_day=2,
    ) as sandbox:
        settings = load_settings(write_config(sandbox.url, page_size=20, keywords='["acme"]'))

        def stop_after_three(result: RunResult, posts: Sequence[Post]) -> None:
            if result.pages == 3:
                raise Interrupt

        with pytest.raises(Interrupt):
            pipeline.collect(db, settings, backfill=(since, until), on_page=stop_after_three)
        seen = len(sandbox.requests)

        results = pipeline.collect(db, settings, backfill=(since, until))
        assert {r.outcome for r in results} == {"ok"}
        resumed = sandbox.requests[seen]
        assert resumed.path.endswith("/statuses") and "max_id" in resumed.query
        ids = [r[0] for r in db.execute("SELECT id FROM posts")]
        window = {
            f"mastodon:{sandbox.status_id(i)}"
            for i in sandbox.visible()
            if since <= i.created_at < until
        }
        assert len(ids) == len(set(ids)) and set(ids) == window
        assert len(window) > 200
        assert all(store.get_cursor(db, r.key) == Cursor() for r in results)


class StuckLinkSandbox(MastodonSandbox):
    """The brand's statuses, asked for with a max_id, link that same max_id as the next page."""

    def respond(self, route: Route, request: Request) -> Response:
        answer = super().respond(route, request)
        sent = request.query.get("max_id", [None])[0]
        if route.endpoint != "statuses" or sent is None:
            return answer
        if len(calls(self, "/statuses")) > 10:
            return Response.json(500, {"error": "the walk went on and on"})
        link = f'<{self.url}/api/v1/accounts/1/statuses?max_id={sent}>; rel="next"'
        headers = tuple((k, link if k == "Link" else v) for k, v in answer.headers)
        return dataclasses.replace(answer, headers=headers)


def test_mastodon_backfill_whose_next_link_repeats_its_max_id_ends(
    write_config: ConfigWriter, db: Database
) -> None:
    with StuckLinkSandbox(seed=11, start=START, end=END, access_token=TOKEN) as sandbox:
        settings = load_settings(write_config(sandbox.url, keywords="[]"))
        select = pipeline.Selection(stream="posts")
        (result,) = pipeline.collect(
            db, settings, select, backfill=(START - timedelta(days=9), END)
        )
        assert result.outcome == "ok", result.error
        assert len(calls(sandbox, "/statuses")) == 2  # the second page named itself as the next
        assert stored(db, "post", "reply")


def test_mastodon_token_never_reaches_logs_or_store_at_debug(
    sandbox: MastodonSandbox, write_config: ConfigWriter
) -> None:
    config = write_config(sandbox.url)
    sandbox.add_fault("500", endpoint="notifications")
    sandbox.add_fault("expired_token", endpoint="search")
    result = CliRunner().invoke(cli, ["-vv", "--config", str(config), "collect"])
    output = result.output + result.stderr
    assert "HTTP Request: GET" in output  # httpx's DEBUG lines were logged
    assert TOKEN not in output
    db = store.open_db(load_settings(config).db_path)
    assert TOKEN not in "\n".join(db.conn.iterdump())
