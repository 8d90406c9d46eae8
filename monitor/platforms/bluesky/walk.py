"""Bluesky's newest-first walk: the mark of the newest item stored, where a walk ends and the
gap it leaves."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.models import Cursor, parse_iso
from monitor.platforms.base import (
    Step,
    Target,
)
from monitor.platforms.bluesky.normalize import (
    PIN_REASON,
    REPOST_REASON,
    _sort_time,
)

logger = logging.getLogger(__name__)


SEARCH_DEPTH = 10_000  # palomar pages at most 10,000 hits deep into one query


@dataclass(frozen=True, order=True)
class Mark:
    """A position in a newest-first stream: an item's sort time and its at:// uri."""

    at: datetime
    uri: str

    def encode(self) -> str:
        """``<UTC time with microseconds> <uri>`` (uris hold no spaces)."""
        return f"{self.at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z {self.uri}"

    @classmethod
    def decode(cls, text: str | None) -> Mark | None:
        """The mark of :meth:`encode`'s text; None for no text or text that is not a mark."""
        if not text:
            return None
        when, _, uri = text.partition(" ")
        try:
            return cls(parse_iso(when), uri)
        except ValueError:
            logger.warning("bluesky: ignoring a stored position that is not a mark: %r", text)
            return None


def _mark(stream: str, item: Mapping[str, Any]) -> Mark | None:
    """Where an item sits in its newest-first stream; None for a pin (shown out of order)."""
    if stream == "mentions":
        return Mark(parse_iso(str(item["indexedAt"])), str(item["uri"]))
    view = item.get("post", item)
    reason = item.get("reason") or {}
    if reason.get("$type") == PIN_REASON:
        return None
    if reason.get("$type") == REPOST_REASON and isinstance(reason.get("indexedAt"), str):
        return Mark(parse_iso(reason["indexedAt"]), str(reason.get("uri") or view["uri"]))
    return Mark(_sort_time(view.get("record") or {}, str(view["indexedAt"])), str(view["uri"]))


def _walk_ends(marks: Sequence[Mark], mark: Mark | None, since: datetime | None) -> bool:
    """Whether this page reaches what is stored (incremental) or the window's start (backfill)."""
    if since is not None:
        return any(m.at < since for m in marks)
    if mark is None:
        return False
    return any(m.at < mark.at or m.uri == mark.uri for m in marks)


def _cut_short(seen: int, hits_total: Any) -> bool:
    """Whether a search that ended after ``seen`` hits left hits unlisted: fewer than its
    ``hitsTotal`` (when it says), else as deep as palomar pages. A search that simply ran out
    (a quiet keyword, or a backfill's ``since`` reached) is no gap."""
    if isinstance(hits_total, int) and not isinstance(hits_total, bool):
        return hits_total > seen
    return seen >= SEARCH_DEPTH


def _gap(target: Target, mark: Mark | None) -> str | None:
    """Why posts may be missing when a listing ended, on a page of items, before the walk
    reached its end (an empty last page is no evidence either way), or None.

    Feeds and notifications list back to the start, so only a search ends early: palomar pages
    :data:`SEARCH_DEPTH` hits deep at most (the caller checks that it did, :func:`_cut_short`)."""
    if target.stream != "keywords":
        return None
    if target.is_backfill:
        logger.warning(
            "%s: the search ended before the start of the window; Bluesky search pages at most "
            "%s hits deep, older hits cannot be fetched",
            target.key,
            f"{SEARCH_DEPTH:,}",
        )
        return None  # the backfill command reports its reach itself
    if mark is None:
        return None  # the stream's first walk: it never claimed to reach further
    return (
        f"the search ended before reaching the newest hit stored ({mark.uri}); Bluesky search "
        f"pages at most {SEARCH_DEPTH:,} hits deep, so what came between may be missing"
    )


def _keeper(target: Target, mark: Mark | None) -> Callable[[Mark | None], bool]:
    """Which items of a page to store: newer than the mark, or inside the backfill window."""
    since, until = target.since, target.until

    def keep(item: Mark | None) -> bool:
        if item is None:
            return True  # a pin: normalize drops it
        if since is not None:
            return item.at >= since and (until is None or item.at < until)
        return mark is None or item.at > mark.at or (item.at == mark.at and item.uri != mark.uri)

    return keep


@dataclass(frozen=True)
class _Walk:
    """A walk down a stream: the stored mark, the newest item seen, the API cursor to go on at."""

    mark: Mark | None
    newest: Mark | None
    next_cursor: str | None  # None: the walk is complete
    seen: int = 0  # items listed by the walk so far

    def step(self, raw: dict[str, Any], target: Target, committed: Cursor, gap: str | None) -> Step:
        """The page ``raw`` with what to commit: the walk while it goes on, then the new mark."""
        if self.next_cursor is None:
            position = self.newest or self.mark
            end = position.encode() if position else committed.position
            return Step(raw=raw, position=end, gap=gap)
        walk: dict[str, Any] = {"cursor": self.next_cursor, "seen": self.seen}
        if not target.is_backfill:
            walk["mark"] = self.mark.encode() if self.mark else None
            walk["newest"] = self.newest.encode() if self.newest else None
        return Step(raw=raw, pending=walk, gap=gap)


def _xrpc_time(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"
