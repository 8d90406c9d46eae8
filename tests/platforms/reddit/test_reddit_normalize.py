"""normalize() of the Reddit collector on recorded responses, and the walk's cursor arithmetic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Cursor, StreamKey
from monitor.platforms.base import MalformedResponse, Target
from monitor.platforms.reddit.collector import RedditCollector
from monitor.platforms.reddit.normalize import _validate_listing
from monitor.platforms.reddit.walk import Mark, Walk

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "reddit"
LISTINGS = (
    "redditor_submissions_new.json",
    "redditor_comments_new.json",
    "inbox_submission_replies.json",
    "subreddit_comments.json",
    "info_comment.json",
)


def body(name: str) -> dict[str, Any]:
    envelope = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    result: dict[str, Any] = envelope["response"]["body"]
    return result


def target(stream: str, handle: str, account_id: str = "t2_brand") -> Target:
    return Target(
        key=StreamKey("brand", "reddit", stream),
        stream=stream,
        handle=handle,
        account_id=account_id,
    )


@pytest.fixture(scope="module")
def collector() -> RedditCollector:
    return RedditCollector(
        client_id="unused", client_secret="unused", api_base="http://127.0.0.1:9"
    )


def test_reddit_normalize_submissions_are_the_brands_posts(collector: RedditCollector) -> None:
    raw = body("redditor_submissions_new.json")
    posts = collector.normalize(raw, target("posts", "spez", "t2_1w72"))
    assert [p.native_id for p in posts] == [c["data"]["name"] for c in raw["data"]["children"]]
    first = posts[0]
    assert first.id == "reddit:t3_434h6c"
    assert (first.kind, first.is_brand, first.author_handle) == ("post", True, "spez")
    assert first.author_id == "t2_1w72"  # 2016 things carry no author_fullname: the brand's id
    assert first.created_at == "2016-01-28T18:05:43Z"
    assert first.text.startswith("Reddit in 2016\n\nHi All,")
    assert first.url == "https://www.reddit.com/r/announcements/comments/434h6c/reddit_in_2016/"
    assert first.metrics == {"likes": 2079, "replies": 5771, "reposts": 0, "quotes": 0}
    assert first.in_reply_to_id is None and first.conversation_id == first.id
    assert first.raw == raw["data"]["children"][0]["data"]
    assert {p.kind for p in posts} == {"post"} and all(p.lang is None for p in posts)


def test_reddit_normalize_brand_comments_are_replies_linked_to_parents(
    collector: RedditCollector,
) -> None:
    raw = body("redditor_comments_new.json")
    posts = {p.native_id: p for p in collector.normalize(raw, target("posts", "spez"))}
    assert len(posts) == 100 and all(p.is_brand for p in posts.values())
    reply = posts["t1_d0iaye9"]
    assert reply.kind == "reply"
    assert reply.in_reply_to_id == "reddit:t1_d0hkqti"  # the parent's fullname is its store id
    assert reply.conversation_id == "reddit:t3_484169"
    assert reply.created_at == "2016-02-29T18:19:13Z"
    assert reply.url == "https://www.reddit.com/r/ModSupport/comments/484169/_/d0iaye9/"
    assert reply.metrics == {"likes": 10, "replies": 0, "reposts": 0, "quotes": 0}
    # a top-level comment under the brand's own submission is the brand talking, not a reply
    own = posts["t1_cx73zsc"]
    assert (own.kind, own.in_reply_to_id) == ("post", "reddit:t3_3tlcil")
    kinds = [p.kind for p in posts.values()]
    assert kinds.count("post") == 1 and kinds.count("reply") == 99


def test_reddit_normalize_inbox_items_are_mentions(collector: RedditCollector) -> None:
    raw = body("inbox_submission_replies.json")
    posts = collector.normalize(raw, target("mentions", "<USERNAME>"))
    assert len(posts) == 64 and {p.kind for p in posts} == {"mention"}
    assert not any(p.is_brand for p in posts)
    first = posts[0]
    assert first.id == "reddit:t1_m30xcs6"
    assert (first.author_handle, first.author_id) == ("AutoModerator", "t2_6l4z3")
    assert first.in_reply_to_id == "reddit:t3_1hirfbl"
    assert first.conversation_id == "reddit:t3_1hirfbl"  # the inbox has no link_id: from context
    assert (
        first.url == "https://www.reddit.com/r/JeffArcuri/comments/1hirfbl/deleted_by_user/m30xcs6/"
    )
    assert first.created_at == "2024-12-20T19:20:08Z"


def test_reddit_normalize_keyword_stream_tells_mentions_from_hits(
    collector: RedditCollector,
) -> None:
    raw = body("subreddit_comments.json")
    posts = collector.normalize(raw, target("keywords", "nobody_here"))
    assert len(posts) == 100 and {p.kind for p in posts} == {"keyword"}
    author = posts[0].author_handle
    as_brand = collector.normalize(raw, target("keywords", author))
    assert {p.kind for p in as_brand if p.is_brand} <= {"post", "reply"}
    assert any(p.is_brand for p in as_brand)

    child = json.loads(json.dumps(raw["data"]["children"][0]))
    child["data"]["body"] = "has anyone asked /u/Nobody_Here about this?"
    mentioned = {"kind": "Listing", "data": {"children": [child]}}
    (post,) = collector.normalize(mentioned, target("keywords", "nobody_here"))
    assert post.kind == "mention"
    child["data"]["body"] = "u/nobody_here_too is someone else"
    (post,) = collector.normalize(mentioned, target("keywords", "nobody_here"))
    assert post.kind == "keyword"


def test_reddit_normalize_info_comment_and_skips_messages(collector: RedditCollector) -> None:
    raw = body("info_comment.json")
    (post,) = collector.normalize(raw, target("posts", "bboe"))
    assert (post.id, post.kind, post.in_reply_to_id) == (
        "reddit:t1_d81vwef",
        "reply",
        "reddit:t3_54hhwl",
    )
    message = {"kind": "t4", "data": {"name": "t4_x", "created_utc": 1.0, "body": "hi"}}
    raw = {**raw, "data": {**raw["data"], "children": [message, *raw["data"]["children"]]}}
    assert [p.native_id for p in collector.normalize(raw, target("mentions", "bboe"))] == [
        "t1_d81vwef"
    ]


def test_reddit_validate_listing_accepts_recorded_pages() -> None:
    for name in LISTINGS:
        page = body(name)
        assert _validate_listing(page) is page


@pytest.mark.parametrize(
    "page",
    [
        [],
        {"kind": "t2", "data": {}},
        {"kind": "Listing"},
        {"kind": "Listing", "data": {"children": {}}},
        {"kind": "Listing", "data": {"children": [], "after": 5}},
        {"kind": "Listing", "data": {"children": [1]}},
        {"kind": "Listing", "data": {"children": [{"kind": "t1", "data": {"name": "t1_a"}}]}},
        {
            "kind": "Listing",
            "data": {"children": [{"kind": "t3", "data": {"name": "t3_a", "created_utc": 1}}]},
        },
        {
            "kind": "Listing",
            "data": {
                "children": [
                    {"kind": "t1", "data": {"name": "t1_a", "created_utc": 1, "author": "x"}}
                ]
            },
        },
    ],
    ids=[
        "list",
        "not-listing",
        "no-data",
        "children-object",
        "after-int",
        "int-child",
        "no-created",
        "no-author",
        "no-body",
    ],  # fmt: skip
)
def test_reddit_validate_listing_refuses_malformed_shapes(page: Any) -> None:
    with pytest.raises(MalformedResponse):
        _validate_listing(page)


def _child(fullname: str, created: int) -> dict[str, Any]:
    return {"kind": fullname[:2], "data": {"name": fullname, "created_utc": float(created)}}


def test_reddit_mark_orders_by_time_then_base36_id() -> None:
    stop = Mark(1000, "t1_n00010")
    assert Mark.parse(stop.encode()) == stop and stop.encode() == "1000:t1_n00010"
    assert Mark.parse(None) is None and Mark.parse("garbage") is None
    assert Mark(999, "t3_zzzz").covered_by(stop)
    assert not Mark(1001, "t1_a").covered_by(stop)
    assert Mark(1000, "t1_n0000z").covered_by(stop) and Mark(1000, "t1_n00010").covered_by(stop)
    assert not Mark(1000, "t1_n00011").covered_by(stop)
    assert not Mark(1000, "t3_0").covered_by(stop)  # same second, other kind: kept
    assert not Mark(500, "t3_0").covered_by(stop, overlap=600)  # search overlap re-reads
    assert Mark(1001, "t1_a").newer(stop) == Mark(1001, "t1_a")


def test_reddit_walk_stops_at_the_stored_position_and_resumes() -> None:
    key = target("mentions", "acme")
    walk = Walk.start(key, Cursor(position="1000:t1_b"))
    page = [_child("t1_e", 1300), _child("t1_d", 1200)]
    assert walk.take(page) == page and not walk.done
    pending = walk.pending("t1_d")
    resumed = Walk.start(key, Cursor(position="1000:t1_b", pending=pending))
    assert (resumed.after, resumed.newest, resumed.seen) == ("t1_d", Mark(1300, "t1_e"), 2)
    kept = resumed.take([_child("t1_c", 1100), _child("t1_b", 1000), _child("t1_a", 900)])
    assert [c["data"]["name"] for c in kept] == ["t1_c"] and resumed.done
    assert resumed.position() == "1300:t1_e"
    idle = Walk.start(key, Cursor(position="1000:t1_b"))
    assert idle.take([_child("t1_b", 1000)]) == [] and idle.position() == "1000:t1_b"


def test_reddit_walk_backfill_keeps_the_window_only() -> None:
    since, until = datetime.fromtimestamp(1000, UTC), datetime.fromtimestamp(2000, UTC)
    window = Target(
        key=StreamKey("brand", "reddit", "backfill-posts"),
        stream="posts",
        handle="acme",
        account_id="t2_a",
        since=since,
        until=until,
    )
    walk = Walk.start(window, Cursor(position="5000:t1_z"))  # a backfill ignores the position
    page = [_child("t1_d", 2500), _child("t1_c", 2000), _child("t1_b", 1500), _child("t1_a", 999)]
    assert [c["data"]["name"] for c in walk.take(page)] == ["t1_b"]
    assert walk.done and walk.position() is None


def test_reddit_backfill_reach_names_the_1000_item_limit() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    (note,) = RedditCollector.backfill_reach(now, now)
    assert "1,000 items" in note


def test_reddit_keyword_query_is_lucene_or() -> None:
    collector = RedditCollector(client_id="x", client_secret="y", api_base="http://127.0.0.1:9")
    assert collector.keyword_query(["acme", "rocket skates"]) == 'acme OR "rocket skates"'
    collector.close()
