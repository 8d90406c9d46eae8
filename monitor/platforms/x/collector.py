"""X (Twitter) API v2 collector on tweepy's ``Client``.

tweepy hard-codes ``https://api.twitter.com`` and sets no timeout, so a requests adapter mounted on
``client.session`` rewrites the host to ``api_base`` and adds the timeout and an overall deadline.
Rate limits are handled here, never by tweepy's unbounded ``wait_on_rate_limit``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy
from requests.utils import get_environ_proxies

from monitor import clock
from monitor.config import Settings
from monitor.models import Cursor, Kind, Post, StreamKey, iso, parse_iso
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
    epoch_reset,
    kind_of,
    newest_first,
    next_cursor,
    retry_after_reset,
    set_aside_reset,
)
from monitor.platforms.http import DeadlineAdapter, connection_problem
from monitor.platforms.x import keyword_query

logger = logging.getLogger(__name__)

TWITTER_ORIGIN = "https://api.twitter.com"
TWEET_FIELDS = [
    "created_at",
    "author_id",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "public_metrics",
    "lang",
    "entities",
]
EXPANSIONS = ["author_id", "in_reply_to_user_id"]
USER_FIELDS = ["username", "name"]
SEARCH_WINDOW = timedelta(days=7)
# how far back a listing reaches (tweepy's docstrings of get_users_tweets and get_users_mentions):
# a walk that lists about this many since the newest stored ended at the limit, not at it. The
# timeline's 3,200 count retweets too, which exclude=retweets leaves out of the pages: a
# retweet-heavy account reaches its limit with fewer listed, unseen by this count (the backfill's
# note says so)
REACH = {"posts": 3200, "mentions": 800}
REACH_MARGIN = 0.95  # deleted or withheld tweets still take their place in the count
RESET_HEADER = "x-rate-limit-reset"  # epoch seconds
TWITTER_EPOCH = datetime(2010, 11, 4, 1, 42, 54, 657000, tzinfo=UTC)  # of snowflake ids


class HostAdapter(DeadlineAdapter):
    """Send requests meant for api.twitter.com to ``base`` instead, with the timeout and the
    overall deadline of :class:`DeadlineAdapter`."""

    def __init__(self, base: str, timeout: tuple[float, float]) -> None:
        super().__init__(timeout)
        self.base = base.rstrip("/")

    def route(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        """api.twitter.com rewritten to ``base``, with the proxies chosen for ``base``."""
        url = request.url or ""
        if url.startswith(TWITTER_ORIGIN) and self.base != TWITTER_ORIGIN:
            request.url = self.base + url[len(TWITTER_ORIGIN) :]
            return get_environ_proxies(request.url)  # those given were for api.twitter.com
        return proxies


class XCollector(Collector):
    """Brand timeline, mentions and recent keyword search through tweepy's v2 ``Client``."""

    platform = "x"

    def __init__(
        self,
        *,
        bearer_token: str,
        token_env: str = "X_BEARER_TOKEN",
        api_base: str = TWITTER_ORIGIN,
        page_size: int = 100,
        timeout: tuple[float, float] = (5.0, 20.0),
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.client = tweepy.Client(
            bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False
        )
        self.client.session.mount(TWITTER_ORIGIN + "/", HostAdapter(api_base, timeout))
        self.client.session.hooks["response"].append(readable_reset)
        self.api_base = api_base
        self.token_env = token_env  # the variable's name, for the fix of a refused token
        self.page_size = page_size
        self.policy = policy or RetryPolicy()
        self._sleep = sleep or time.sleep
        self._before_window: set[StreamKey] = set()  # keyword streams already warned of it

    @classmethod
    def from_settings(cls, settings: Settings) -> XCollector:
        """Build the collector from the config; the token comes from its environment variable."""
        return cls(
            bearer_token=settings.secret("x", "bearer_token"),
            token_env=settings.platforms["x"].secret_env["bearer_token"],
            **connection(settings, "x"),
        )

    @classmethod
    def backfill_reach(cls, since: datetime, now: datetime) -> list[str]:
        """X recent search covers 7 days; a user timeline its newest 3,200 posts."""
        notes = [
            "x: a timeline reaches back 3,200 posts, its retweets included (touchpoint skips "
            "them, so fewer come back), and mentions 800; older ones cannot be fetched"
        ]
        if since < now - SEARCH_WINDOW:
            notes.append(
                f"x: keyword search reaches back 7 days only (to {iso(now - SEARCH_WINDOW)}); "
                "keyword hits before that cannot be fetched"
            )
        return notes

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.session.close()

    # -- fetch (I/O) -----------------------------------------------------------------------------

    def resolve_account(self, handle: str) -> str:
        """Return the user id of ``handle``."""
        body = self._get("get_user", username=handle, user_fields=USER_FIELDS)
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise CollectorError(f"X has no user @{handle}: {_first_error(body)}")
        return str(data["id"])

    @classmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        """The search query finding any of ``keywords``: the platform spec's rule."""
        return keyword_query(keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Yield pages newest-first; the cursor moves to the newest id only after the last page."""
        return newest_first(target, cursor, self._walk(target, cursor))

    def _walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        """The pages of the walk: ``since_id`` down from the newest, or ``start_time`` where
        the search window's edge is above the position (X refuses a since_id beyond it)."""
        params = self._stream_params(target)
        pending = cursor.pending or {}
        since = pending.get("since_id", cursor.position) if not target.is_backfill else None
        token: str | None = pending.get("next_token")
        newest: str | None = pending.get("newest_id")
        floor = self._window_floor(target, since) if target.stream == "keywords" else None
        lost = _lost_to_the_window(cursor.updated_at, floor)
        if floor is not None:
            params["start_time"] = floor  # X refuses such a since_id with a 400
            token = None  # a next_token holds for the start_time it came with only
            if pending.get("until_id"):  # a walk from the edge that the page budget cut
                params["until_id"] = pending["until_id"]
                lost = pending.get("lost") or lost  # the window's edge it began at
            else:
                newest = None
        seen: int = pending.get("seen", 0) if token or "until_id" in params else 0
        while True:
            call = dict(params)
            if since and "start_time" not in call:
                call["since_id"] = since
            if token:
                call[_token_param(target)] = token
            try:
                body = self._get(_METHODS[target.stream], _validate_page, **call)
            except CollectorError as exc:
                start = _earliest_start(exc) if "start_time" in call else None
                if start is None:
                    raise
                logger.debug(  # said before the walk: by backfill's note, or by _window_floor
                    "%s: X recent search reaches back to %s only (its 7 days end now, not at "
                    "the window's end); hits before that cannot be fetched",
                    target.key,
                    iso(start),
                )
                if target.until is not None and start >= target.until:
                    return  # none of the window is in reach
                params["start_time"] = call["start_time"] = start
                body = self._get(_METHODS[target.stream], _validate_page, **call)
            meta = body.get("meta", {})
            seen += len(body.get("data", []))
            newest = _newer_id(newest, meta.get("newest_id"), body)
            token = next_cursor("x", meta.get("next_token"), call.get(_token_param(target)))
            if not token:
                gap = self._gap(target, since, seen) or lost
                yield Step(raw=body, position=newest or since, gap=gap)
                return
            walk = {"since_id": since, "newest_id": newest, "next_token": token, "seen": seen}
            if floor is not None:  # the next run starts from the edge of its own window
                walk.update(until_id=_oldest_id(body, params.get("until_id")), lost=lost)
            yield Step(raw=body, pending=walk)

    def _gap(self, target: Target, since_id: str | None, seen: int) -> str | None:
        """Why tweets may be missing when a walk ended at the listing's reach, or None."""
        reach = REACH.get(target.stream)
        if reach is None or seen < reach * REACH_MARGIN:
            return None
        what = "timeline" if target.stream == "posts" else "mentions listing"
        if target.is_backfill:
            logger.warning(
                "%s: the %s ended after %d tweets; X lists the newest %s only, so the start of "
                "the window may be out of reach",
                target.key,
                what,
                seen,
                f"{reach:,}",
            )
            return None  # the backfill command reports its reach itself
        if not since_id:
            return None  # the stream's first walk: it never claimed to reach further
        return (
            f"the {what} ended after {seen} tweets newer than the newest stored ({since_id}); "
            f"X lists the newest {reach:,} only, so what came between may be missing"
        )

    def _window_floor(self, target: Target, since_id: str | None) -> datetime | None:
        """The search window's edge when the newest hit stored is older than it (a keyword quiet
        for a week, or touchpoint stopped that long: then hits before it are lost for good); None
        when ``since_id`` is usable. Said once per stream and process: a quiet keyword stays so
        at every poll."""
        if not since_id:
            return None
        created = TWITTER_EPOCH + timedelta(milliseconds=int(since_id) >> 22)
        floor = _search_floor(None)
        if created >= floor:
            return None
        log = logger.debug if target.key in self._before_window else logger.warning
        self._before_window.add(target.key)
        log(
            "%s: the newest hit stored (%s) is older than X's 7-day search window; searching "
            "from %s (hits before that, if touchpoint was stopped meanwhile, cannot be fetched)",
            target.key,
            iso(created),
            iso(floor),
        )
        return floor

    def _stream_params(self, target: Target) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_results": self.page_size,
            "tweet_fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user_fields": USER_FIELDS,
        }
        stream = target.stream
        if stream == "keywords":
            params["query"] = target.query
        else:
            params["id"] = target.account_id
        if stream == "posts":
            params["exclude"] = ["retweets"]
        if target.since is not None:
            params["start_time"] = _search_start(target) if stream == "keywords" else target.since
        if target.until is not None:
            params["end_time"] = target.until
        return params

    def _get(
        self,
        method: str,
        validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Call the tweepy method and check its answer (a JSON object, then ``validate``),
        retrying per policy (an answer of the wrong shape included)."""
        what = f"x {method}"

        def once() -> dict[str, Any]:
            answer = _translate_errors(
                lambda: getattr(self.client, method)(**params), self.api_base, self.token_env
            )
            return validate(answer) if validate else answer

        return call_with_retries(once, policy=self.policy, what=what, sleep=self._sleep)

    # -- normalize (pure) ------------------------------------------------------------------------

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        """Turn one API v2 page into Posts: retweets are skipped, replies linked to their parent."""
        users = {u.get("id"): u for u in raw.get("includes", {}).get("users", [])}
        posts = []
        for tweet in raw.get("data", []):
            post = normalize_tweet(tweet, users, target)
            if post is not None:
                posts.append(post)
        return posts


_METHODS = {
    "posts": "get_users_tweets",
    "mentions": "get_users_mentions",
    "keywords": "search_recent_tweets",
}


def normalize_tweet(
    tweet: Mapping[str, Any], users: Mapping[Any, Mapping[str, Any]], target: Target
) -> Post | None:
    """Normalize one tweet object; return None for a retweet (not the author's own words)."""
    refs = {r.get("type"): str(r.get("id")) for r in tweet.get("referenced_tweets") or []}
    if "retweeted" in refs:
        return None
    tweet_id = str(tweet["id"])
    stream = target.stream
    author_id = str(tweet.get("author_id") or (target.account_id if stream == "posts" else ""))
    is_brand = author_id == target.account_id
    handle = str(users.get(author_id, {}).get("username") or (target.handle if is_brand else ""))
    if "created_at" not in tweet:
        raise MalformedResponse(f"tweet {tweet_id} has no created_at")
    metrics = tweet.get("public_metrics") or {}
    return Post(
        platform="x",
        native_id=tweet_id,
        brand=target.key.brand,
        author_id=author_id,
        author_handle=handle,
        is_brand=is_brand,
        kind=_kind(tweet, refs, is_brand=is_brand, target=target),
        text=str(tweet.get("text", "")),
        url=f"https://x.com/{handle or 'i/web'}/status/{tweet_id}",
        created_at=iso(parse_iso(str(tweet["created_at"]))),
        lang=tweet.get("lang"),
        in_reply_to_id=f"x:{refs['replied_to']}" if "replied_to" in refs else None,
        conversation_id=f"x:{tweet['conversation_id']}" if tweet.get("conversation_id") else None,
        metrics={
            "likes": int(metrics.get("like_count", 0)),
            "replies": int(metrics.get("reply_count", 0)),
            "reposts": int(metrics.get("retweet_count", 0)),
            "quotes": int(metrics.get("quote_count", 0)),
        },
        raw=dict(tweet),
    )


def _kind(
    tweet: Mapping[str, Any], refs: Mapping[str, str], *, is_brand: bool, target: Target
) -> Kind:
    """X's tells: a reply answers someone when it is to another user; a tweet is addressed to
    the brand when it replies to it or names its @handle."""
    reply_to_user = tweet.get("in_reply_to_user_id")
    return kind_of(
        target,
        is_brand=is_brand,
        answers_someone="replied_to" in refs and reply_to_user not in (None, target.account_id),
        addressed=reply_to_user == target.account_id
        or re.search(rf"@{re.escape(target.handle)}\b", str(tweet.get("text", "")), re.I)
        is not None,
    )


def _lost_to_the_window(last_walk: datetime | None, floor: datetime | None) -> str | None:
    """Why keyword hits may be missing when the stream last stored a page (``last_walk``) before
    the search window's edge (``floor``): touchpoint was stopped, or the stream failing, for
    longer than X searches back. None for a keyword merely quiet (searched all along)."""
    if floor is None or last_walk is None or last_walk >= floor:
        return None
    return (
        f"the last search was at {iso(last_walk)} and X recent search reaches back to "
        f"{iso(floor)} only, so hits between cannot be fetched"
    )


def _token_param(target: Target) -> str:
    return "next_token" if target.stream == "keywords" else "pagination_token"


def _search_floor(until: datetime | None) -> datetime:
    """The oldest time X recent search reaches, a minute to spare: 7 days before ``until`` (a
    first guess for a backfill; X's own clock decides, and its refusal names the edge)."""
    return (until or clock.now()) - SEARCH_WINDOW + timedelta(minutes=1)


# X's 400 for a start_time older than its search reaches: "Invalid 'start_time':'...'.
# 'start_time' must be on or after 2026-11-17T03:49Z" (medialab/minet#445)
_EARLIEST = re.compile(r"'start_time' must be on or after (\d{4}-\d\d-\d\dT\d\d:\d\d)Z")


def _earliest_start(exc: CollectorError) -> datetime | None:
    """The earliest start_time X names in its refusal of an older one (a minute to spare), or
    None when ``exc`` is another error."""
    found = _EARLIEST.search(str(exc))
    if found is None:
        return None
    return parse_iso(found[1] + ":00Z") + timedelta(minutes=1)


def _search_start(target: Target) -> datetime:
    assert target.since is not None
    floor = _search_floor(target.until)
    if target.since < floor:
        logger.debug(  # backfill's note (backfill_reach) said so before the walk
            "%s: X recent search reaches back 7 days only; starting at %s, not %s",
            target.key,
            iso(floor),
            iso(target.since),
        )
        return floor
    return target.since


def _newer_id(current: str | None, meta_newest: Any, body: Mapping[str, Any]) -> str | None:
    ids = [int(t["id"]) for t in body.get("data", [])]
    for candidate in (current, meta_newest):
        if candidate:
            ids.append(int(candidate))
    return str(max(ids)) if ids else None


def _oldest_id(body: Mapping[str, Any], current: str | None) -> str | None:
    """The oldest tweet id of a newest-first page: where a walk older than it goes on."""
    ids = [int(t["id"]) for t in body.get("data", [])]
    return str(min(ids)) if ids else current


def _validate_page(body: dict[str, Any]) -> dict[str, Any]:
    """Check a page has the v2 shape before anything of it is stored; return it."""
    data = body.get("data", [])
    if "data" not in body and "meta" not in body:
        if body.get("errors"):
            raise CollectorError(f"X answered with errors only: {_first_error(body)}")
        raise MalformedResponse("answer has neither data nor meta")
    if not isinstance(data, list):
        raise MalformedResponse("data is not a list")
    for tweet in data:
        ok = isinstance(tweet, dict) and isinstance(tweet.get("id"), str)
        if not ok or not tweet["id"].isdigit() or not isinstance(tweet.get("text"), str):
            raise MalformedResponse(f"not a tweet object: {json.dumps(tweet)[:80]}")
        _check_time(tweet)
    if not isinstance(body.get("meta", {}), dict):
        raise MalformedResponse("meta is not an object")
    return body


def _check_time(tweet: Mapping[str, Any]) -> None:
    """A tweet's created_at (asked for in tweet.fields) must be there and a time: checked with
    the page, so that an answer without it is retried as malformed, not failed in normalize."""
    created = tweet.get("created_at")
    try:
        if isinstance(created, str):
            parse_iso(created)
            return
    except ValueError:
        pass
    raise MalformedResponse(f"tweet {tweet['id']} has no created_at (or not a time)")


def _first_error(body: Mapping[str, Any]) -> str:
    errors = body.get("errors") or [{}]
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, dict):
        return "unknown error"
    return str(first.get("detail") or first.get("message") or first.get("title") or "unknown error")


def _translate_errors(call: Callable[[], Any], api_base: str, token_env: str) -> dict[str, Any]:
    """Run one tweepy call and map every failure onto the collector's typed errors
    (``token_env``: the name of the token's variable, for the fix of a refused token)."""
    try:
        body = call()
    except tweepy.TooManyRequests as exc:
        headers = exc.response.headers
        reset = epoch_reset(headers.get(RESET_HEADER)) or retry_after_reset(
            headers.get("retry-after")
        )
        retry_at = clamp_retry_at(reset)
        note = "" if reset else default_wait_note(RESET_HEADER, headers.get(UNREADABLE_RESET))
        raise RateLimited(
            f"rate limited until {iso(retry_at)}{note}", retry_at=retry_at, reset=reset
        ) from None
    except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
        raise AuthError(
            f"X refused the bearer token (HTTP {exc.response.status_code}). Fix: check the token "
            f"in {token_env} (the variable named by platforms.x.bearer_token_env)"
        ) from None
    except tweepy.TwitterServerError as exc:
        raise TransientError(f"X server error HTTP {exc.response.status_code}") from None
    except tweepy.HTTPException as exc:
        raise CollectorError(
            f"X answered HTTP {exc.response.status_code}: {_api_message(exc)}"
        ) from None
    except requests.exceptions.JSONDecodeError:
        raise MalformedResponse("X sent a body that is not valid JSON") from None
    except requests.exceptions.Timeout:
        raise TransientError(f"no answer from {api_base} in time") from None
    except requests.exceptions.ConnectionError as exc:
        raise TransientError(connection_problem(exc, api_base)) from None
    except ValueError as exc:  # a body or header tweepy cannot read
        raise MalformedResponse(f"X sent a malformed answer ({exc})") from None
    return as_object(body)


def readable_reset(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A session's response hook: on a 429, an x-rate-limit-reset that is not epoch seconds
    ("nan") is set aside (:func:`set_aside_reset`), so that tweepy's int() of it does not fail the
    answer and the 429 is a rate limit (with the default wait) like any other."""
    raw = response.headers.get(RESET_HEADER)
    if response.status_code != 429 or raw is None:
        return
    reset = epoch_reset(raw)
    if reset is None:
        set_aside_reset(response.headers, RESET_HEADER)
    else:  # epoch seconds with a fraction: tweepy wants an integer
        response.headers[RESET_HEADER] = str(math.ceil(reset.timestamp()))


def _api_message(exc: tweepy.HTTPException) -> str:
    messages = list(getattr(exc, "api_messages", []) or [])
    return "; ".join(str(m) for m in messages)[:300] or "no detail"
