"""The Bluesky collector driven over httpx against the XRPC sandbox on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.cli import cli
from monitor.config import Settings, load_settings
from monitor.models import Cursor, Post, RunResult, StreamKey, iso
from monitor.platforms.base import Collector
from monitor.platforms.bluesky.sandbox import BlueskySandbox
from monitor.platforms.bluesky.walk import Mark
from monitor.platforms.streams import build_collector
from tests.conftest import TestClock
from tests.platforms.ratelimits import collect_deferred_by_default

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = END - timedelta(days=1)
HANDLE = "acme.bsky.social"
PASSWORD_ENV = "TOUCHPOINT_TEST_BSKY_PASSWORD"
PASSWORD = "test-app-pass-word"
FAST = "max_attempts = 2\nread_timeout_seconds = 1\nconnect_timeout_seconds = 1\n"
CONFIG = Callable[..., Settings]


@pytest.fixture
def sandbox() -> Iterator[BlueskySandbox]:
    with BlueskySandbox(
        seed=11, brand_handle=HANDLE, start=START, end=END, app_password=PASSWORD
    ) as server:
        yield server


@pytest.fixture
def configure(sandbox: BlueskySandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CONFIG:
    """Write a Bluesky-only config for the sandbox and load it."""

    def write(
        *,
        page_size: int = 10,
        collect: str = FAST,
        keywords: str = '["acme"]',
        password: str = PASSWORD,
        brands: str = "",
        api_base: str = "",
    ) -> Settings:
        monkeypatch.setenv(PASSWORD_ENV, password)
        path = tmp_path / "touchpoint.toml"
        path.write_text(
            f'[store]\npath = "touchpoint.db"\n\n[collect]\n{collect}\n'
            f'[platforms.bluesky]\napi_base = "{api_base or sandbox.url}"\n'
            f'app_password_env = "{PASSWORD_ENV}"\npage_size = {page_size}\n\n'
            f'[[brands]]\nname = "acme"\nkeywords = {keywords}\n\n'
            f'[brands.accounts]\nbluesky = "{HANDLE}"\n{brands}',
            encoding="utf-8",
        )
        return load_settings(path)

    return write


@pytest.fixture
def settings(configure: CONFIG) -> Settings:
    return configure()


def expected(sandbox: BlueskySandbox, *kinds: str) -> set[str]:
    return {f"bluesky:{sandbox.uri(i)}" for i in sandbox.visible() if i.kind in kinds}


def stored(db: Database, *kinds: str) -> set[str]:
    marks = ",".join("?" * len(kinds))
    return {r[0] for r in db.execute(f"SELECT id FROM posts WHERE kind IN ({marks})", kinds)}


def by_stream(results: list[RunResult]) -> dict[str, RunResult]:
    return {r.key.stream: r for r in results}


def key(stream: str) -> StreamKey:
    return StreamKey("acme", "bluesky", stream)


# --------------------------------------------------------------------------- collection


def test_bluesky_collect_stores_posts_mentions_and_linked_replies_once(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    results = by_stream(pipeline.collect(db, settings))
    assert {r.outcome for r in results.values()} == {"ok"}
    assert stored(db, "post", "reply") == expected(sandbox, "post", "reply")
    assert stored(db, "mention") == expected(sandbox, "mention")
    assert stored(db, "keyword") == expected(sandbox, "keyword")
    # every brand reply points at the mention it answers, and that mention is stored
    replies = list(db.query("SELECT * FROM posts WHERE kind = 'reply'"))
    assert replies
    for reply in replies:
        parent = db.execute(
            "SELECT kind FROM posts WHERE id = ?", [reply["in_reply_to_id"]]
        ).fetchone()
        assert parent == ("mention",)
    # reposts of mentions in the brand's feed are not brand posts
    reposted = [e.post.uri for e in sandbox.network.feeds[sandbox.brand_did] if e.repost]
    assert reposted
    brand_ids = {r[0] for r in db.execute("SELECT id FROM posts WHERE is_brand = 1")}
    assert not {f"bluesky:{uri}" for uri in reposted} & brand_ids
    assert results["posts"].pages >= 3
    total = db.execute("SELECT count(*) FROM posts").fetchone()[0]

    seen = len(sandbox.requests)
    again = pipeline.collect(db, settings)
    assert [(r.items_new, r.items_updated) for r in again] == [(0, 0)] * 3
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == total
    assert len(sandbox.requests) - seen == 3  # idle poll: one request per stream, no login


def test_bluesky_second_run_reuses_the_session(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    pipeline.collect(db, settings)
    state = store.get_collector_state(db, "bluesky")
    assert set(state) == {"service", "did", "handle", "accessJwt", "refreshJwt"}
    assert PASSWORD not in str(state)

    second = pipeline.collect(db, settings)  # a new collector, loading the kept session
    assert {r.outcome for r in second} == {"ok"}
    assert sandbox.create_session_calls == 1
    assert sandbox.refresh_session_calls == 0
    assert store.get_collector_state(db, "bluesky") == state


@pytest.mark.parametrize("how", ["ttl", "fault"])
def test_bluesky_expired_access_token_is_refreshed_once(
    sandbox: BlueskySandbox, settings: Settings, db: Database, how: str
) -> None:
    pipeline.collect(db, settings)
    before = store.get_collector_state(db, "bluesky")
    if how == "ttl":
        sandbox.expire_access_tokens()
    else:
        sandbox.add_fault("expired_token", endpoint="getAuthorFeed")

    results = pipeline.collect(db, settings)
    assert {r.outcome for r in results} == {"ok"}
    assert sandbox.refresh_session_calls == 1
    assert sandbox.create_session_calls == 1
    after = store.get_collector_state(db, "bluesky")
    assert after["did"] == before["did"]
    assert after["accessJwt"] != before["accessJwt"]
    assert after["refreshJwt"] != before["refreshJwt"]
    statuses = [r.status for r in sandbox.requests if r.path.endswith("getAuthorFeed")]
    assert statuses[-2:] == [400, 200]  # the refused call, then the same call once more


def test_bluesky_refused_refresh_token_logs_in_once_more(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    pipeline.collect(db, settings)
    state = store.get_collector_state(db, "bluesky")
    sandbox.expire_access_tokens()
    sandbox.sessions.revoke(state["refreshJwt"])

    results = pipeline.collect(db, settings)
    assert {r.outcome for r in results} == {"ok"}
    assert (sandbox.refresh_session_calls, sandbox.create_session_calls) == (1, 2)


def test_bluesky_bad_app_password_is_refused_credentials_once_it_repeats(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database
) -> None:
    """A cron-run ``touchpoint collect`` builds a new collector each time: the refusals in a row
    are kept in the store, so the third one is reported as refused credentials with the fix;
    the first two are transient failures (a PDS refuses a login now and then)."""
    settings = configure(password="not-the-password")
    outcomes = []
    for _ in range(3):
        (result,) = pipeline.collect(db, settings)  # a new collector each call
        assert result.key.stream == "account"
        assert "not-the-password" not in (result.error or "")
        outcomes.append(result.outcome)
    assert outcomes == ["failed", "failed", "auth_failed"]
    assert "refused the login of @acme.bsky.social 3 times in a row" in (result.error or "")
    assert PASSWORD_ENV in (result.error or "")  # the fix names the variable
    assert sandbox.create_session_calls == 3
    assert {r.path for r in sandbox.requests} == {"/xrpc/com.atproto.server.createSession"}
    state = store.get_collector_state(db, "bluesky")
    assert state == {"service": sandbox.url, "login": HANDLE, "login_refusals": 3}


def test_bluesky_refused_login_is_tried_again_after_a_backoff(
    sandbox: BlueskySandbox, settings: Settings, db: Database, fake_clock: TestClock
) -> None:
    """Issue #35: createSession refused three times (ExpiredToken, a PDS's hiccup), then
    accepted. The refusal was kept by the collector for good: no Bluesky request until a
    restart. Now each refusal waits a back-off (1, 2, 4 ... 16 minutes) and the login is tried
    again; the third refusal in a row is reported as refused credentials."""
    sandbox.add_fault("expired_token", endpoint="createSession", times=3)
    collectors = {"bluesky": build_collector("bluesky", settings)}  # kept, as the daemon does

    def run() -> list[RunResult]:
        return pipeline.collect(db, settings, collectors=collectors)

    try:
        start = clock.now()
        (first,) = run()
        assert first.outcome == "failed" and "refused the login" in (first.error or "")
        assert f"trying again after {iso(start + timedelta(minutes=1))[:16]}" in (first.error or "")
        (waiting,) = run()  # within the back-off: refused here, no request
        assert waiting.outcome == "failed" and sandbox.create_session_calls == 1
        fake_clock.set(start + timedelta(minutes=1, seconds=5))
        (second,) = run()
        assert second.outcome == "failed" and sandbox.create_session_calls == 2
        fake_clock.set(start + timedelta(minutes=2, seconds=10))
        (waiting,) = run()  # the second back-off is 2 minutes
        assert sandbox.create_session_calls == 2
        fake_clock.set(start + timedelta(minutes=3, seconds=10))
        (third,) = run()
        assert third.outcome == "auth_failed" and PASSWORD_ENV in (third.error or "")
        assert sandbox.create_session_calls == 3
        fake_clock.set(start + timedelta(minutes=7, seconds=15))  # the third back-off: 4 min
        healed = run()
        assert {r.outcome for r in healed} == {"ok"} and sandbox.create_session_calls == 4
    finally:
        collectors["bluesky"].close()
    state = store.get_collector_state(db, "bluesky")
    assert set(state) == {"service", "did", "handle", "accessJwt", "refreshJwt"}  # count gone


def test_bluesky_refused_login_is_tried_at_once_after_a_reload(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    """SIGHUP: the daemon closes its collectors and builds new ones (Daemon._reloaded); the new
    collector logs in at once rather than waiting out the old one's back-off."""
    sandbox.add_fault("expired_token", endpoint="createSession", times=1)
    collectors = {"bluesky": build_collector("bluesky", settings)}
    (refused,) = pipeline.collect(db, settings, collectors=collectors)
    assert refused.outcome == "failed" and "trying again after" in (refused.error or "")
    (waiting,) = pipeline.collect(db, settings, collectors=collectors)
    assert waiting.outcome == "failed" and sandbox.create_session_calls == 1
    collectors["bluesky"].close()
    reloaded: dict[str, Collector] = {}  # what the daemon's reload leaves: none built yet
    try:
        healed = pipeline.collect(db, settings, collectors=reloaded)
    finally:
        for collector in reloaded.values():
            collector.close()
    assert {r.outcome for r in healed} == {"ok"} and sandbox.create_session_calls == 2


def test_bluesky_status_says_the_login_failed_not_never_collected(
    sandbox: BlueskySandbox, settings: Settings
) -> None:
    sandbox.add_fault("expired_token", endpoint="createSession", times=1)
    config = ["--config", str(settings.source)]
    CliRunner().invoke(cli, [*config, "collect"])
    out = CliRunner().invoke(cli, [*config, "status"]).output
    assert "never collected" not in out and "new in the config" not in out
    assert "not collected: acme/bluesky/keywords 'acme', acme/bluesky/mentions, " in out
    assert "acme/bluesky/posts (every run stopped at the account: " in out
    assert "Bluesky refused the login of @acme.bsky.social" in out


def test_bluesky_login_rate_limited_is_one_login_until_the_reset(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("429", endpoint="createSession", times=10, reset_in=120)
    collectors = {"bluesky": build_collector("bluesky", settings)}  # kept, as the daemon does
    try:
        for _ in range(3):
            results = pipeline.collect(db, settings, collectors=collectors)
            assert results and all("rate limited until" in (r.error or "") for r in results)
    finally:
        collectors["bluesky"].close()
    logins = [r for r in sandbox.requests if r.path.endswith("createSession")]
    assert len(logins) == 1  # not one per stream and run: the limit is 30 per 5 min, 300 a day


def test_bluesky_login_limited_for_a_day_is_not_tried_before_its_reset(
    sandbox: BlueskySandbox, settings: Settings, db: Database, fake_clock: TestClock
) -> None:
    """Reliability plan #26: createSession refused for a day. A deferral lasts 16 minutes at
    most, so the daemon's runs come back, but no login is tried before the reset the 429
    named: a login refused again might hold the limit longer."""
    sandbox.add_fault("429", endpoint="createSession", times=10, reset_in=86_400)
    collectors = {"bluesky": build_collector("bluesky", settings)}  # kept, as the daemon does

    def logins() -> int:
        return len([r for r in sandbox.requests if r.path.endswith("createSession")])

    try:
        (first,) = pipeline.collect(db, settings, collectors=collectors)
        reset = iso(clock.now() + timedelta(seconds=86_400))
        assert first.outcome == "failed" and first.error  # a failed run: the health alert
        assert f"rate limited until {reset[:13]}" in first.error  # the day away, to the hour
        start = clock.now()
        for hours in (1, 12, 23):  # refused here, not by Bluesky
            fake_clock.set(start + timedelta(hours=hours))
            (again,) = pipeline.collect(db, settings, collectors=collectors)
            assert again.outcome == "failed" and again.error == first.error
        assert logins() == 1
        sandbox.clear_faults()
        fake_clock.set(start + timedelta(hours=24, minutes=1))
        healed = pipeline.collect(db, settings, collectors=collectors)
        assert {r.outcome for r in healed} == {"ok"} and logins() == 2
    finally:
        collectors["bluesky"].close()


def test_bluesky_login_limit_is_kept_for_the_next_process(
    sandbox: BlueskySandbox, settings: Settings, db: Database, fake_clock: TestClock
) -> None:
    """A cron-run ``touchpoint collect`` or a restarted daemon builds a new collector each time:
    the reset of a login 429 is kept with the session state, so none of them logs in before
    it."""
    sandbox.add_fault("429", endpoint="createSession", times=10, reset_in=86_400)

    def logins() -> int:
        return len([r for r in sandbox.requests if r.path.endswith("createSession")])

    (first,) = pipeline.collect(db, settings)  # a new collector each call, loading the state
    assert first.outcome == "failed" and "rate limited until" in (first.error or "")
    kept = store.get_collector_state(db, "bluesky")
    assert kept["login"] == HANDLE and kept["service"] == sandbox.url
    start = clock.now()
    for hours in (0, 6, 23):
        fake_clock.set(start + timedelta(hours=hours))
        (again,) = pipeline.collect(db, settings)
        assert again.outcome == "failed" and again.error == first.error
    assert logins() == 1
    sandbox.clear_faults()
    fake_clock.set(start + timedelta(hours=24, minutes=1))
    healed = pipeline.collect(db, settings)
    assert {r.outcome for r in healed} == {"ok"} and logins() == 2
    state = store.get_collector_state(db, "bluesky")
    assert set(state) == {"service", "did", "handle", "accessJwt", "refreshJwt"}  # block gone


def test_bluesky_kept_login_limit_of_another_account_or_pds_is_ignored(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    until = iso(clock.now() + timedelta(hours=5))
    for other in (
        {"service": sandbox.url, "login": "other.bsky.social", "login_limited_until": until},
        {"service": "https://pds.example", "login": HANDLE, "login_limited_until": until},
        {"service": sandbox.url, "login": HANDLE, "login_limited_until": "soon"},
        {"service": sandbox.url, "login": HANDLE, "login_limited_until": "2099-01-01T00:00:00Z"},
    ):
        store.set_collector_state(db, "bluesky", other)
        results = pipeline.collect(db, settings)
        assert {r.outcome for r in results} == {"ok"}, other
        store.set_collector_state(db, "bluesky", {})  # log in again next time
    assert sandbox.create_session_calls == 4


def test_bluesky_pagination_goes_on_through_empty_filtered_pages(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database
) -> None:
    settings = configure(page_size=5, keywords="[]")
    per_page: list[int] = []

    def count(result: RunResult, posts: Sequence[Post]) -> None:
        if result.key.stream == "mentions":
            per_page.append(len(posts))

    results = by_stream(pipeline.collect(db, settings, on_page=count))
    assert results["mentions"].outcome == "ok"
    assert len(per_page) >= 3 and 0 in per_page[:-1]  # an empty page that carried a cursor
    assert stored(db, "mention") == expected(sandbox, "mention")


def test_bluesky_collect_is_incremental(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    sandbox.set_clock(START + timedelta(hours=12))
    first = by_stream(pipeline.collect(db, settings))
    before = stored(db, "mention")
    assert before == expected(sandbox, "mention") and first["mentions"].items_new == len(before)
    position = store.get_cursor(db, key("mentions")).position
    mark = Mark.decode(position)
    assert mark is not None and f"bluesky:{mark.uri}" in before

    sandbox.set_clock(END)
    seen = len(sandbox.requests)
    second = by_stream(pipeline.collect(db, settings))
    assert stored(db, "mention") == expected(sandbox, "mention")
    assert second["mentions"].items_new == len(expected(sandbox, "mention") - before) > 0
    assert second["mentions"].items_updated == 0  # what was stored is trimmed, not rewritten
    calls = [r for r in sandbox.requests[seen:] if r.path.endswith("listNotifications")]
    assert "cursor" not in calls[0].query and calls[0].query["reasons"] == ["mention", "reply"]
    assert len(calls) < first["mentions"].pages + second["mentions"].pages
    assert stored(db, "post", "reply") == expected(sandbox, "post", "reply")


def busy_search(depth: int) -> BlueskySandbox:
    """A sandbox whose keyword has 240 hits a day, searchable ``depth`` hits deep."""
    return BlueskySandbox(
        seed=11,
        brand_handle=HANDLE,
        start=START,
        end=END,
        app_password=PASSWORD,
        search_depth=depth,
        keyword_hits_per_day=240,
    )


@pytest.mark.parametrize(("depth", "warned"), [(30, True), (10_000, False)])
def test_bluesky_backfill_warns_of_older_hits_only_when_the_search_was_cut_short(
    configure: CONFIG, db: Database, caplog: pytest.LogCaptureFixture, depth: int, warned: bool
) -> None:
    # a search sent with since= ends at the window's start by itself: no warning for that
    with busy_search(depth) as sandbox:
        settings = configure(page_size=10, api_base=sandbox.url)
        window = (START - timedelta(days=3), END)
        with caplog.at_level(logging.WARNING, logger="monitor.platforms.bluesky.collector"):
            select = pipeline.Selection(stream="keywords")
            (result,) = pipeline.collect(db, settings, select, backfill=window)
    assert result.outcome == "ok" and (result.items_new == 30) is warned
    cut = [r for r in caplog.records if "the search ended before the start" in r.getMessage()]
    assert bool(cut) is warned


def test_bluesky_search_past_its_depth_is_recorded_as_a_gap(
    configure: CONFIG, db: Database
) -> None:
    with busy_search(30) as sandbox:
        settings = configure(page_size=10, api_base=sandbox.url)
        sandbox.set_clock(START + timedelta(hours=1))
        first = by_stream(pipeline.collect(db, settings))
        assert first["keywords"].outcome == "ok" and first["keywords"].gap is None
        sandbox.set_clock(END)  # a day of hits: the search lists the newest 30 only
        second = by_stream(pipeline.collect(db, settings))
        third = by_stream(pipeline.collect(db, settings))  # nothing new: the stored hit is listed
        searches = [r for r in sandbox.requests if r.path.endswith("searchPosts")]
    keywords = second["keywords"]
    assert keywords.outcome == "ok" and keywords.pages == 3
    assert keywords.gap and "pages at most 10,000 hits deep" in keywords.gap
    assert second["posts"].gap is None and second["mentions"].gap is None
    assert third["keywords"].gap is None
    assert all(int(r.query.get("cursor", ["0"])[0]) < 30 for r in searches)
    gaps = {g.key.stream: g.gap for g in store.get_gaps(db, since=START)}
    assert gaps == {"keywords": keywords.gap}


def test_bluesky_walk_interrupted_by_429_is_deferred_then_resumed(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database
) -> None:
    settings = configure(collect=FAST + "max_pages = 2\nmax_rate_limit_wait_seconds = 0\n")
    select = pipeline.Selection(stream="posts")
    first = pipeline.collect(db, settings, select)[0]
    assert (first.outcome, first.pages) == ("ok", 2)
    walk = store.get_cursor(db, key("posts"))
    assert walk.pending is not None and walk.pending["cursor"] and walk.position is None
    stored_before = stored(db, "post", "reply")

    sandbox.add_fault("429", endpoint="getAuthorFeed", reset_in=2)
    limited = pipeline.collect(db, settings, select)[0]
    assert limited.outcome == "deferred" and limited.retry_at is not None
    assert store.get_cursor(db, key("posts")) == walk
    assert stored(db, "post", "reply") == stored_before
    skipped = pipeline.collect(db, settings, select)[0]
    assert skipped.outcome == "skipped" and skipped.pages == 0

    time.sleep(max(0.0, (limited.retry_at - clock.now()).total_seconds()) + 0.1)
    for _ in range(10):  # page budget 2 per run: keep going until the walk is done
        pipeline.collect(db, settings, select)
        if store.get_cursor(db, key("posts")).pending is None:
            break
    assert stored(db, "post", "reply") == expected(sandbox, "post", "reply")
    assert store.get_cursor(db, key("posts")).position is not None
    assert db.execute("SELECT count(*) = count(DISTINCT id) FROM posts").fetchone()[0] == 1


def test_bluesky_short_rate_limit_is_waited_out(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("429", endpoint="searchPosts", reset_in=1)
    result = by_stream(pipeline.collect(db, settings))["keywords"]
    assert result.outcome == "ok"
    assert stored(db, "keyword") == expected(sandbox, "keyword")


def test_bluesky_429_with_an_unreadable_reset_defers_the_default_wait(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database
) -> None:
    """Issue #35: a 429 whose RateLimit-Reset is not epoch seconds ("nan") is a rate limit whose
    wait is a guess: the stream is deferred by the default, never waited out and retried within
    the run (a max_rate_limit_wait above the default used to do that)."""
    settings = configure(collect=FAST + "max_rate_limit_wait_seconds = 120\n")
    sandbox.add_fault("429_bad_reset", endpoint="getAuthorFeed", times=10)
    collect_deferred_by_default("bluesky", settings, db, "posts")
    assert [r.status for r in sandbox.requests if r.path.endswith("getAuthorFeed")] == [429]


def test_bluesky_retries_500_then_succeeds(
    sandbox: BlueskySandbox, settings: Settings, db: Database
) -> None:
    sandbox.add_fault("500", endpoint="listNotifications")
    result = by_stream(pipeline.collect(db, settings))["mentions"]
    assert result.outcome == "ok"
    assert stored(db, "mention") == expected(sandbox, "mention")
    statuses = [r.status for r in sandbox.requests if r.path.endswith("listNotifications")]
    assert statuses[:2] == [500, 200]


# "slow" and "503" on every platform: tests/platforms/test_contract.py
@pytest.mark.parametrize("fault", ["malformed"])
def test_bluesky_bad_answer_fails_the_run_and_changes_nothing(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database, fault: str
) -> None:
    # no keyword stream: mentions reach the store only through the mentions stream under test
    settings = configure(keywords="[]")
    sandbox.add_fault(fault, endpoint="listNotifications", times=2, delay=3.0)
    started = time.monotonic()
    results = by_stream(pipeline.collect(db, settings))
    assert time.monotonic() - started < 15
    failed = results["mentions"]
    assert failed.outcome == "failed" and failed.error
    assert stored(db, "mention") == set()
    assert store.get_cursor(db, key("mentions")) == Cursor()
    assert results["posts"].outcome == "ok"  # the other streams went on

    healed = by_stream(pipeline.collect(db, settings))["mentions"]
    assert healed.outcome == "ok"
    assert stored(db, "mention") == expected(sandbox, "mention")
    assert sandbox.create_session_calls == 1


def test_bluesky_mentions_of_a_second_brand_need_their_own_login(
    sandbox: BlueskySandbox, configure: CONFIG, db: Database
) -> None:
    other = next(i for i in sandbox.visible() if i.kind == "keyword")
    extra = (
        f'\n[[brands]]\nname = "other"\n\n[brands.accounts]\nbluesky = "{sandbox.handle(other)}"\n'
    )
    settings = configure(brands=extra)
    results = {(r.key.brand, r.key.stream): r for r in pipeline.collect(db, settings)}
    assert results[("other", "posts")].outcome == "ok"
    refused = results[("other", "mentions")]
    assert refused.outcome == "failed" and HANDLE in (refused.error or "")
    assert results[("acme", "mentions")].outcome == "ok"
    assert sandbox.create_session_calls == 1


# --------------------------------------------------------------------------- backfill


def test_bluesky_backfill_of_30_days_interrupted_resumes_and_stores_the_window_once(
    configure: CONFIG, db: Database
) -> None:
    with BlueskySandbox(
        seed=3, brand_handle=HANDLE, start=END - timedelta(days=32), end=END, app_password=PASSWORD
    ) as month:
        settings = configure(page_size=50, api_base=month.url)
        since, until = END - timedelta(days=31), END - timedelta(days=1)

        class Interrupt(KeyboardInterrupt):
            """Ctrl-C after three committed pages."""

        def stop_after_three(result: RunResult, posts: Sequence[Post]) -> None:
            if result.pages == 3:
                raise Interrupt

        select = pipeline.Selection(stream="mentions")
        with pytest.raises(Interrupt):
            pipeline.collect(
                db, settings, select, backfill=(since, until), on_page=stop_after_three
            )
        seen = len(month.requests)

        results = pipeline.collect(db, settings, backfill=(since, until))
        assert {r.outcome for r in results} == {"ok"}
        resumed = next(r for r in month.requests[seen:] if r.path.endswith("listNotifications"))
        assert "cursor" in resumed.query  # the walk went on where it stopped
        search = next(r for r in month.requests[seen:] if r.path.endswith("searchPosts"))
        assert search.query["since"] == ["2026-10-20T12:00:00.000Z"]
        assert search.query["until"] == ["2026-11-19T12:00:00.000Z"]
        assert search.query["sort"] == ["latest"]
        ids = [r[0] for r in db.execute("SELECT id FROM posts")]
        assert len(ids) == len(set(ids))
        in_window = {
            f"bluesky:{month.uri(i)}" for i in month.visible() if since <= i.created_at < until
        }
        assert len(in_window) > 2000 and set(ids) == in_window
        assert month.create_session_calls == 1
    assert store.get_cursor(db, key("posts")).position is None  # incremental untouched
    assert not [s for s in store.get_stream_status(db) if s.cursor_updated_at]  # walks done


def test_bluesky_jwts_and_password_never_reach_logs_or_messages(
    sandbox: BlueskySandbox, configure: CONFIG
) -> None:
    settings = configure()
    command = ["-vv", "--config", str(settings.source), "collect"]
    first = CliRunner().invoke(cli, command)
    sandbox.expire_access_tokens()
    sandbox.add_fault("500", endpoint="listNotifications")
    second = CliRunner().invoke(cli, command)
    output = "".join(r.output + r.stderr for r in (first, second))
    assert "logged in" in output and "refreshed" in output
    db = store.open_db(settings.db_path)
    state = store.get_collector_state(db, "bluesky")
    for secret in (PASSWORD, state["accessJwt"], state["refreshJwt"]):
        assert secret not in output
    assert PASSWORD not in "\n".join(db.conn.iterdump())
    db.conn.close()
