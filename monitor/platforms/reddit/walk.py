"""Reddit's newest-first listing walk down to the newest item stored (by created_utc and id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.models import Cursor
from monitor.platforms.base import (
    Target,
)
from monitor.platforms.reddit.normalize import (
    _fullname,
)

# Reddit's search index lags behind new submissions: a keyword walk overlaps the last one by this
# much, so that a late-indexed hit is still picked up (the overlap is re-stored, not duplicated).
SEARCH_OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True, order=True)
class Mark:
    """Where an item stands in a newest-first listing: its creation second and fullname."""

    created: int
    fullname: str

    @classmethod
    def of(cls, child: Mapping[str, Any]) -> Mark:
        """The mark of a validated listing child."""
        data = child["data"]
        return cls(int(float(data["created_utc"])), _fullname(str(child["kind"]), data))

    @classmethod
    def parse(cls, text: str | None) -> Mark | None:
        """Read a mark stored as ``<created>:<fullname>`` (None when absent or unreadable)."""
        created, sep, fullname = (text or "").partition(":")
        if not sep or not created.isdigit() or "_" not in fullname:
            return None
        return cls(int(created), fullname)

    def encode(self) -> str:
        """The stored form: ``<created>:<fullname>``, e.g. ``1763640000:t1_n00001x``."""
        return f"{self.created}:{self.fullname}"

    @property
    def number(self) -> int:
        """The base36 id as a number (ids of one kind grow with time)."""
        try:
            return int(self.fullname.partition("_")[2], 36)
        except ValueError:
            return -1

    def newer(self, other: Mark | None) -> Mark:
        """The newer of this mark and ``other``."""
        if other is None:
            return self
        return max(self, other, key=lambda m: (m.created, m.number))

    def covered_by(self, stop: Mark, overlap: int = 0) -> bool:
        """Whether an incremental walk that last stored ``stop`` already has this item."""
        if overlap:
            return self.created < stop.created - overlap
        if self.created != stop.created:
            return self.created < stop.created
        same_kind = self.fullname[:3] == stop.fullname[:3]
        return same_kind and self.number <= stop.number  # same second, other kind: keep it


@dataclass
class Walk:
    """One newest-first walk down a listing; ``pending`` resumes it after an interruption."""

    stop: Mark | None = None
    since: int | None = None
    until: int | None = None
    overlap: int = 0
    after: str | None = None
    newest: Mark | None = None
    seen: int = 0
    done: bool = field(default=False, compare=False)

    @classmethod
    def start(cls, target: Target, cursor: Cursor) -> Walk:
        """The walk for ``target``: resumed from ``cursor.pending`` or starting at the top."""
        pending = cursor.pending or {}
        overlap = int(SEARCH_OVERLAP.total_seconds()) if target.stream == "keywords" else 0
        return cls(
            stop=None if target.is_backfill else Mark.parse(cursor.position),
            since=_epoch(target.since),
            until=_epoch(target.until),
            overlap=overlap,
            after=pending.get("after") or None,
            newest=Mark.parse(pending.get("newest")),
            seen=int(pending.get("seen") or 0),
        )

    @property
    def is_backfill(self) -> bool:
        """True when walking a fixed time window."""
        return self.since is not None

    def take(self, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the children this walk collects; set ``done`` once it has gone far enough.

        A child already covered ends the walk after this page, but the rest of the page is still
        read: a page out of order (reliability plan #28) may hold newer children after it."""
        kept = []
        for child in children:
            mark = Mark.of(child)
            self.seen += 1
            if self._reached(mark):
                self.done = True
                continue
            if self.until is not None and mark.created >= self.until:
                continue  # backfill: newer than the window
            kept.append(child)
            self.newest = mark.newer(self.newest)
        return kept

    def _reached(self, mark: Mark) -> bool:
        if self.since is not None:
            return mark.created < self.since
        return self.stop is not None and mark.covered_by(self.stop, self.overlap)

    def pending(self, after: str) -> dict[str, Any]:
        """The state to resume from before requesting the page after ``after``."""
        newest = self.newest.encode() if self.newest else None
        return {"after": after, "newest": newest, "seen": self.seen}

    def position(self) -> str | None:
        """The cursor position once the walk is over (None for a backfill)."""
        if self.is_backfill:
            return None
        last = self.newest.newer(self.stop) if self.newest else self.stop
        return last.encode() if last else None


def _epoch(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())
