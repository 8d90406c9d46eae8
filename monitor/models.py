"""Plain records that flow between the steps: Post, Cursor, RunResult, StreamKey, Alert, and
those the alert rules and the digest both read (MentionRow, the REFUSED reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["post", "reply", "mention", "keyword"]
KINDS: tuple[Kind, ...] = ("post", "reply", "mention", "keyword")
Stream = Literal["posts", "mentions", "keywords"]  # what a collector fetches of a brand account
STREAMS: tuple[Stream, ...] = ("posts", "mentions", "keywords")
Outcome = Literal["ok", "failed", "deferred", "auth_failed", "skipped", "interrupted"]
ACCOUNT_STREAM = "account"  # the stream a run that failed before any stream is recorded under
"""A run's end. "interrupted": touchpoint stopped or reloaded mid-walk (neither a success nor a
failure of the stream; it resumes from its cursor)."""
REFUSED = "the platform refused the credentials"
"""Why a stream is unwell when its run ended auth_failed: the alert rules and the digest say it."""


def iso(when: datetime) -> str:
    """Format a datetime as the store's canonical UTC text: ``2026-11-23T10:15:00Z``."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: every time in touchpoint is timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 text (``Z`` or an offset) into an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class StreamKey:
    """One collected stream: a brand's posts, mentions or keyword search on one platform."""

    brand: str
    platform: str
    stream: str
    query: str = ""

    def __str__(self) -> str:
        tail = f" {self.query!r}" if self.query else ""
        return f"{self.brand}/{self.platform}/{self.stream}{tail}"


@dataclass(frozen=True)
class Post:
    """A collected item, normalized from any platform into one shape (the ``posts`` table)."""

    platform: str
    native_id: str
    brand: str
    author_id: str
    author_handle: str
    is_brand: bool
    kind: Kind
    text: str
    url: str
    created_at: str
    lang: str | None = None
    in_reply_to_id: str | None = None
    conversation_id: str | None = None
    metrics: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The store key: ``<platform>:<native id>``."""
        return f"{self.platform}:{self.native_id}"


@dataclass(frozen=True)
class Cursor:
    """Where a stream stands: ``position``, the newest id stored; ``pending``, a walk under way;
    ``updated_at``, when its last page was stored, and ``account``, the id of the brand account
    it was walked for (both as read from the store; not compared)."""

    position: str | None = None
    pending: dict[str, Any] | None = None
    updated_at: datetime | None = field(default=None, compare=False)
    account: str | None = field(default=None, compare=False)


@dataclass
class RunResult:
    """What one run of one stream did."""

    key: StreamKey
    started_at: datetime
    finished_at: datetime | None = None
    outcome: Outcome = "ok"
    items_new: int = 0
    items_updated: int = 0
    pages: int = 0
    error: str | None = None
    retry_at: datetime | None = None
    gap: str | None = None  # why items may be missing (the platform's reach), though it went ok


@dataclass(frozen=True)
class Alert:
    """An alert a rule raised: one unanswered mention, one channel's self-promotion, one stream,
    one gap, one problem of touchpoint itself."""

    fingerprint: str
    kind: str  # one of alerts.rules.KINDS
    brand: str
    platform: str
    severity: str  # "warning" | "critical"
    title: str
    subject: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    held: bool = False  # raised, but held back (its stream is down): neither sent nor resolved


@dataclass(frozen=True)
class MentionRow:
    """A mention of a brand and when the brand first answered it (None: not yet)."""

    id: str
    brand: str
    platform: str
    created_at: datetime
    answered_at: datetime | None
    text: str
    url: str
    author: str
