"""normalize() of the X collector on recorded API v2 responses: pure, no HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.models import StreamKey
from monitor.platforms.base import MalformedResponse, Target
from monitor.platforms.x.collector import XCollector, _translate_errors, _validate_page

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "twitter"


def body(name: str) -> dict[str, Any]:
    envelope = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    result: dict[str, Any] = envelope["response"]["body"]
    return result


def target(stream: str, account_id: str, handle: str) -> Target:
    return Target(
        key=StreamKey("brand", "x", stream), stream=stream, handle=handle, account_id=account_id
    )


@pytest.fixture(scope="module")
def collector() -> XCollector:
    return XCollector(bearer_token="unused", api_base="http://127.0.0.1:9")


def test_x_normalize_timeline_posts_are_the_brands(collector: XCollector) -> None:
    raw = body("users_tweets_with_fields.json")
    posts = collector.normalize(raw, target("posts", "2244994945", "TwitterDev"))
    assert [p.native_id for p in posts] == [t["id"] for t in raw["data"]]
    first = posts[0]
    assert first.id == "x:1364275610764201984"
    assert first.is_brand and first.kind == "post"
    assert first.author_id == "2244994945" and first.author_handle == "TwitterDev"
    assert first.created_at == "2021-02-23T18:07:07Z"
    assert first.metrics == {"likes": 37, "replies": 2, "reposts": 10, "quotes": 1}
    assert first.url == "https://x.com/TwitterDev/status/1364275610764201984"
    assert first.raw == raw["data"][0]


def test_x_normalize_mentions_are_not_the_brands(collector: XCollector) -> None:
    raw = body("users_mentions_with_fields.json")
    posts = collector.normalize(raw, target("mentions", "2244994945", "TwitterDev"))
    assert len(posts) == 5
    assert {p.kind for p in posts} == {"mention"}
    assert not any(p.is_brand for p in posts)


def test_x_normalize_links_replies_and_threads(collector: XCollector) -> None:
    raw = body("search_conversation_with_includes.json")
    posts = {
        p.native_id: p for p in collector.normalize(raw, target("keywords", "17200003", "snowman"))
    }
    customer = posts["1276035977375477760"]
    assert (customer.kind, customer.author_handle) == ("mention", "happycamper")
    assert customer.in_reply_to_id == "x:1275653067283759104"
    brand_reply = posts["1275653067283759104"]
    assert brand_reply.is_brand and brand_reply.kind == "reply"
    assert brand_reply.in_reply_to_id == "x:1274086728471461889"
    assert posts["1275882613572583424"].kind == "post"  # the brand continuing its own thread
    assert posts["1275763727908798470"].kind == "mention"


def test_x_normalize_search_skips_retweets_and_keeps_keyword_hits(collector: XCollector) -> None:
    raw = body("search_recent_replies.json")
    posts = collector.normalize(raw, target("keywords", "1", "nobody"))
    retweets = [
        t
        for t in raw["data"]
        if any(r["type"] == "retweeted" for r in t.get("referenced_tweets", []))
    ]
    assert len(posts) == len(raw["data"]) - len(retweets) == 3
    assert {p.kind for p in posts} == {"keyword"}
    reply = next(p for p in posts if p.native_id == "1275840892281249793")
    assert reply.in_reply_to_id == "x:1275781448855891968"


def test_x_normalize_quote_tweets_keep_conversation(collector: XCollector) -> None:
    raw = body("quote_tweets_with_conversation_id.json")
    posts = collector.normalize(raw, target("mentions", "1", "nobody"))
    assert posts and all(p.conversation_id == f"x:{p.raw['conversation_id']}" for p in posts)
    handles = {u["id"]: u["username"] for u in raw["includes"]["users"]}
    assert all(p.author_handle == handles[p.author_id] for p in posts)


@pytest.mark.parametrize(
    "page",
    [
        {"data": {"id": "1"}},
        {"data": [{"id": 1, "text": "x"}]},
        {"data": [1, 2]},
        {"foo": "bar"},
        {"data": [{"id": "1"}]},
        {"data": [], "meta": []},
    ],
    ids=["data-object", "int-id", "ints", "no-data-no-meta", "no-text", "meta-list"],
)
def test_x_validate_page_refuses_malformed_shapes(page: Any) -> None:
    with pytest.raises(MalformedResponse):
        _validate_page(page)


def test_x_an_answer_that_is_no_object_is_malformed() -> None:
    # checked as tweepy hands the answer over, before any validation of its shape
    with pytest.raises(MalformedResponse, match="expected a JSON object, got list"):
        _translate_errors(lambda: [], "http://127.0.0.1:9", "X_BEARER_TOKEN")


def test_x_validate_page_accepts_recorded_pages() -> None:
    for name in (
        "users_tweets_with_fields.json",
        "users_mentions_with_fields.json",
        "search_recent_replies.json",
        "search_conversation_with_includes.json",
    ):
        page = body(name)
        assert _validate_page(page) is page and page["meta"]["result_count"] > 0
