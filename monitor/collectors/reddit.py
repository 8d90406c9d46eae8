"""Reddit collector on praw (``praw.Reddit`` pointed at ``api_base`` / ``auth_base``).

Streams of a brand account:

* ``posts``: ``/user/<brand>/overview?sort=new``, the brand's submissions and comments in one
  newest-first listing (one cursor, one walk; the ``submitted`` and ``comments`` listings would
  need two cursors for one stream). A brand comment answering someone else's item is a ``reply``.
* ``mentions``: ``/message/inbox``, username mentions, comment replies and post replies in one
  listing (private messages, t4, are skipped). It needs a script-app login (username and
  password); without one praw is read-only and the stream is left out.
* ``keywords``: ``/r/<a+b>/search?sort=new``, in the configured subreddits.

Native ids are fullnames (``t1_...`` comments, ``t3_...`` submissions), so a comment's
``parent_id`` is directly the store id it answers. Listings are newest-first with ``after``: a
walk goes down from the top until it reaches the newest item stored (compared by ``created_utc``
and base36 id), commits page by page with the walk in ``Cursor.pending`` and moves ``position``
only when the walk is over. Listings end at about 1,000 items.

praw is made to take its settings from the config only (no ``praw.ini`` section, no ``praw_*``
environment variable), every request gets the configured (connect, read) timeout, and prawcore's
own retries are turned off so that the collector's :class:`RetryPolicy` is the only one.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import praw
import prawcore
import requests
from praw.endpoints import API_PATH
from prawcore.sessions import FiniteRetryStrategy, Session

from monitor import clock
from monitor.collectors.base import (
    UNREADABLE_RESET,
    AuthError,
    Collector,
    CollectorError,
    MalformedResponse,
    Page,
    RateLimited,
    RetryPolicy,
    Target,
    TransientError,
    as_object,
    call_with_retries,
    clamp_retry_at,
    default_wait_note,
    next_cursor,
    request_timeout,
    retry_after_reset,
    set_aside_reset,
)
from monitor.collectors.http import DeadlineAdapter, connection_problem
from monitor.config import Settings
from monitor.models import Cursor, Kind, Post, Stream, iso

logger = logging.getLogger(__name__)

OAUTH_ORIGIN = "https://oauth.reddit.com"
REDDIT_ORIGIN = "https://www.reddit.com"
DEFAULT_USER_AGENT = "touchpoint-monitor/0.1 (self-hosted brand monitor)"
LISTING_REACH = 1000
REACH_MARGIN = 0.9  # "about" 1,000: removed items still take their place in the count
# Reddit's search index lags behind new submissions: a keyword walk overlaps the last one by this
# much, so that a late-indexed hit is still picked up (the overlap is re-stored, not duplicated).
SEARCH_OVERLAP = timedelta(minutes=15)
READ_ONLY_STREAMS: tuple[Stream, ...] = ("posts", "keywords")
NO_LOGIN = (
    "the inbox needs the brand account's login (praw is read-only without it). Fix: export the "
    "variables named by platforms.reddit.username_env and password_env (a script app's account), "
    'or, to go without Reddit mentions, set platforms.reddit.streams = ["posts", "keywords"]'
)
INBOX_TYPES = frozenset({"username_mention", "comment_reply", "post_reply"})
THING_KINDS = frozenset({"t1", "t3"})
RATE_HEADERS = ("x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset")
_LINK_IN_PATH = re.compile(r"/comments/([a-z0-9]+)/")
_REDDIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,50}")


# --------------------------------------------------------------------------- praw plumbing


class TimeoutRequestor(prawcore.Requestor):
    """prawcore's requestor with the configured (connect, read) timeout on every request.

    prawcore hands each API call its own module-level timeout (``PRAWCORE_TIMEOUT``, read once at
    import), so a timeout given to the requestor alone would cover token requests only.
    """

    def __init__(self, *, timeouts: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeouts = timeouts

    def request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        """Send one request with the configured timeouts, whatever prawcore asked for."""
        timeouts: Any = self.timeouts  # requests takes a (connect, read) pair
        return super().request(*args, timeout=timeouts, **kwargs)


@dataclass(frozen=True)
class SingleAttempt(FiniteRetryStrategy):
    """No retries inside prawcore: the collector's RetryPolicy is the one that retries.

    prawcore would otherwise retry 5xx, timeouts and 401s twice with 0-2 s and 2-4 s sleeps,
    multiplying every retry of ours by three.
    """

    retries: int = 0

    def _sleep_seconds(self) -> float | None:
        return None

    def consume_available_retry(self) -> SingleAttempt:
        """Nothing to consume: there is no retry."""
        return self

    def should_retry_on_failure(self) -> bool:
        """Never: a failure goes straight to the collector."""
        return False


def build_reddit(
    *,
    client_id: str,
    client_secret: str,
    username: str | None,
    password: str | None,
    user_agent: str,
    oauth_url: str,
    reddit_url: str,
    session: requests.Session,
    timeout: tuple[float, float],
) -> praw.Reddit:
    """A ``praw.Reddit`` configured by these arguments only, prawcore's retries turned off.

    Every setting is passed, None included, because praw prefers passed values to ``praw_*``
    environment variables and ``praw.ini`` files (which would otherwise, say, log a read-only
    app in with someone's username); the ``DEFAULT`` section ignores ``praw_site``.
    ``timeout`` is unused by praw itself: it is passed so that a ``praw.ini`` value cannot
    break praw's int conversion.
    """
    reddit = praw.Reddit(
        "DEFAULT",
        requestor_class=TimeoutRequestor,
        requestor_kwargs={"session": session, "timeouts": timeout},
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=password,
        user_agent=user_agent,
        redirect_uri=None,
        refresh_token=None,
        oauth_url=oauth_url,
        reddit_url=reddit_url,
        short_url="https://redd.it",
        check_for_updates=False,
        check_for_async=False,
        ratelimit_seconds=1,
        timeout=max(1, round(timeout[1])),
        window_size=600,
    )
    _disable_prawcore_retries(reddit)
    return reddit


def _sessions(reddit: praw.Reddit) -> list[Session]:
    """The prawcore sessions of a Reddit instance (read-only and, logged in, authorized)."""
    cores = (reddit._core, reddit._read_only_core, reddit._authorized_core)
    unique: list[Session] = []
    for core in cores:
        if core is not None and all(core is not u for u in unique):
            unique.append(core)
    return unique


def _disable_prawcore_retries(reddit: praw.Reddit) -> None:
    for session in _sessions(reddit):
        if hasattr(session, "_retry_strategy_class"):
            session._retry_strategy_class = SingleAttempt
        else:  # a prawcore that changed its internals: its retries stay, bounded as they are
            logger.warning("reddit: cannot turn off prawcore's own retries; they add to ours")


# --------------------------------------------------------------------------- walk state


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


# --------------------------------------------------------------------------- the collector


class RedditCollector(Collector):
    """Brand posts, inbox mentions and subreddit keyword search through praw."""

    platform = "reddit"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        username: str | None = None,
        password: str | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        api_base: str = OAUTH_ORIGIN,
        auth_base: str = REDDIT_ORIGIN,
        subreddits: Sequence[str] = ("all",),
        page_size: int = 100,
        timeout: tuple[float, float] = (5.0, 20.0),
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if bool(username) != bool(password):
            logger.warning("reddit: a username needs a password and vice versa; read-only")
            username = password = None
        self.username = username
        self.api_base = api_base.rstrip("/")
        self.subreddits = tuple(s.strip().removeprefix("r/") for s in subreddits) or ("all",)
        self.page_size = page_size
        self.policy = policy or RetryPolicy()
        self._sleep = sleep or time.sleep
        self._http = requests.Session()
        for scheme in ("http://", "https://"):  # every answer read within an overall deadline
            self._http.mount(scheme, DeadlineAdapter(timeout))
        self._http.hooks["response"].append(readable_reset)
        self.reddit = build_reddit(
            client_id=client_id,
            client_secret=client_secret,
            username=username,
            password=password,
            user_agent=user_agent,
            oauth_url=self.api_base + "/",  # urljoin keeps a path prefix only with the slash
            reddit_url=auth_base.rstrip("/"),
            session=self._http,
            timeout=timeout,
        )
        if username is None:
            self.streams = READ_ONLY_STREAMS  # this instance offers less
            self.left_out = {"mentions": NO_LOGIN}

    @classmethod
    def from_settings(cls, settings: Settings) -> RedditCollector:
        """Build the collector from the config; credentials come from environment variables."""
        platform = settings.platforms["reddit"]
        collect = settings.collect
        options = platform.options
        return cls(
            client_id=settings.secret("reddit", "client_id"),
            client_secret=settings.secret("reddit", "client_secret"),
            username=settings.optional_secret("reddit", "username"),
            password=settings.optional_secret("reddit", "password"),
            user_agent=_text_option(options, "user_agent", DEFAULT_USER_AGENT),
            api_base=platform.api_base,
            auth_base=_text_option(options, "auth_base", REDDIT_ORIGIN),
            subreddits=_list_option(options, "subreddits", ("all",)),
            page_size=platform.page_size,
            timeout=request_timeout(collect),
            policy=RetryPolicy.from_settings(collect),
        )

    @classmethod
    def backfill_reach(cls, since: datetime, now: datetime) -> list[str]:
        """Reddit listings (a user's items, the inbox, search) end at about 1,000 items."""
        return [
            f"reddit: every listing (brand posts, inbox, search) reaches back about "
            f"{LISTING_REACH:,} items; anything older cannot be fetched"
        ]

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    # -- fetch (I/O) -----------------------------------------------------------------------------

    def resolve_account(self, handle: str) -> str:
        """Return the ``t2_...`` fullname of the account ``handle``."""
        body = self._get(API_PATH["user_about"].format(user=_path_name(handle)), {}, as_object)
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise CollectorError(f"Reddit has no usable account u/{handle} (suspended?)")
        if self.username and self.username.lower() != handle.lower():
            logger.warning(
                "reddit: logged in as another account than u/%s; its inbox is not the brand's",
                handle,
            )
        return f"t2_{data['id']}"

    @classmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        """Build a search query (lucene syntax) matching any keyword."""
        return " OR ".join(f'"{k}"' if " " in k else k for k in keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Walk the stream's listing newest-first down to the newest item stored (or ``since``).

        Each page commits the walk so far (``pending``); ``position`` moves only at its end.
        """
        path, params = self._listing(target)
        walk = Walk.start(target, cursor)
        pages = 0
        while True:
            call = dict(params, limit=self.page_size)
            if walk.after:
                call["after"] = walk.after
            body = self._get(path, call, _validate_listing)
            children = body["data"]["children"]
            after = _next_after(body["data"]["after"], walk.after, children)
            pages += 1
            kept = walk.take(children)
            gap = None
            if walk.done or not after:
                gap = self._gap(target, walk)
                page_cursor = Cursor(position=walk.position())
            else:
                page_cursor = Cursor(position=cursor.position, pending=walk.pending(after))
                walk.after = after
            yield Page(raw=_with_children(body, kept), cursor=page_cursor, gap=gap)
            if page_cursor.pending is None:
                return
            if target.max_pages is not None and pages >= target.max_pages:
                return

    def _listing(self, target: Target) -> tuple[str, dict[str, str | int]]:
        if target.stream == "posts":
            return f"{API_PATH['user'].format(user=_path_name(target.handle))}overview", {
                "sort": "new"
            }
        if target.stream == "mentions":
            if self.username is None:
                raise CollectorError("the Reddit inbox needs a username and password (script app)")
            return API_PATH["inbox"], {}
        if target.stream == "keywords":
            return self._search(target.query)
        raise CollectorError(f"reddit has no stream {target.stream!r}")

    def _search(self, query: str) -> tuple[str, dict[str, str | int]]:
        subreddits = "+".join(_path_name(s) for s in self.subreddits)
        everywhere = any(s.lower() == "all" for s in self.subreddits)
        params: dict[str, str | int] = {
            "q": query,
            "restrict_sr": str(not everywhere),
            "sort": "new",
            "syntax": "lucene",
            "t": "all",
        }
        return API_PATH["search"].format(subreddit=subreddits), params

    def _gap(self, target: Target, walk: Walk) -> str | None:
        """Why items may be missing when the listing ended before the walk's end, or None.

        A listing that ended short of Reddit's reach simply has nothing older (a small account,
        a quiet keyword): no gap."""
        if walk.done or walk.seen < LISTING_REACH * REACH_MARGIN:
            return None
        if walk.is_backfill:
            logger.warning(
                "%s: the listing ended after %d items before reaching the start of the window; "
                "Reddit listings reach back about %d items, older ones cannot be fetched",
                target.key,
                walk.seen,
                LISTING_REACH,
            )
            return None  # the backfill command reports its reach itself
        if walk.stop is None:
            return None  # the stream's first walk: it never claimed to reach further
        return (
            f"the listing ended after {walk.seen} items without reaching the newest item stored "
            f"before ({walk.stop.fullname}); Reddit listings reach back about {LISTING_REACH:,} "
            "items, so what came between may be missing"
        )

    def _get(
        self,
        path: str,
        params: dict[str, str | int],
        validate: Callable[[Any], dict[str, Any]],
    ) -> dict[str, Any]:
        """GET ``path`` through praw and validate the body, retrying per policy (malformed
        answers included); a refused access token is renewed once."""

        def once() -> dict[str, Any]:
            self._check_rate_budget()
            try:
                return validate(self._request(path, params))
            except TokenRefused:
                logger.info("reddit: the access token was refused; getting a new one (once)")
                return validate(self._request(path, params))

        return call_with_retries(
            once, policy=self.policy, what=f"reddit /{path}", sleep=self._sleep
        )

    def _request(self, path: str, params: dict[str, str | int]) -> Any:
        try:
            return self.reddit.request(method="GET", path=path, params=params)
        except prawcore.ResponseException as exc:  # TooManyRequests, and the token's 429
            if exc.response.status_code != 429:
                raise _translate(exc, self.api_base) from None
            raise self._rate_limited(exc.response.headers) from None
        except (praw.exceptions.PRAWException, prawcore.PrawcoreException) as exc:
            raise _translate(exc, self.api_base) from None
        except (ValueError, KeyError, TypeError) as exc:
            # prawcore: a malformed x-ratelimit-* header, a token answer without its keys, a 401
            # without www-authenticate; requests: a token answer that is not JSON
            raise MalformedResponse(
                f"Reddit sent a malformed answer ({type(exc).__name__}: {str(exc)[:80]})"
            ) from None

    def _rate_limited(self, headers: Mapping[str, str]) -> RateLimited:
        """The rate limit a 429 with ``headers`` (as :func:`readable_reset` left them) says."""
        wait = max(_seconds(headers.get("retry-after")), self._rate_wait())
        reset = clock.now() + timedelta(seconds=wait) if wait else None
        retry_at = clamp_retry_at(reset)
        note = "" if reset else default_wait_note("retry-after", headers.get(UNREADABLE_RESET))
        return RateLimited(
            f"Reddit rate limit (HTTP 429) until {iso(retry_at)}{note}",
            retry_at=retry_at,
            reset=reset,
        )

    def _rate_wait(self) -> float:
        """Seconds prawcore's rate limiter will sleep before the next request."""
        core = self.reddit._core
        stamp = core.rate_limiter.next_request_timestamp_ns if core is not None else None
        return max(0.0, (stamp - time.monotonic_ns()) / 1e9) if stamp else 0.0

    def _check_rate_budget(self) -> None:
        """Refuse, rather than let prawcore sleep, when the budget resets too far away."""
        wait = self._rate_wait()
        if wait > self.policy.max_rate_limit_wait:
            retry_at = clamp_retry_at(clock.now() + timedelta(seconds=wait))
            raise RateLimited(
                f"Reddit rate limit used up until {iso(retry_at)}",
                retry_at=retry_at,
                reset=retry_at,
            )

    # -- normalize (pure) ------------------------------------------------------------------------

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        """Turn one Listing into Posts; comments and submissions only (messages are skipped)."""
        posts = []
        for child in raw.get("data", {}).get("children", []):
            if child.get("kind") in THING_KINDS:
                posts.append(normalize_thing(str(child["kind"]), child["data"], target))
        return posts


class TokenRefused(AuthError):
    """Reddit refused the access token (HTTP 401, ``invalid_token``)."""


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
    if is_brand:
        # a comment on its own submission is the brand talking; under anyone else's item, a reply
        return "post" if kind == "t3" or on_brand_post else "reply"
    if target.stream != "keywords" or data.get("type") in INBOX_TYPES or on_brand_post:
        return "mention"
    mentioned = re.search(
        rf"(?<![\w/])/?u/{re.escape(target.handle)}(?![\w-])", _text(kind, data), re.I
    )
    return "mention" if mentioned else "keyword"


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


# --------------------------------------------------------------------------- validation


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


# --------------------------------------------------------------------------- errors


def _translate(exc: Exception, api_base: str) -> CollectorError:
    """Map a praw/prawcore failure onto the collector's typed errors (no secret in a message)."""
    if isinstance(exc, prawcore.InvalidToken):
        return TokenRefused(
            "Reddit refused the access token (HTTP 401). Fix: check the app's client id and "
            "secret, and the account's username and password (platforms.reddit.*_env)"
        )
    if isinstance(exc, prawcore.OAuthException):
        return AuthError(
            f"Reddit refused the login ({exc.error}). Fix: check the username and password in "
            "the environment variables named by platforms.reddit.username_env / password_env"
        )
    if isinstance(exc, prawcore.Forbidden | prawcore.InsufficientScope):
        return AuthError("Reddit refused access (HTTP 403): the account or app may not read this")
    if isinstance(exc, prawcore.BadJSON):
        return MalformedResponse("Reddit sent a body that is not valid JSON")
    if isinstance(exc, prawcore.Redirect):
        return CollectorError(f"Reddit redirected to {exc.path} (no such subreddit or user?)")
    if isinstance(exc, prawcore.RequestException):
        if isinstance(exc.original_exception, CollectorError):  # the deadline, the size cap
            return exc.original_exception
        return TransientError(_connection_problem(exc.original_exception, api_base))
    if isinstance(exc, prawcore.ResponseException):
        return _status_error(exc.response.status_code)
    return CollectorError(f"Reddit request failed: {type(exc).__name__}: {str(exc)[:120]}")


def _status_error(status: int) -> CollectorError:
    if status == 401:
        return AuthError(
            "Reddit refused the app's credentials (HTTP 401). Fix: check the client id and secret "
            "in the environment variables named by platforms.reddit.client_id_env / "
            "client_secret_env"
        )
    if status >= 500 or status in (408, 520, 522):
        return TransientError(f"Reddit server error HTTP {status}")
    if status == 404:
        return CollectorError("Reddit answered HTTP 404 (no such user or page)")
    return CollectorError(f"Reddit answered HTTP {status}")


def _connection_problem(original: Exception, api_base: str) -> str:
    if isinstance(original, requests.exceptions.Timeout):
        return f"no answer from {api_base} in time"
    if isinstance(original, requests.exceptions.ConnectionError):
        return connection_problem(original, api_base)
    return f"request to {api_base} failed ({type(original).__name__})"


def readable_reset(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A session's response hook: the headers of a 429 made readable for prawcore, which fails
    the whole answer on a ``float()`` or ``int()`` of them. Retry-After as an HTTP date (RFC
    9110 allows it) becomes seconds; one that is neither is set aside (:func:`set_aside_reset`:
    the default wait); x-ratelimit-* that are not numbers are dropped (prawcore then counts
    the answer as one request)."""
    if response.status_code != 429:
        return
    headers = response.headers
    raw = headers.get("retry-after")
    if raw is not None:
        reset = retry_after_reset(raw)
        if reset is None:
            set_aside_reset(headers, "retry-after")
        else:
            headers["retry-after"] = str(max(0, math.ceil((reset - clock.now()).total_seconds())))
    if not _rate_headers_readable(headers):
        for name in RATE_HEADERS:
            headers.pop(name, None)


def _rate_headers_readable(headers: Mapping[str, str]) -> bool:
    """Whether prawcore's rate limiter can read ``headers`` as it does (or finds none)."""
    if "x-ratelimit-remaining" not in headers:
        return True
    try:
        int(float(headers["x-ratelimit-remaining"]))
        int(headers["x-ratelimit-used"])
        int(headers["x-ratelimit-reset"])
    except (KeyError, ValueError, OverflowError):
        return False
    return True


def _seconds(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------- config helpers


def _text_option(options: Mapping[str, str | tuple[str, ...]], name: str, default: str) -> str:
    value = options.get(name, default)
    return value if isinstance(value, str) else default


def _list_option(
    options: Mapping[str, str | tuple[str, ...]], name: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = options.get(name, default)
    return (value,) if isinstance(value, str) else tuple(value)


def _path_name(name: str) -> str:
    """A user or subreddit name safe to put into a URL path."""
    if not _REDDIT_NAME.fullmatch(name):
        raise CollectorError(f"{name!r} is not a Reddit user or subreddit name")
    return quote(name)
