"""normalize() and the wire-level helpers of the Mastodon collector on recorded responses.

Pure tests, plus a few that replay the recorded error answers through ``httpx.MockTransport``.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor import clock
from monitor.models import StreamKey
from monitor.platforms.base import (
    MAX_DEFERRAL,
    AuthError,
    CollectorError,
    MalformedResponse,
    RateLimited,
    RetryPolicy,
    Target,
)
from monitor.platforms.mastodon.collector import (
    MastodonCollector,
    parse_links,
    parse_reset,
    search_terms,
)
from monitor.platforms.mastodon.normalize import _validate_items, _validate_search, html_to_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mastodon"
BRAND_ID = "117020565966271181"  # mastodonpy_test on the recorded test instance
ADMIN_ID = "117020565693913441"


def envelope(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return result


def body(name: str) -> Any:
    return envelope(name)["response"]["body"]


def target(stream: str, account_id: str = BRAND_ID, handle: str = "mastodonpy_test") -> Target:
    return Target(
        key=StreamKey("brand", "mastodon", stream),
        stream=stream,
        handle=handle,
        account_id=account_id,
    )


@pytest.fixture(scope="module")
def collector() -> MastodonCollector:
    return MastodonCollector(access_token="unused", api_base="http://127.0.0.1:9")


def test_mastodon_normalize_account_statuses_are_the_brands(collector: MastodonCollector) -> None:
    statuses = body("account_statuses_prev_min_id.json")
    posts = collector.normalize({"statuses": statuses}, target("posts"))
    assert [p.native_id for p in posts] == [s["id"] for s in statuses]
    first = posts[0]
    assert first.id == "mastodon:117020580518794573"
    assert first.is_brand and first.kind == "post"
    assert (first.author_id, first.author_handle) == (BRAND_ID, "mastodonpy_test")
    assert first.text == "Toot number 9!"
    assert first.created_at == "2026-08-01T13:52:34Z"
    assert first.lang == "en"
    assert first.url == "http://localhost:3000/@mastodonpy_test/117020580518794573"
    assert first.metrics == {"likes": 0, "replies": 0, "reposts": 0, "quotes": 0}
    assert first.in_reply_to_id is None and first.conversation_id is None
    assert first.raw == statuses[0]


def test_mastodon_normalize_mention_notifications_carry_the_status(
    collector: MastodonCollector,
) -> None:
    notifications = body("notifications_follow_and_mention.json")
    follow = copy.deepcopy(notifications[0]) | {"id": "24", "type": "follow", "status": None}
    (post,) = collector.normalize({"notifications": [follow, *notifications]}, target("mentions"))
    status = notifications[0]["status"]
    # the post is the status (its id), not the notification ("23")
    assert post.native_id == status["id"] == "117020577600332262"
    assert (post.kind, post.is_brand) == ("mention", False)
    assert (post.author_id, post.author_handle) == (ADMIN_ID, "admin")
    assert post.text == "@mastodonpy_test hello!"  # h-card HTML reduced to what a reader sees
    assert post.raw == status


def test_mastodon_normalize_a_reply_links_to_the_status_it_answers(
    collector: MastodonCollector,
) -> None:
    status = body("status_reply_created.json")
    # written by admin to mastodonpy_test_2: for admin's brand it is a reply
    (reply,) = collector.normalize({"statuses": [status]}, target("posts", ADMIN_ID, "admin"))
    assert (reply.kind, reply.is_brand) == ("reply", True)
    assert reply.in_reply_to_id == "mastodon:117020583245459824"
    # for the account it answers, found by search, it is a mention (in_reply_to_account_id)
    (seen,) = collector.normalize(
        {"statuses": [status]}, target("keywords", "117020566092212359", "mastodonpy_test_2")
    )
    assert (seen.kind, seen.is_brand) == ("mention", False)
    # a brand answering itself continues its own thread: a post, still linked
    own = status | {"in_reply_to_account_id": ADMIN_ID}
    (thread,) = collector.normalize({"statuses": [own]}, target("posts", ADMIN_ID, "admin"))
    assert thread.kind == "post" and thread.in_reply_to_id == "mastodon:117020583245459824"


def test_mastodon_normalize_remote_status_with_content_warning(
    collector: MastodonCollector,
) -> None:
    status = body("status_single.json")
    (post,) = collector.normalize({"statuses": [status]}, target("keywords", "1", "nobody"))
    assert post.kind == "keyword"
    assert post.author_handle == "halcy@icosahedron.website"
    assert post.lang == "de" and post.metrics["likes"] == 1
    assert post.text == (
        "test post for mastodon.py stuff\n\n@halcy you're a doo-doo head\n\n"
        "edit: editing this to have the maximum amount of fields filled :trans_heart: "
        "#ThisIsAHashtag"
    )


def test_mastodon_normalize_skips_reblogs(collector: MastodonCollector) -> None:
    status = body("status_single.json")
    reblog = status | {"id": "1", "reblog": status, "content": ""}
    posts = collector.normalize({"statuses": [reblog]}, target("posts", "23972", "halcy"))
    assert posts == []


def test_mastodon_normalize_search_answers(collector: MastodonCollector) -> None:
    # an instance without ElasticSearch answers no statuses: an empty page, not an error
    empty = body("search_v2_statuses.json")
    assert _validate_search(empty)["statuses"] == []
    assert collector.normalize(empty, target("keywords")) == []
    assert collector.normalize(body("search_v2_all.json"), target("keywords")) == []
    home = body("home_timeline_since_id.json")
    posts = collector.normalize({"statuses": home}, target("keywords", "1", "nobody"))
    assert [(p.native_id, p.kind, p.text) for p in posts] == [
        ("117020594094054884", "keyword", "Toot!")
    ]


def test_mastodon_normalize_backfill_keeps_only_the_window(collector: MastodonCollector) -> None:
    statuses = body("account_statuses_prev_min_id.json")  # 13:52:33.658 .. 13:52:34.108
    window = Target(
        key=StreamKey("brand", "mastodon", "backfill-posts"),
        stream="posts",
        handle="mastodonpy_test",
        account_id=BRAND_ID,
        since=datetime(2026, 8, 1, 13, 52, 33, 800000, tzinfo=UTC),
        until=datetime(2026, 8, 1, 13, 52, 34, tzinfo=UTC),
    )
    posts = collector.normalize({"statuses": statuses}, window)
    assert [p.text for p in posts] == ["Toot number 8!", "Toot number 7!"]


def test_mastodon_html_to_text_keeps_line_breaks_and_entities() -> None:
    assert html_to_text("<p>a &amp; b<br />c</p><p>d &lt;3</p>") == "a & b\nc\n\nd <3"
    assert html_to_text("plain, no paragraph") == "plain, no paragraph"


def test_mastodon_keyword_query_is_one_search_per_keyword(collector: MastodonCollector) -> None:
    query = collector.keyword_query(["acme", "rocket skates", '"quoted"'])
    assert query == 'acme OR "rocket skates" OR quoted'
    assert search_terms(query) == ["acme", '"rocket skates"', "quoted"]


@pytest.mark.parametrize(
    ("page", "key"),
    [
        ({"id": "1"}, "statuses"),
        ([{"id": 1}], "statuses"),
        ([{"id": "1", "created_at": "2026-08-01T00:00:00Z", "content": ""}], "statuses"),
        (
            [{"id": "1", "account": {"id": "2"}, "content": "", "created_at": "yesterday"}],
            "statuses",
        ),
        ([{"id": "1 OR 1=1", "account": {"id": "2"}, "content": ""}], "statuses"),
        ([{"id": "5", "created_at": "2026-08-01T00:00:00Z"}], "notifications"),
        (
            [{"id": "5", "type": "mention", "created_at": "2026-08-01T00:00:00Z", "status": 3}],
            "notifications",
        ),
    ],
    ids=["object", "int-id", "no-account", "bad-time", "bad-id", "no-type", "bad-status"],
)
def test_mastodon_validate_refuses_malformed_shapes(page: Any, key: str) -> None:
    with pytest.raises(MalformedResponse):
        _validate_items(page, key)


def test_mastodon_validate_accepts_recorded_pages() -> None:
    assert len(_validate_items(body("account_statuses_prev_min_id.json"), "statuses")) == 5
    assert len(_validate_items(body("notifications_all.json"), "notifications")) == 1
    assert len(_validate_items(body("notifications_follow_and_mention.json"), "notifications")) == 1
    with pytest.raises(MalformedResponse):
        _validate_search(body("account_statuses_prev_min_id.json"))


def test_mastodon_link_header_gives_the_id_bounds() -> None:
    headers = envelope("notifications_follow_and_mention.json")["response"]["headers"]
    response = httpx.Response(200, headers=headers, json=[])
    links = parse_links(response)
    assert links["next"]["max_id"] == "23"
    assert links["prev"]["min_id"] == "23"
    broken = httpx.Response(200, headers={"Link": '<http://[::1>; rel="next"'}, json=[])
    with pytest.raises(MalformedResponse):
        parse_links(broken)


@pytest.mark.parametrize(
    "text", ["2026-11-20T12:05:00Z", "2026-11-20T12:05:00.000000Z", "2026-11-20T12:05:00+00:00"]
)
def test_mastodon_rate_limit_reset_without_fractional_seconds_is_read(text: str) -> None:
    assert parse_reset(text) == datetime(2026, 11, 20, 12, 5, tzinfo=UTC)


def test_mastodon_rate_limit_reset_is_an_iso_time() -> None:
    headers = envelope("account_statuses_prev_min_id.json")["response"]["headers"]
    reset = parse_reset(headers["x-ratelimit-reset"])
    assert reset == datetime(2026, 8, 1, 13, 55, 0, 756458, tzinfo=UTC)
    assert parse_reset("in five minutes") is None and parse_reset(None) is None


# --------------------------------------------------------------------------- recorded errors


def replay(*names: str, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    """Answer successive requests with the recorded responses ``names`` (status, headers, body)."""
    answers = [envelope(n)["response"] for n in names]

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        merged = answer["headers"] | (headers or {})
        return httpx.Response(answer["status"], headers=merged, json=answer["body"])

    return httpx.MockTransport(handle)


def mock_collector(transport: httpx.MockTransport) -> MastodonCollector:
    policy = RetryPolicy(max_attempts=2, max_rate_limit_wait=0)
    return MastodonCollector(
        access_token="unused", api_base="http://localhost:3000", transport=transport, policy=policy
    )


def test_mastodon_lookup_resolves_and_404_is_a_clear_error() -> None:
    found = mock_collector(replay("accounts_lookup.json", "verify_credentials.json"))
    assert found.resolve_account("mastodonpy_test") == BRAND_ID  # token owner differs: a warning
    missing = mock_collector(replay("error_404_lookup.json"))
    with pytest.raises(CollectorError, match="no account @nobody.*Record not found") as raised:
        missing.resolve_account("nobody")
    assert not isinstance(raised.value, AuthError)


def test_mastodon_recorded_401_is_an_auth_error() -> None:
    collector = mock_collector(replay("error_401_no_token.json"))
    with pytest.raises(AuthError, match="The access token is invalid"):
        collector.resolve_account("mastodonpy_test")


@pytest.mark.parametrize("reset", ["9999-12-31T23:59:59.999999Z", "soon", ""])
def test_mastodon_429_reset_far_future_or_odd_is_clamped(reset: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        return httpx.Response(429, headers=headers, json={"error": "Too many requests"})

    collector = mock_collector(httpx.MockTransport(handle))
    with pytest.raises(RateLimited) as raised:
        collector.resolve_account("acme")
    assert clock.now() < raised.value.retry_at <= clock.now() + MAX_DEFERRAL + timedelta(seconds=1)
