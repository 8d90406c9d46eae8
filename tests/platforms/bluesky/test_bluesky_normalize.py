"""normalize() of the Bluesky collector on recorded AppView answers: pure, no HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Post, StreamKey
from monitor.platforms.base import MalformedResponse, Target
from monitor.platforms.bluesky.collector import BlueskyCollector
from monitor.platforms.bluesky.normalize import _validate_page
from monitor.platforms.bluesky.walk import Mark, _walk_ends

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bluesky" / "appview_snapshots"


def body(name: str) -> Any:
    envelope = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return envelope["response"]["body"]


def target(stream: str, account_id: str, handle: str) -> Target:
    return Target(
        key=StreamKey("brand", "bluesky", stream),
        stream=stream,
        handle=handle,
        account_id=account_id,
    )


@pytest.fixture(scope="module")
def collector() -> Iterator[BlueskyCollector]:
    client = BlueskyCollector(identifier="unused.test", app_password="unused", api_base="http://x")
    yield client
    client.close()


def by_id(posts: list[Post]) -> dict[str, Post]:
    return {p.native_id: p for p in posts}


# --------------------------------------------------------------------------- author feed


def test_bluesky_normalize_author_feed_skips_reposts(collector: BlueskyCollector) -> None:
    feed = body("get_author_feed_feed.json")
    posts = collector.normalize({"feed": feed}, target("posts", "user(2)", "dan.test"))
    reposts = [i for i in feed if i.get("reason", {}).get("$type", "").endswith("#reasonRepost")]
    assert len(reposts) == 2 and len(posts) == len(feed) - len(reposts) == 2
    first = posts[0]
    assert first.id == "bluesky:record(9)"
    assert (first.kind, first.is_brand) == ("post", True)
    assert (first.author_id, first.author_handle) == ("user(2)", "dan.test")
    assert first.text == "@alice.bluesky.xyz is the best"
    assert first.created_at == "1970-01-01T00:00:00Z"
    assert first.metrics == {"likes": 0, "replies": 0, "reposts": 1, "quotes": 1}
    assert first.conversation_id == first.id and first.in_reply_to_id is None
    assert first.url == "https://bsky.app/profile/dan.test/post/record(9)"
    assert first.raw == feed[2]  # the feedViewPost as received
    assert posts[1].text == "dan here!"


def test_bluesky_normalize_brand_reply_links_its_parent(collector: BlueskyCollector) -> None:
    # the reposted items of the snapshot, as they stand in their author alice's own feed
    feed = body("get_author_feed_feed.json")
    own = [{k: v for k, v in item.items() if k != "reason"} for item in feed[:2]]
    posts = by_id(collector.normalize({"feed": own}, target("posts", "user(0)", "alice.test")))
    reply = posts["record(0)"]
    assert (reply.kind, reply.is_brand) == ("reply", True)  # answers bob (user(3))
    assert reply.in_reply_to_id == "bluesky:record(4)"
    assert reply.conversation_id == "bluesky:record(3)"
    assert reply.text == "thanks bob"
    thread_start = posts["record(3)"]
    assert thread_start.kind == "post" and thread_start.in_reply_to_id is None
    assert thread_start.created_at == "1970-01-01T00:00:00Z"  # microsecond precision parsed
    assert thread_start.metrics == {"likes": 3, "replies": 3, "reposts": 1, "quotes": 0}


def test_bluesky_normalize_reply_within_own_thread_is_a_post(collector: BlueskyCollector) -> None:
    item = {k: v for k, v in body("get_author_feed_feed.json")[0].items() if k != "reason"}
    item = copy.deepcopy(item)
    item["reply"]["parent"]["author"]["did"] = "user(0)"  # alice continuing her own thread
    (post,) = collector.normalize({"feed": [item]}, target("posts", "user(0)", "alice.test"))
    assert post.kind == "post" and post.in_reply_to_id == "bluesky:record(4)"


def test_bluesky_normalize_pins_and_other_authors_are_skipped(collector: BlueskyCollector) -> None:
    feed = body("get_author_feed_feed.json")
    pinned = {**feed[2], "reason": {"$type": "app.bsky.feed.defs#reasonPin"}}
    assert collector.normalize({"feed": [pinned]}, target("posts", "user(2)", "dan.test")) == []
    assert collector.normalize({"feed": feed[2:]}, target("posts", "user(9)", "x.test")) == []


def test_bluesky_normalize_odd_record_parts_do_not_stop_the_page(
    collector: BlueskyCollector,
) -> None:
    """Records are what their authors' clients wrote: a reply, facet or reason of the wrong
    shape is read as absent, and the item is still stored."""
    feed = copy.deepcopy(body("get_author_feed_feed.json")[2:])
    feed[0]["reason"] = "odd"
    feed[0]["reply"] = "odd"
    feed[1]["reply"] = {"parent": ["odd"]}
    feed[1]["post"]["record"]["reply"] = {"parent": "odd", "root": 7}
    feed[1]["post"]["record"]["facets"] = ["odd", {"features": "odd"}, {"features": [3]}]
    posts = collector.normalize({"feed": feed}, target("posts", "user(2)", "dan.test"))
    assert [p.kind for p in posts] == ["post", "post"]
    assert posts[1].in_reply_to_id is None and posts[1].conversation_id == posts[1].id
    raw = copy.deepcopy(body("list_notifications_reasons_mention_reply.json"))
    (note,) = [n for n in raw["notifications"] if n["uri"] == "record(9)"]
    (facet,) = note["record"]["facets"]
    note["record"]["facets"] = ["odd", {"features": ["odd", {"$type": 1}, *facet["features"]]}]
    view = {k: note[k] for k in ("uri", "cid", "author", "record", "indexedAt")}
    (found,) = collector.normalize({"posts": [view]}, target("keywords", "user(4)", "alice.test"))
    assert found.kind == "mention"  # by its mention facet, found past the odd ones


# --------------------------------------------------------------------------- notifications


def test_bluesky_normalize_mention_and_reply_notifications(collector: BlueskyCollector) -> None:
    raw = body("list_notifications_reasons_mention_reply.json")
    posts = by_id(collector.normalize(raw, target("mentions", "user(4)", "alice.test")))
    assert list(posts) == [n["uri"] for n in raw["notifications"]]
    assert {p.kind for p in posts.values()} == {"mention"}
    assert not any(p.is_brand for p in posts.values())
    reply = posts["record(0)"]
    assert (reply.author_id, reply.author_handle, reply.text) == ("user(0)", "carol.test", "indeed")
    assert reply.in_reply_to_id == "bluesky:record(3)"  # the post it answers (reasonSubject)
    assert reply.conversation_id == "bluesky:record(4)"
    assert posts["record(5)"].in_reply_to_id == "bluesky:record(4)"
    mention = posts["record(9)"]
    assert mention.in_reply_to_id is None and mention.conversation_id == "bluesky:record(9)"
    assert mention.url == "https://bsky.app/profile/dan.test/post/record(9)"
    assert all(p.metrics == {} for p in posts.values())  # notifications carry no counts
    assert mention.raw == raw["notifications"][3]


def test_bluesky_normalize_notifications_keep_only_posts(collector: BlueskyCollector) -> None:
    notifications = body("list_notifications_all_sorted.json")
    posts = collector.normalize(
        {"notifications": notifications}, target("mentions", "user(9)", "alice.test")
    )
    kept = [n["uri"] for n in notifications if n["reason"] in ("mention", "reply")]
    assert len(kept) == 4 < len(notifications)  # likes, reposts and follows dropped
    assert [p.native_id for p in posts] == kept


# --------------------------------------------------------------------------- search results


def test_bluesky_normalize_search_results_by_kind(collector: BlueskyCollector) -> None:
    views = [item["post"] for item in body("get_author_feed_feed.json")]

    def kinds(account_id: str, handle: str) -> dict[str, str]:
        page = {"posts": views}
        return {
            p.native_id: p.kind
            for p in collector.normalize(page, target("keywords", account_id, handle))
        }

    # record(9) "@alice.bluesky.xyz is the best" carries a #mention facet with alice's DID
    as_alice = kinds("user(0)", "alice.test")
    assert as_alice == {
        "record(0)": "reply",  # alice answering bob
        "record(3)": "post",
        "record(9)": "mention",  # by the facet
        "record(12)": "keyword",
    }
    assert kinds("user(4)", "alice.bluesky.xyz")["record(9)"] == "mention"  # by the text
    assert kinds("user(7)", "carol.test")["record(9)"] == "keyword"


def test_bluesky_normalize_search_reply_in_brand_thread_is_a_mention(
    collector: BlueskyCollector,
) -> None:
    view = copy.deepcopy(body("get_author_feed_feed.json")[0]["post"])
    brand = "did:plc:brandbrandbrandbrandbran"
    view["record"]["reply"]["root"]["uri"] = f"at://{brand}/app.bsky.feed.post/3k2a"
    (post,) = collector.normalize({"posts": [view]}, target("keywords", brand, "brand.test"))
    assert post.kind == "mention" and not post.is_brand


def test_bluesky_normalize_unusable_created_at_falls_back_to_indexed_at(
    collector: BlueskyCollector,
) -> None:
    view = copy.deepcopy(body("get_author_feed_feed.json")[3]["post"])
    view["record"]["createdAt"] = "yesterday"
    view["indexedAt"] = "2026-11-20T10:00:00.123Z"
    (post,) = collector.normalize({"posts": [view]}, target("keywords", "user(0)", "a.test"))
    assert post.created_at == "2026-11-20T10:00:00Z"


# --------------------------------------------------------------------------- page shapes


@pytest.mark.parametrize(
    ("page", "field"),
    [
        ({}, "feed"),
        ({"feed": {}}, "feed"),
        ({"feed": [{"post": {"uri": "at://x"}}]}, "feed"),
        ({"feed": [], "cursor": 5}, "feed"),
        ({"posts": [1]}, "posts"),
        ({"posts": [{"uri": "u", "cid": "c", "author": {"did": "d"}, "record": {}}]}, "posts"),
        ({"notifications": [{"reason": "mention"}]}, "notifications"),
    ],
    ids=["no-list", "list-object", "no-fields", "int-cursor", "ints", "no-handle", "bare-note"],
)
def test_bluesky_validate_page_refuses_malformed_shapes(page: Any, field: str) -> None:
    with pytest.raises(MalformedResponse):
        _validate_page(page, field)


def test_bluesky_validate_page_refuses_bad_indexed_at() -> None:
    view = copy.deepcopy(body("get_author_feed_feed.json")[3]["post"])
    view["indexedAt"] = "not a time"
    with pytest.raises(MalformedResponse):
        _validate_page({"posts": [view]}, "posts")


def test_bluesky_validate_page_accepts_recorded_pages() -> None:
    feed = body("get_author_feed_feed.json")
    assert len(_validate_page({"feed": feed}, "feed")["feed"]) == 4
    notes = body("list_notifications_reasons_mention_reply.json")
    assert _validate_page(notes, "notifications") is notes and len(notes["notifications"]) == 4
    everything = {"notifications": body("list_notifications_all_sorted.json")}
    assert len(_validate_page(everything, "notifications")["notifications"]) == 13
    views = [item["post"] for item in feed]
    assert len(_validate_page({"posts": views}, "posts")["posts"]) == 4


# --------------------------------------------------------------------------- marks and walks


def test_bluesky_mark_round_trips_and_orders() -> None:
    when = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
    mark = Mark(when, "at://did:plc:abc/app.bsky.feed.post/3k")
    assert Mark.decode(mark.encode()) == mark
    assert Mark.decode(None) is None and Mark.decode("garbage here") is None
    assert Mark(when - timedelta(seconds=1), "z") < mark


def test_bluesky_walk_ends_at_the_stored_mark_or_the_window_start() -> None:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    mark = Mark(at, "at://a/p/2")
    newer = [Mark(at + timedelta(seconds=5), "at://a/p/3")]
    assert not _walk_ends(newer, mark, None)
    assert _walk_ends([*newer, Mark(at, "at://a/p/2")], mark, None)  # the stored item itself
    assert _walk_ends([Mark(at - timedelta(seconds=1), "at://a/p/1")], mark, None)
    assert not _walk_ends([], mark, None)  # an empty filtered page says nothing: go on
    assert not _walk_ends(newer, None, None)  # first run: to the start
    assert _walk_ends(newer, None, at + timedelta(minutes=1))  # backfill: older than since
