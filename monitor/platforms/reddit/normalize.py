"""Reddit's listings -> Post records (pure), and the shape checks of its things."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.models import Kind, Post, iso
from monitor.platforms.base import (
    MalformedResponse,
    Target,
    kind_of,
    next_cursor,
)

logger = logging.getLogger(__name__)


REDDIT_ORIGIN = "https://www.reddit.com"


INBOX_TYPES = frozenset({"username_mention", "comment_reply", "post_reply"})


THING_KINDS = frozenset({"t1", "t3"})


_LINK_IN_PATH = re.compile(r"/comments/([a-z0-9]+)/")


def normalize_thing(kind: str, data: Mapping[str, Any], target: Target) -> Post:
    """Normalize one t1 comment or t3 submission (from any listing, the inbox included)."""
    author = str(data.get("author") or "[deleted]")
    is_brand = author.lower() == target.handle.lower()
    parent = data.get("parent_id") if kind == "t1" else None
    link = _link_fullname(kind, data)
    return Post(
        platform="reddit",
        native_id=_fullname(kind, data),
        brand=target.key.brand,
        author_id=str(data.get("author_fullname") or (target.account_id if is_brand else "")),
        author_handle=author,
        is_brand=is_brand,
        kind=_kind(kind, data, is_brand=is_brand, target=target),
        text=_text(kind, data),
        url=_url(kind, data),
        created_at=iso(datetime.fromtimestamp(float(data["created_utc"]), UTC)),
        lang=None,
        in_reply_to_id=f"reddit:{parent}" if isinstance(parent, str) and parent else None,
        conversation_id=f"reddit:{link}" if link else None,
        metrics=_metrics(kind, data),
        raw=dict(data),
    )


def _kind(kind: str, data: Mapping[str, Any], *, is_brand: bool, target: Target) -> Kind:
    handle = target.handle.lower()
    parent = str(data.get("parent_id") or "")
    on_brand_post = parent.startswith("t3_") and str(data.get("link_author", "")).lower() == handle
    named = rf"(?<![\w/])/?u/{re.escape(target.handle)}(?![\w-])"
    return kind_of(
        target,
        is_brand=is_brand,
        # a comment on its own submission is the brand talking; under anyone else's item, a reply
        answers_someone=not (kind == "t3" or on_brand_post),
        addressed=data.get("type") in INBOX_TYPES
        or on_brand_post
        or re.search(named, _text(kind, data), re.I) is not None,
    )


def _fullname(kind: str, data: Mapping[str, Any]) -> str:
    name = data.get("name")
    return name if isinstance(name, str) and name else f"{kind}_{data['id']}"


def _text(kind: str, data: Mapping[str, Any]) -> str:
    if kind == "t1":
        return str(data.get("body") or "")
    title, body = str(data.get("title") or ""), str(data.get("selftext") or "")
    return f"{title}\n\n{body}" if body else title


def _link_fullname(kind: str, data: Mapping[str, Any]) -> str | None:
    """The submission a thing belongs to (the inbox leaves ``link_id`` out: use its context)."""
    if kind == "t3":
        return _fullname(kind, data)
    link = data.get("link_id")
    if isinstance(link, str) and link:
        return link
    match = _LINK_IN_PATH.search(str(data.get("context") or data.get("permalink") or ""))
    if match:
        return f"t3_{match.group(1)}"
    parent = str(data.get("parent_id") or "")
    return parent if parent.startswith("t3_") else None


def _url(kind: str, data: Mapping[str, Any]) -> str:
    path = data.get("permalink") or str(data.get("context") or "").partition("?")[0]
    if isinstance(path, str) and path.startswith("/"):
        return REDDIT_ORIGIN + path
    link = (_link_fullname(kind, data) or "t3_").partition("_")[2]
    if kind == "t3":
        return f"{REDDIT_ORIGIN}/comments/{link}/"
    return f"{REDDIT_ORIGIN}/r/{data.get('subreddit', 'all')}/comments/{link}/_/{data['id']}/"


def _metrics(kind: str, data: Mapping[str, Any]) -> dict[str, int]:
    replies = data.get("replies")
    if kind == "t3":
        reply_count = _int(data.get("num_comments"))
    elif isinstance(replies, dict):
        reply_count = len(replies.get("data", {}).get("children", []))
    else:
        reply_count = 0
    return {
        "likes": _int(data.get("score")),
        "replies": reply_count,
        "reposts": _int(data.get("num_crossposts")) if kind == "t3" else 0,
        "quotes": 0,
    }


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _validate_listing(body: Any) -> dict[str, Any]:
    """Check a page is a Listing of things before anything of it is stored; return it."""
    if not isinstance(body, dict) or body.get("kind") != "Listing":
        got = body.get("kind") if isinstance(body, dict) else type(body).__name__
        raise MalformedResponse(f"expected a Listing, got {str(got)[:40]}")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise MalformedResponse("the Listing has no children list")
    after = data.get("after")
    if after is not None and not isinstance(after, str):
        raise MalformedResponse("the Listing's after is not a fullname")
    for child in data["children"]:
        _validate_thing(child)
    return body


def _validate_thing(child: Any) -> None:
    data = child.get("data") if isinstance(child, dict) else None
    kind = child.get("kind") if isinstance(child, dict) else None
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise MalformedResponse("a Listing child is not a thing")
    created = data.get("created_utc")
    named = isinstance(data.get("name"), str) or isinstance(data.get("id"), str)
    if not named or isinstance(created, bool) or not isinstance(created, int | float):
        raise MalformedResponse(f"a {kind} has no fullname or created_utc")
    if kind in THING_KINDS and not isinstance(data.get("author"), str):
        raise MalformedResponse(f"{_fullname(kind, data)} has no author")
    text_key = "body" if kind == "t1" else "title"
    if kind in THING_KINDS and not isinstance(data.get(text_key), str):
        raise MalformedResponse(f"{_fullname(kind, data)} has no {text_key}")


def _next_after(after: str | None, sent: str | None, children: Sequence[Any]) -> str | None:
    """The listing's next ``after``, or None where its walk ends: at the end, on the ``after``
    it was sent, and (as praw's ListingGenerator) on an empty page, all of which would otherwise
    be walked again and again."""
    if after and not children:
        logger.warning(
            "reddit: the listing answered an empty page with a next one; ending the walk"
        )
        return None
    return next_cursor("reddit", after, sent)


def _with_children(body: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """The Listing with only the children a walk keeps."""
    return {**body, "data": {**body["data"], "children": children}}
