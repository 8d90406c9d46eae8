"""The collector interface every platform implements, its typed errors and the retry helper.

A collector does two things: ``fetch`` (I/O only: pages of raw API answers, each with the cursor to
commit once that page is stored) and ``normalize`` (pure: one raw page -> Post records). It never
touches the store; the pipeline does.
"""

from __future__ import annotations

import logging
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, ClassVar, TypedDict, TypeVar

from monitor import clock
from monitor.config import CollectSettings, Settings
from monitor.models import STREAMS, Cursor, Kind, Post, Stream, StreamKey

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A reset further away than this is not believed: the stream is deferred this long at most.
MAX_DEFERRAL = timedelta(minutes=16)
DEFAULT_DEFERRAL = timedelta(seconds=60)
MAX_HEADER_SECONDS = 10**9  # a wait in a header beyond this (~31 years) is read as this much


class CollectorError(Exception):
    """A collection failed; the message is one line, safe to log and store (no secrets)."""


class RateLimited(CollectorError):
    """The platform refused for now; try again at ``retry_at`` (clamped, see
    :func:`clamp_retry_at`). ``reset`` is the time the platform named, when it named one: without
    it ``retry_at`` is a guess, never waited out within a run (see :func:`call_with_retries`)."""

    def __init__(self, message: str, *, retry_at: datetime, reset: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.reset = reset


class AuthError(CollectorError):
    """The credentials were refused (401/403): retrying will not help until they are fixed."""


class TransientError(CollectorError):
    """A failure worth retrying: 5xx, a timeout, a dropped connection."""


class MalformedResponse(TransientError):
    """The API answered, but not with what its wire format promises."""


def as_object(body: Any, what: str = "") -> dict[str, Any]:
    """``body`` when it is a JSON object; a :class:`MalformedResponse` (its message led by
    ``what``, when given) otherwise."""
    if not isinstance(body, dict):
        lead = f"{what}: " if what else ""
        raise MalformedResponse(f"{lead}expected a JSON object, got {type(body).__name__}")
    return body


def epoch_reset(value: str | None) -> datetime | None:
    """A reset header counting epoch seconds (X's ``x-rate-limit-reset``, Bluesky's
    ``RateLimit-Reset``) as a time; None when it is missing or not a finite number."""
    try:
        seconds = float((value or "").strip())
        return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else None
    except (ValueError, OverflowError, OSError):
        return None


def retry_after_reset(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``Retry-After`` as a time: delta-seconds or an HTTP date, both of which RFC 9110 allows;
    None when it is missing or neither."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return (now or clock.now()) + timedelta(seconds=min(seconds, MAX_HEADER_SECONDS))


# where a 429's reset header that is not a time is set aside, out of a client library's reach
UNREADABLE_RESET = "x-touchpoint-unreadable-reset"


def set_aside_reset(headers: MutableMapping[str, str], name: str) -> None:
    """Move a 429's reset header ``name`` that is not a time to :data:`UNREADABLE_RESET`, so
    that tweepy's or prawcore's ``int()`` of it does not fail the answer: the 429 is then a rate
    limit with the default wait, and :func:`default_wait_note` can quote it."""
    headers[UNREADABLE_RESET] = headers.pop(name)


def default_wait_note(name: str, raw: str | None) -> str:
    """What a 429's message adds when the platform named no reset time: that its header
    ``name`` was missing (``raw`` is None) or not a time, so the default wait applies."""
    why = f"no {name} header" if raw is None else f"its {name} {raw[:40]!r} is not a time"
    return f" ({why}; the default wait)"


def clamp_retry_at(reset: datetime | None, *, now: datetime | None = None) -> datetime:
    """Turn a platform's reset time into a sane one: at least 1 s, at most 16 min from now."""
    now = now or clock.now()
    if reset is None:
        return now + DEFAULT_DEFERRAL
    return min(max(reset, now + timedelta(seconds=1)), now + MAX_DEFERRAL)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one request."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_limit_wait: float = 10.0

    @classmethod
    def from_settings(cls, collect: CollectSettings) -> RetryPolicy:
        """The policy the ``[collect]`` settings ask for."""
        return cls(
            max_attempts=collect.max_attempts,
            max_rate_limit_wait=collect.max_rate_limit_wait_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given attempt (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class Connection(TypedDict):
    """What every collector takes from its ``[platforms.NAME]`` section and ``[collect]``."""

    api_base: str
    page_size: int
    timeout: tuple[float, float]
    policy: RetryPolicy


def connection(settings: Settings, platform: str) -> Connection:
    """The API base, page size, timeouts and retry policy the config sets for ``platform``."""
    section = settings.platforms[platform]
    return Connection(
        api_base=section.api_base,
        page_size=section.page_size,
        timeout=request_timeout(settings.collect),
        policy=RetryPolicy.from_settings(settings.collect),
    )


def next_cursor(platform: str, answered: object, sent: str | None) -> str | None:
    """The next page's cursor as the API answered it, or None where the walk ends: it gave
    none, or the one it was sent, which would fetch the same page again and again (praw's
    ListingGenerator stops there too)."""
    if not answered:
        return None
    if str(answered) == sent:
        logger.warning("%s: the API answered the cursor it was sent; ending the walk", platform)
        return None
    return str(answered)


def request_timeout(collect: CollectSettings) -> tuple[float, float]:
    """The (connect, read) timeout the ``[collect]`` settings ask for."""
    return (collect.connect_timeout_seconds, collect.read_timeout_seconds)


def call_with_retries(
    call: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``call``, retrying transient errors and short rate limits within ``policy``'s bounds;
    a rate limit whose reset the platform did not name is not waited out (a blind retry would
    only spend the limit further): it ends the call at once."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except RateLimited as exc:
            wait = (exc.retry_at - clock.now()).total_seconds()
            if exc.reset is None or wait > policy.max_rate_limit_wait:
                raise
            if attempt >= policy.max_attempts:
                raise
            logger.info("%s: rate limited, waiting %.1fs for the reset", what, max(wait, 0))
            sleep(max(wait, 0) + random.uniform(0, 0.5))
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise
            delay = policy.backoff(attempt)
            logger.info(
                "%s: %s (attempt %d of %d), retrying in %.1fs",
                what,
                exc,
                attempt,
                policy.max_attempts,
                delay,
            )
            sleep(delay)


@dataclass(frozen=True)
class Target:
    """What to collect: one stream of one brand account, incrementally or over a time window."""

    key: StreamKey
    stream: Stream
    handle: str
    account_id: str
    query: str = ""
    since: datetime | None = None
    until: datetime | None = None
    max_pages: int | None = None

    @property
    def is_backfill(self) -> bool:
        """True when collecting a fixed time window rather than what is new."""
        return self.since is not None


@dataclass(frozen=True)
class Page:
    """One raw API answer, and the cursor that holds once it is stored.

    ``gap`` (on a walk's last page) says why items between this walk and the one before may be
    missing: the platform's listing ended before the position stored. The run records it and one
    alert reports it."""

    raw: dict[str, Any]
    cursor: Cursor
    gap: str | None = None


@dataclass(frozen=True)
class Step:
    """One page of a walk as a platform reads it: the answer to store (``raw``), the walk so far
    while it goes on (``pending``, committed with the page; None: this page ends it), where the
    stream stands once it is stored (``position``) and why items may be missing (``gap``)."""

    raw: dict[str, Any]
    pending: dict[str, Any] | None = None
    position: str | None = None
    gap: str | None = None


def budget_spent(target: Target, pages: int) -> bool:
    """Whether ``pages`` pages use up the run's page budget (``[collect] max_pages``)."""
    return target.max_pages is not None and pages >= target.max_pages


def newest_first(target: Target, cursor: Cursor, steps: Iterable[Step]) -> Iterator[Page]:
    """The newest-first walk with a pending cursor, for a listing that answers newest first.

    Each page but the last commits the walk so far in ``Cursor.pending`` and keeps the
    stream's ``position``, so a walk cut short (a kill, the page budget) resumes where it
    stopped and items above the position are never skipped; the last page moves the position
    (a backfill keeps none: its window is walked once). Ends at the page budget.
    """
    for pages, step in enumerate(steps, start=1):
        if step.pending is not None:
            committed = Cursor(position=cursor.position, pending=step.pending)
        else:
            committed = Cursor(position=None if target.is_backfill else step.position)
        yield Page(raw=step.raw, cursor=committed, gap=step.gap)
        if step.pending is None or budget_spent(target, pages):
            return


def forward(target: Target, steps: Iterable[Step]) -> Iterator[Page]:
    """The forward walk (``min_id``), for a listing that pages up from a position: each page,
    the oldest first, commits the newest id in it as the position, so there is no walk to
    keep. Ends when ``steps`` does (the platform's empty page) or at the page budget."""
    for pages, step in enumerate(steps, start=1):
        yield Page(raw=step.raw, cursor=Cursor(position=step.position), gap=step.gap)
        if budget_spent(target, pages):
            return


def kind_of(
    target: Target,
    *,
    is_brand: bool,
    answers_someone: bool,
    addressed: bool,
    searched: bool | None = None,
) -> Kind:
    """The one rule of an item's kind. The brand's own item is a reply when it answers someone
    else (``answers_someone``), a post otherwise. Anyone else's is a mention unless a search
    found it (``searched``: by default, on the keywords stream) and it is not ``addressed`` to
    the brand (a reply to it, in its thread, naming it: each platform says how), which makes
    it a keyword hit."""
    if is_brand:
        return "reply" if answers_someone else "post"
    if searched is None:
        searched = target.stream == "keywords"
    return "keyword" if searched and not addressed else "mention"


class Collector(ABC):
    """A platform's collector. Built-ins are written the way a third party would write one."""

    platform: ClassVar[str]
    streams: Sequence[Stream] = STREAMS  # an instance may offer fewer
    # the streams this instance does not offer, and why: each collection records it for them
    left_out: Mapping[Stream, str] = MappingProxyType({})

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Collector:
        """Build the collector from the config; secrets come from the environment."""

    @classmethod
    def backfill_reach(cls, since: datetime, now: datetime) -> list[str]:
        """Say which parts of a window starting at ``since`` the platform's API cannot reach."""
        return []

    @abstractmethod
    def resolve_account(self, handle: str) -> str:
        """Return the platform id of the account ``handle`` (I/O)."""

    @classmethod
    @abstractmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        """Return the platform search query that finds any of ``keywords``."""

    @abstractmethod
    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Yield pages newer than ``cursor`` (or in the target's window), oldest commit first."""

    @abstractmethod
    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        """Turn one raw page into Post records. Pure: no I/O, no clock."""

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take back the state kept from earlier runs (e.g. a login session)."""

    def dump_state(self) -> dict[str, Any] | None:
        """Return state to keep across runs (JSON-serializable), or None for nothing to keep."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
