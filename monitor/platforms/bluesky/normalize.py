"""Bluesky's answers -> Post records (pure), and the shape checks of its feed pages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.models import Kind, Post, iso, parse_iso
from monitor.platforms.base import (
    MalformedResponse,
    Target,
    kind_of,
)

POST_TYPE = "app.bsky.feed.post"


MENTION_FACET = "app.bsky.richtext.facet#mention"


REPOST_REASON = "app.bsky.feed.defs#reasonRepost"


PIN_REASON = "app.bsky.feed.defs#reasonPin"


POST_REASONS = frozenset({"mention", "reply", "quote"})  # notifications that are someone's post


def normalize_feed_item(item: Mapping[str, Any], target: Target) -> Post | None:
    """A feedViewPost of the brand's author feed; None for a repost, a pin or another's post."""
    if _dig(item, "reason", "$type") in (REPOST_REASON, PIN_REASON):
        return None
    view = item["post"]
    if view["author"]["did"] != target.account_id:
        return None
    parent = _dig(item, "reply", "parent", "author", "did")
    parent_author = parent if isinstance(parent, str) else None
    return _post(view, target, parent_author=parent_author, metrics=_metrics(view), raw=item)


def normalize_notification(note: Mapping[str, Any], target: Target) -> Post | None:
    """A mention, reply or quote notification (someone's post addressed to the brand)."""
    record = note.get("record") or {}
    if note.get("reason") not in POST_REASONS or record.get("$type") != POST_TYPE:
        return None
    return _post(note, target, kind="mention", metrics={})  # notifications carry no counts


def normalize_post_view(view: Mapping[str, Any], target: Target) -> Post | None:
    """A postView of search results."""
    if (view.get("record") or {}).get("$type", POST_TYPE) != POST_TYPE:
        return None
    return _post(view, target, metrics=_metrics(view))


def _post(
    view: Mapping[str, Any],
    target: Target,
    *,
    metrics: dict[str, int],
    kind: Kind | None = None,
    parent_author: str | None = None,
    raw: Mapping[str, Any] | None = None,
) -> Post:
    """The Post of a view carrying ``uri``, ``author``, ``record`` and ``indexedAt``.

    ``raw`` is what is stored as received (the view itself unless given).
    """
    uri = str(view["uri"])
    record = view.get("record") or {}
    author = view["author"]
    did = str(author["did"])
    handle = str(author.get("handle") or "")
    is_brand = did == target.account_id
    parent, root = _reply_refs(record)
    if kind is None:
        parent_did = parent_author or _authority(parent)
        kind = _kind(record, target, is_brand=is_brand, parent=(parent, parent_did), root=root)
    langs = record.get("langs")
    return Post(
        platform="bluesky",
        native_id=uri,
        brand=target.key.brand,
        author_id=did,
        author_handle=handle,
        is_brand=is_brand,
        kind=kind,
        text=str(record.get("text", "")),
        url=f"https://bsky.app/profile/{handle or did}/post/{uri.rsplit('/', 1)[-1]}",
        created_at=iso(_created_at(record, view)),
        lang=langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None,
        in_reply_to_id=f"bluesky:{parent}" if parent else None,
        conversation_id=f"bluesky:{root or uri}",
        metrics=metrics,
        raw=dict(view if raw is None else raw),
    )


def _kind(
    record: Mapping[str, Any],
    target: Target,
    *,
    is_brand: bool,
    parent: tuple[str | None, str | None],
    root: str | None,
) -> Kind:
    """``parent`` is the (uri, author DID) a reply answers; the DID is None when unknown."""
    parent_uri, parent_did = parent
    return kind_of(
        target,
        is_brand=is_brand,
        # a reply to an author not known to be the brand counts as answering someone
        answers_someone=bool(parent_uri) and parent_did != target.account_id,
        addressed=target.account_id in (parent_did, _authority(root)) or _mentions(record, target),
    )


def _mentions(record: Mapping[str, Any], target: Target) -> bool:
    for facet in _list(record.get("facets")):
        for feature in _list(_dig(facet, "features")):
            if (
                _dig(feature, "$type") == MENTION_FACET
                and _dig(feature, "did") == target.account_id
            ):
                return True
    text = str(record.get("text", ""))
    return re.search(rf"@{re.escape(target.handle)}(?![\w.-])", text, re.IGNORECASE) is not None


def _reply_refs(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (parent uri, root uri) of a post record's ``reply``."""
    parent = _dig(record, "reply", "parent", "uri")
    root = _dig(record, "reply", "root", "uri")
    return (
        parent if isinstance(parent, str) and parent else None,
        root if isinstance(root, str) and root else None,
    )


def _dig(node: Any, *keys: str) -> Any:
    """``node[k1][k2]…``, or None where a step is missing or not an object. A record is what its
    author's client wrote: an odd part of it must not stop the page it is on."""
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _authority(uri: str | None) -> str | None:
    """The DID of an ``at://<did>/<collection>/<rkey>`` uri (None for anything else)."""
    if not uri or not uri.startswith("at://did:"):
        return None
    return uri[len("at://") :].split("/", 1)[0]


def _metrics(view: Mapping[str, Any]) -> dict[str, int]:
    return {
        "likes": _count(view.get("likeCount")),
        "replies": _count(view.get("replyCount")),
        "reposts": _count(view.get("repostCount")),
        "quotes": _count(view.get("quoteCount")),
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _created_at(record: Mapping[str, Any], view: Mapping[str, Any]) -> datetime:
    """The record's client-declared createdAt; the server's indexedAt when that is unusable."""
    indexed = parse_iso(str(view["indexedAt"]))
    try:
        return parse_iso(str(record["createdAt"]))
    except (KeyError, ValueError, OverflowError):
        return indexed


def _sort_time(record: Mapping[str, Any], indexed_at: str) -> datetime:
    """The AppView's sortAt: the earlier of createdAt and indexedAt."""
    indexed = parse_iso(indexed_at)
    try:
        return min(parse_iso(str(record["createdAt"])), indexed)
    except (KeyError, ValueError, OverflowError):
        return indexed


def _validate_page(body: dict[str, Any], field: str) -> dict[str, Any]:
    """Check a page has the lexicon's shape before anything of it is stored; return it."""
    items = body.get(field)
    if not isinstance(items, list):
        raise MalformedResponse(f"the answer has no {field} list")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise MalformedResponse("cursor is not a string")
    for item in items:
        view = item.get("post") if field == "feed" and isinstance(item, dict) else item
        if not _is_view(view) or (field == "notifications" and not _is_notification(item)):
            raise MalformedResponse(f"not a {field} item: {json.dumps(item)[:80]}")
    return body


def _is_view(view: Any) -> bool:
    if not isinstance(view, dict):
        return False
    author = view.get("author")
    ok = (
        isinstance(view.get("uri"), str)
        and bool(view["uri"])
        and isinstance(view.get("cid"), str)
        and isinstance(author, dict)
        and isinstance(author.get("did"), str)
        and isinstance(author.get("handle"), str)
        and isinstance(view.get("record"), dict)
        and isinstance(view.get("indexedAt"), str)
    )
    if not ok:
        return False
    try:
        parse_iso(view["indexedAt"])
    except ValueError:
        return False
    return True


def _is_notification(note: Any) -> bool:
    return isinstance(note.get("reason"), str) and isinstance(note.get("isRead"), bool)
