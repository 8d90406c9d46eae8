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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import praw
import prawcore
import requests
from praw.endpoints import API_PATH
from prawcore.sessions import FiniteRetryStrategy, Session

from monitor import clock
from monitor.config import Settings
from monitor.models import Cursor, Post, Stream, iso
from monitor.platforms.base import (
    UNREADABLE_RESET,
    AuthError,
    Collector,
    CollectorError,
    MalformedResponse,
    Page,
    RateLimited,
    RetryPolicy,
    Step,
    Target,
    TransientError,
    as_object,
    call_with_retries,
    clamp_retry_at,
    connection,
    default_wait_note,
    newest_first,
    retry_after_reset,
    set_aside_reset,
)
from monitor.platforms.http import DeadlineAdapter, connection_problem
from monitor.platforms.reddit import DEFAULT_USER_AGENT, keyword_query
from monitor.platforms.reddit.normalize import (
    REDDIT_ORIGIN,
    THING_KINDS,
    _next_after,
    _validate_listing,
    _with_children,
    normalize_thing,
)
from monitor.platforms.reddit.walk import Walk

logger = logging.getLogger(__name__)

OAUTH_ORIGIN = "https://oauth.reddit.com"
LISTING_REACH = 1000
REACH_MARGIN = 0.9  # "about" 1,000: removed items still take their place in the count
READ_ONLY_STREAMS: tuple[Stream, ...] = ("posts", "keywords")
NO_LOGIN = (
    "the inbox needs the brand account's login (praw is read-only without it). Fix: export the "
    "variables named by platforms.reddit.username_env and password_env (a script app's account), "
    'or, to go without Reddit mentions, set platforms.reddit.streams = ["posts", "keywords"]'
)
RATE_HEADERS = ("x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset")
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
        options = settings.platforms["reddit"].options
        return cls(
            client_id=settings.secret("reddit", "client_id"),
            client_secret=settings.secret("reddit", "client_secret"),
            username=settings.optional_secret("reddit", "username"),
            password=settings.optional_secret("reddit", "password"),
            user_agent=_text_option(options, "user_agent", DEFAULT_USER_AGENT),
            auth_base=_text_option(options, "auth_base", REDDIT_ORIGIN),
            subreddits=_list_option(options, "subreddits", ("all",)),
            **connection(settings, "reddit"),
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
        """The search query finding any of ``keywords``: the platform spec's rule."""
        return keyword_query(keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Walk the stream's listing newest-first down to the newest item stored (or ``since``).

        Each page commits the walk so far (``pending``); ``position`` moves only at its end.
        """
        return newest_first(target, cursor, self._walk(target, cursor))

    def _walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        path, params = self._listing(target)
        walk = Walk.start(target, cursor)
        while True:
            call = dict(params, limit=self.page_size)
            if walk.after:
                call["after"] = walk.after
            body = self._get(path, call, _validate_listing)
            children = body["data"]["children"]
            after = _next_after(body["data"]["after"], walk.after, children)
            raw = _with_children(body, walk.take(children))
            if walk.done or not after:
                yield Step(raw=raw, position=walk.position(), gap=self._gap(target, walk))
                return
            pending = walk.pending(after)
            walk.after = after
            yield Step(raw=raw, pending=pending)

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


# --------------------------------------------------------------------------- validation


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
