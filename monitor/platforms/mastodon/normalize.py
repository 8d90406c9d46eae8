"""Mastodon's statuses -> Post records (pure), and the shape checks of its answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from monitor.models import Kind, Post, iso, parse_iso
from monitor.platforms.base import (
    MalformedResponse,
    Target,
    kind_of,
)

_ID = re.compile(r"[0-9A-Za-z]{1,64}")  # a status or notification id


class _TextExtractor(HTMLParser):
    """Plain text of a status's HTML content: paragraphs become blank lines, <br> a newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._paragraphs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p":
            if self._paragraphs:
                self.parts.append("\n\n")
            self._paragraphs += 1

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """The text a reader sees in a status's ``content`` (entities decoded, tags dropped)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def normalize_status(status: Mapping[str, Any], target: Target) -> Post | None:
    """Normalize one Status entity; None for a reblog (not the author's own words)."""
    if status.get("reblog"):
        return None
    status_id = str(status["id"])
    account = status.get("account") or {}
    author_id = str(account.get("id", ""))
    is_brand = author_id == target.account_id
    try:
        created = parse_iso(str(status["created_at"]))
    except (KeyError, ValueError):
        raise MalformedResponse(f"status {status_id} has no valid created_at") from None
    text = html_to_text(str(status.get("content") or ""))
    spoiler = str(status.get("spoiler_text") or "")
    reply_to = status.get("in_reply_to_id")
    return Post(
        platform="mastodon",
        native_id=status_id,
        brand=target.key.brand,
        author_id=author_id,
        author_handle=str(account.get("acct") or account.get("username") or ""),
        is_brand=is_brand,
        kind=_kind(status, is_brand=is_brand, target=target),
        text=f"{spoiler}\n\n{text}" if spoiler else text,
        url=str(status.get("url") or status.get("uri") or ""),
        created_at=iso(created),
        lang=status.get("language"),
        in_reply_to_id=f"mastodon:{reply_to}" if reply_to else None,
        metrics={
            "likes": _count(status, "favourites_count"),
            "replies": _count(status, "replies_count"),
            "reposts": _count(status, "reblogs_count"),
            "quotes": _count(status, "quotes_count"),
        },
        raw=dict(status),
    )


def _kind(status: Mapping[str, Any], *, is_brand: bool, target: Target) -> Kind:
    """Mastodon's tells: a status is addressed to the brand when it replies to it or mentions
    its account; only the mentions stream makes a mention by itself."""
    reply_to_account = status.get("in_reply_to_account_id")
    mentions = status.get("mentions") or []
    named = any(isinstance(m, dict) and m.get("id") == target.account_id for m in mentions)
    return kind_of(
        target,
        is_brand=is_brand,
        answers_someone=bool(status.get("in_reply_to_id"))
        and reply_to_account not in (None, target.account_id),
        addressed=reply_to_account == target.account_id or named,
        searched=target.stream != "mentions",
    )


def _count(status: Mapping[str, Any], name: str) -> int:
    value = status.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _in_window(status: Mapping[str, Any], target: Target) -> bool:
    if target.since is None and target.until is None:
        return True
    try:
        created = parse_iso(str(status["created_at"]))
    except (KeyError, ValueError):
        raise MalformedResponse(f"status {status.get('id')} has no valid created_at") from None
    after_start = target.since is None or created >= target.since
    return after_start and (target.until is None or created < target.until)


def _validate_status(status: Any) -> None:
    ok = isinstance(status, dict) and isinstance(status.get("id"), str)
    if not ok or not _ID.fullmatch(status["id"]):
        raise MalformedResponse(f"not a Status entity: {str(status)[:80]}")
    account = status.get("account")
    if not isinstance(account, dict) or not isinstance(account.get("id"), str):
        raise MalformedResponse(f"status {status['id']} has no account")
    if not isinstance(status.get("content"), str):
        raise MalformedResponse(f"status {status['id']} has no content")
    _validate_time(status, "status")


def _validate_time(entity: Mapping[str, Any], what: str) -> None:
    try:
        parse_iso(str(entity["created_at"]))
    except (KeyError, ValueError):
        raise MalformedResponse(f"{what} {entity.get('id')} has no valid created_at") from None


def _validate_notification(notification: Any) -> None:
    ok = isinstance(notification, dict) and isinstance(notification.get("id"), str)
    if not ok or not _ID.fullmatch(notification["id"]):
        raise MalformedResponse(f"not a Notification entity: {str(notification)[:80]}")
    if not isinstance(notification.get("type"), str):
        raise MalformedResponse(f"notification {notification['id']} has no type")
    _validate_time(notification, "notification")
    if notification.get("status") is not None:
        _validate_status(notification["status"])


def _validate_items(body: Any, key: str) -> list[dict[str, Any]]:
    """Check a statuses or notifications page before anything of it is stored; return it."""
    if not isinstance(body, list):
        raise MalformedResponse(f"expected a JSON array of {key}, got {type(body).__name__}")
    check = _validate_notification if key == "notifications" else _validate_status
    for item in body:
        check(item)
    return body


def _validate_search(body: Any) -> dict[str, Any]:
    """Check a v2 search answer, and return it; an empty ``statuses`` (no ElasticSearch) is not
    an error."""
    if not isinstance(body, dict) or not isinstance(body.get("statuses"), list):
        raise MalformedResponse("search answer has no statuses array")
    _validate_items(body["statuses"], "statuses")
    return body


def _account(body: Any) -> dict[str, Any]:
    """Check an Account entity, and return it."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise MalformedResponse("the answer is not an Account")
    return body
