"""A deterministic local server speaking the X (Twitter) API v2 wire format.

It serves generated :mod:`monitor.sandbox.traffic` for the endpoints a monitor reads (user lookup,
a user's tweets, a user's mentions, recent search) so that the real ``tweepy.Client`` can be driven
against ``127.0.0.1``.  The server, clock, recording, faults and control API (``/_sandbox/...``)
come from :class:`monitor.sandbox.server.SandboxServer`; this module adds X's ids, parameters,
fields, expansions, search, pagination, error bodies and per-endpoint rate windows.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Unpack

from monitor.sandbox.common import Catalog, Params, QuerySyntax, require
from monitor.sandbox.limits import HeaderNames, RateLimiter, RateWindow
from monitor.sandbox.server import (
    ApiError,
    Headers,
    Json,
    Query,
    Request,
    Response,
    Route,
    format_time,
    route,
)
from monitor.sandbox.server import RecordedRequest as RecordedRequest
from monitor.sandbox.traffic import (
    MENTION,
    POST,
    REPLY,
    SandboxOptions,
    TrafficItem,
    TrafficSandbox,
    visible_items,
)

TWITTER_EPOCH = datetime(2010, 11, 4, 1, 42, 54, 657000, tzinfo=UTC)
SEARCH_WINDOW = timedelta(days=7)
# how far back a listing reaches, in tweets: a timeline its newest 3,200 (800 when replies are
# excluded), mentions their newest 800 (tweepy's docstrings of get_users_tweets and
# get_users_mentions); older ones are not served, whatever since_id or start_time asks
TIMELINE_REACH = 3200
TIMELINE_REACH_WITHOUT_REPLIES = 800
MENTIONS_REACH = 800
ENDPOINTS = ("tweets", "mentions", "search", "user")
# App-auth (bearer token) limits per 15-minute window, as documented by X.
RATE_LIMITS: Mapping[str, int] = {"tweets": 1500, "mentions": 450, "search": 450, "user": 300}
DEFAULT_RATE_LIMIT = 900
RATE_WINDOW_SECONDS = 900
_RATE_HEADERS = HeaderNames("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")

_INVALID_REQUEST_TYPE = "https://api.twitter.com/2/problems/invalid-request"
_NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"
_ID_PATTERN = "^[0-9]{1,19}$"
_USERNAME_PATTERN = "^[A-Za-z0-9_]{1,15}$"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,15})\b")
_HASHTAG = re.compile(r"(?<![\w#&])#(\w*[^\W\d]\w*)")
_SYNTAX = QuerySyntax(
    operators=frozenset({"from", "to", "conversation_id"}), ignored=("is:", "lang:", "has:")
)

# fmt: off
TWEET_FIELDS = frozenset({
    "article", "attachments", "author_id", "card_uri", "community_id", "context_annotations",
    "conversation_id", "created_at", "display_text_range", "edit_controls",
    "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id", "lang",
    "media_metadata", "non_public_metrics", "note_tweet", "organic_metrics", "possibly_sensitive",
    "promoted_metrics", "public_metrics", "referenced_tweets", "reply_settings", "scopes",
    "source", "text", "withheld",
})
USER_FIELDS = frozenset({
    "affiliation", "connection_status", "created_at", "description", "entities", "id",
    "location", "most_recent_tweet_id", "name", "pinned_tweet_id", "profile_banner_url",
    "profile_image_url", "protected", "public_metrics", "receives_your_dm", "subscription_type",
    "url", "username", "verified", "verified_type", "withheld",
})
TWEET_EXPANSIONS = frozenset({
    "article.cover_media", "article.media_entities", "attachments.media_keys",
    "attachments.media_source_tweet", "attachments.poll_ids", "author_id",
    "edit_history_tweet_ids", "entities.mentions.username", "entities.note.mentions.username",
    "geo.place_id", "in_reply_to_user_id", "referenced_tweets.id",
    "referenced_tweets.id.author_id",
})
USER_EXPANSIONS = frozenset({"affiliation.user_id", "most_recent_tweet_id", "pinned_tweet_id"})
_TWEET_FIELD_ORDER = (
    "created_at", "author_id", "conversation_id", "in_reply_to_user_id", "referenced_tweets",
    "public_metrics", "lang", "entities", "possibly_sensitive",
)
_LIST_PARAMS = (
    "end_time", "expansions", "max_results", "since_id", "start_time", "tweet.fields", "until_id",
    "user.fields", "media.fields", "place.fields", "poll.fields",
)
# fmt: on


# --------------------------------------------------------------------------- errors and helpers


def problem(status: int, title: str) -> Json:
    """X's generic problem body (401, 404, 429, 5xx)."""
    return {"title": title, "type": "about:blank", "status": status, "detail": title}


def invalid_parameter(param: str, values: list[str], message: str) -> ApiError:
    """A 400 ``Invalid Request`` error naming the offending parameter."""
    body = {
        "errors": [{"parameters": {param: values}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": _INVALID_REQUEST_TYPE,
    }
    return ApiError(400, body)


def _not_found_user(parameter: str, value: str) -> Json:
    return {
        "errors": [
            {
                "value": value,
                "detail": f"Could not find user with {parameter}: [{value}].",
                "title": "Not Found Error",
                "resource_type": "user",
                "parameter": parameter,
                "resource_id": value,
                "type": _NOT_FOUND_TYPE,
            }
        ]
    }


def snowflake_time(tweet_id: int) -> datetime:
    """When the post of a snowflake id was created (to the millisecond)."""
    return TWITTER_EPOCH + timedelta(milliseconds=tweet_id >> 22)


def snowflake(item: TrafficItem) -> int:
    """Snowflake-style id: milliseconds since X's epoch, shifted, with the seq in the low bits."""
    millis = (item.created_at - TWITTER_EPOCH) // timedelta(milliseconds=1)
    if millis < 0:
        raise ValueError("items before 2010-11-04 cannot get snowflake ids")
    return (millis << 22) | (item.seq & 0x3FFFFF)


def _listed(values: Iterable[str]) -> str:
    return ",".join(sorted(values))


# --------------------------------------------------------------------------- query parameters


class _Params(Params):
    """The query string of one request, validated the way X validates it."""

    def __init__(self, query: Query, allowed: Iterable[str]) -> None:
        super().__init__(query)
        allowed_set = frozenset(allowed)
        for name, values in query.items():
            if name not in allowed_set:
                message = f"The query parameter [{name}] is not one of [{_listed(allowed_set)}]"
                raise invalid_parameter(name, values, message)

    def max_results(self, low: int, high: int, default: int = 10) -> int:
        raw = self.get("max_results")
        if raw is None:
            return default
        if re.fullmatch("[0-9]{1,4}", raw) and low <= int(raw) <= high:
            return int(raw)
        message = f"The `max_results` query parameter value [{raw}] is not between {low} and {high}"
        raise invalid_parameter("max_results", [raw], message)

    def tweet_id(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        if re.fullmatch(_ID_PATTERN, raw):
            return int(raw)
        message = f"The `{name}` query parameter value [{raw}] does not match {_ID_PATTERN}"
        raise invalid_parameter(name, [raw], message)

    def time(self, name: str) -> datetime | None:
        raw = self.get(name)
        if raw is None:
            return None
        if _RFC3339.fullmatch(raw):
            try:
                return datetime.fromisoformat(raw).astimezone(UTC)
            except ValueError:
                pass
        message = f"The `{name}` query parameter value [{raw}] is not a valid RFC 3339 date-time"
        raise invalid_parameter(name, [raw], message)

    def choices(self, name: str, valid: frozenset[str]) -> frozenset[str]:
        raw = self.get(name)
        if not raw:
            return frozenset()
        chosen = frozenset(part.strip() for part in raw.split(","))
        for value in sorted(chosen):
            if value not in valid:
                message = (
                    f"The `{name}` query parameter value [{value}] is not one of [{_listed(valid)}]"
                )
                raise invalid_parameter(name, [value], message)
        return chosen


@dataclass(frozen=True)
class _Fields:
    tweet: frozenset[str]
    user: frozenset[str]
    expansions: frozenset[str]

    @classmethod
    def parse(cls, params: _Params, expansions: frozenset[str]) -> _Fields:
        return cls(
            tweet=params.choices("tweet.fields", TWEET_FIELDS),
            user=params.choices("user.fields", USER_FIELDS),
            expansions=params.choices("expansions", expansions),
        )


@dataclass(frozen=True)
class _Window:
    """Id/time bounds of a listing request plus the pagination position."""

    since_id: int | None
    until_id: int | None
    start_time: datetime | None
    end_time: datetime | None
    before_id: int | None

    def admits(self, tweet_id: int, created_at: datetime) -> bool:
        checks = (
            self.since_id is None or tweet_id > self.since_id,
            self.until_id is None or tweet_id < self.until_id,
            self.before_id is None or tweet_id < self.before_id,
            self.start_time is None or created_at >= self.start_time,
            self.end_time is None or created_at < self.end_time,
        )
        return all(checks)


def encode_token(endpoint: str, before_id: int) -> str:
    """Opaque, stable pagination token: the position (oldest id served so far)."""
    raw = json.dumps({"e": endpoint, "b": str(before_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, endpoint: str, param: str) -> int:
    """The ``before_id`` a token from :func:`encode_token` stands for; 400 when it is not ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if isinstance(data, dict) and data.get("e") == endpoint:
        before = data.get("b")
        if isinstance(before, str) and re.fullmatch(_ID_PATTERN, before):
            return int(before)
    message = f"The `{param}` query parameter value [{token}] is not a valid token"
    raise invalid_parameter(param, [token], message)


def _window(params: _Params, endpoint: str, token_param: str) -> _Window:
    start_time, end_time = params.time("start_time"), params.time("end_time")
    if start_time and end_time and end_time <= start_time:
        raw_end = params.get("end_time") or ""
        message = f"Invalid 'end_time':'{raw_end}'. 'end_time' must be after 'start_time'"
        raise invalid_parameter("end_time", [raw_end], message)
    token = params.get(token_param)
    return _Window(
        since_id=params.tweet_id("since_id"),
        until_id=params.tweet_id("until_id"),
        start_time=start_time,
        end_time=end_time,
        before_id=None if token is None else decode_token(token, endpoint, token_param),
    )


# --------------------------------------------------------------------------- search queries


@dataclass(frozen=True)
class SearchQuery:
    """The subset of X's query language the sandbox understands.

    Plain terms (including ``@x`` and ``#x``) are OR-ed and matched case-insensitively as
    substrings; ``from:``, ``to:`` and ``conversation_id:`` narrow the match; negations, ``is:``,
    ``has:`` and ``lang:`` operators are ignored.
    """

    terms: tuple[str, ...]
    authors: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    conversations: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: str) -> SearchQuery:
        parsed = _SYNTAX.parse(query)
        return cls(
            terms=parsed.terms,
            authors=parsed.operator("from"),
            recipients=parsed.operator("to"),
            conversations=parsed.operator("conversation_id"),
        )

    @property
    def empty(self) -> bool:
        return not (self.terms or self.authors or self.recipients or self.conversations)


# --------------------------------------------------------------------------- catalog


class _Catalog(Catalog):
    """The sandbox's tweets and users with their X ids and JSON shapes (immutable)."""

    def __init__(self, items: Sequence[TrafficItem], brand_handle: str, brand_user_id: str) -> None:
        super().__init__(items, brand_handle, brand_user_id, _MENTION)
        self._ids = {item.seq: snowflake(item) for item in self.items}

    def numeric_id(self, item: TrafficItem) -> int:
        return self._ids[item.seq]

    def tweet_id(self, item: TrafficItem) -> str:
        return str(self._ids[item.seq])

    def in_reply_to_handle(self, item: TrafficItem) -> str | None:
        parent = self.parent(item)
        if parent is not None:
            return parent.author_handle
        return self.brand_handle if item.kind == MENTION else None

    def conversation_id(self, item: TrafficItem) -> str:
        root = self.by_seq.get(item.root_seq, item)
        return self.tweet_id(root)

    # JSON -----------------------------------------------------------------

    def user_json(self, handle: str, fields: frozenset[str]) -> Json:
        is_brand = handle.lower() == self.brand_handle.lower()
        user_id = self.id(handle)
        out: Json = {"id": user_id, "name": _display_name(handle), "username": handle}
        extra: Json = {
            "created_at": format_time(_account_created(user_id)),
            "description": f"Official account of {_display_name(handle)}." if is_brand else "",
            "protected": False,
            "verified": is_brand,
        }
        out.update({name: value for name, value in extra.items() if name in fields})
        return out

    def tweet_json(self, item: TrafficItem, fields: frozenset[str]) -> Json:
        tweet_id = self.tweet_id(item)
        out: Json = {"id": tweet_id, "text": item.text, "edit_history_tweet_ids": [tweet_id]}
        for name in _TWEET_FIELD_ORDER:
            if name in fields:
                value = self._tweet_field(item, name)
                if value is not None:
                    out[name] = value
        return out

    def _tweet_field(self, item: TrafficItem, name: str) -> Any:
        builders: dict[str, Callable[[TrafficItem], Any]] = {
            "created_at": lambda i: format_time(i.created_at),
            "author_id": lambda i: self.id(i.author_handle),
            "conversation_id": self.conversation_id,
            "in_reply_to_user_id": self._in_reply_to_user_id,
            "referenced_tweets": self._referenced_tweets,
            "public_metrics": _public_metrics,
            "lang": lambda i: i.lang,
            "entities": lambda i: _entities(i.text),
            "possibly_sensitive": lambda i: False,
        }
        return builders[name](item)

    def _in_reply_to_user_id(self, item: TrafficItem) -> str | None:
        handle = self.in_reply_to_handle(item)
        return None if handle is None else self.id(handle)

    def _referenced_tweets(self, item: TrafficItem) -> list[Json] | None:
        parent = self.parent(item)
        if parent is None:
            return None
        return [{"type": "replied_to", "id": self.tweet_id(parent)}]


def _display_name(handle: str) -> str:
    return handle[:1].upper() + handle[1:]


def _account_created(user_id: str) -> datetime:
    days = int(user_id[-6:]) % 4000
    return datetime(2009, 3, 1, 12, tzinfo=UTC) + timedelta(days=days, seconds=int(user_id[-4:]))


def _public_metrics(item: TrafficItem) -> Json:
    return {
        "retweet_count": item.reposts,
        "reply_count": item.replies,
        "like_count": item.likes,
        "quote_count": item.quotes,
    }


def _entities(text: str) -> Json | None:
    entities: Json = {}
    mentions = [
        {"start": m.start(), "end": m.end(), "username": m.group(1)}
        for m in _MENTION.finditer(text)
    ]
    hashtags = [
        {"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in _HASHTAG.finditer(text)
    ]
    if hashtags:
        entities["hashtags"] = hashtags
    if mentions:
        entities["mentions"] = mentions
    return entities or None


# --------------------------------------------------------------------------- the API


class _Api:
    """Answers API requests against a catalog at a given sandbox time."""

    def __init__(self, catalog: _Catalog) -> None:
        self.catalog = catalog

    def answer(self, route: Route, query: Query, clock: datetime) -> Json:
        handlers: dict[str, Callable[[str, Query, datetime], Json]] = {
            "user_by_username": self._user_by_username,
            "user_by_id": self._user_by_id,
            "timeline": self._timeline,
            "mentions": self._mentions,
            "search": self._search,
        }
        return handlers[route.action](route.args[0], query, clock)

    # users ------------------------------------------------------------------

    def _user_lookup_fields(self, query: Query) -> _Fields:
        params = _Params(query, ("expansions", "tweet.fields", "user.fields"))
        return _Fields.parse(params, USER_EXPANSIONS)

    def _user_by_username(self, username: str, query: Query, clock: datetime) -> Json:
        fields = self._user_lookup_fields(query)
        if not re.fullmatch(_USERNAME_PATTERN, username):
            message = (
                f"The `username` query parameter value [{username}] does not match "
                f"{_USERNAME_PATTERN}"
            )
            raise invalid_parameter("username", [username], message)
        handle = self.catalog.handle(username)
        if handle is None:
            return _not_found_user("username", username)
        return {"data": self.catalog.user_json(handle, fields.user)}

    def _user_by_id(self, user_id: str, query: Query, clock: datetime) -> Json:
        fields = self._user_lookup_fields(query)
        _check_path_id(user_id)
        handle = self.catalog.handle_for_id(user_id)
        if handle is None:
            return _not_found_user("id", user_id)
        return {"data": self.catalog.user_json(handle, fields.user)}

    # listings ---------------------------------------------------------------

    def _timeline(self, user_id: str, query: Query, clock: datetime) -> Json:
        params = _Params(query, (*_LIST_PARAMS, "exclude", "pagination_token"))
        excluded = params.choices("exclude", frozenset({"replies", "retweets"}))
        if "replies" in excluded:
            kinds, reach = {POST}, TIMELINE_REACH_WITHOUT_REPLIES
        else:
            kinds, reach = {POST, REPLY}, TIMELINE_REACH
        return self._listing("tweets", user_id, params, clock, kinds, reach)

    def _mentions(self, user_id: str, query: Query, clock: datetime) -> Json:
        params = _Params(query, (*_LIST_PARAMS, "pagination_token"))
        return self._listing("mentions", user_id, params, clock, {MENTION}, MENTIONS_REACH)

    def _listing(
        self,
        endpoint: str,
        user_id: str,
        params: _Params,
        clock: datetime,
        kinds: set[str],
        reach: int,
    ) -> Json:
        _check_path_id(user_id)
        max_results = params.max_results(5, 100)
        fields = _Fields.parse(params, TWEET_EXPANSIONS)
        window = _window(params, endpoint, "pagination_token")
        items: list[TrafficItem] = []
        if user_id == self.catalog.brand_id:
            items = [i for i in visible_items(self.catalog.items, clock) if i.kind in kinds]
            items = sorted(items, key=self.catalog.numeric_id, reverse=True)[:reach]
        return self._page(endpoint, items, window, max_results, fields)

    def _search(self, _arg: str, query: Query, clock: datetime) -> Json:
        params = _Params(query, (*_LIST_PARAMS, "next_token", "query", "sort_order"))
        search = _search_query(params)
        max_results = params.max_results(10, 100)
        fields = _Fields.parse(params, TWEET_EXPANSIONS)
        window = _window(params, "search", "next_token")
        _check_search_start(params, window, clock)
        oldest = clock - SEARCH_WINDOW
        items = [
            i
            for i in visible_items(self.catalog.items, clock)
            if i.created_at >= oldest and self._matches(search, i)
        ]
        return self._page("search", items, window, max_results, fields)

    def _matches(self, search: SearchQuery, item: TrafficItem) -> bool:
        catalog = self.catalog
        recipient = (catalog.in_reply_to_handle(item) or "").lower()
        text = item.text.lower()
        return (
            (not search.authors or item.author_handle.lower() in search.authors)
            and (not search.recipients or recipient in search.recipients)
            and (not search.conversations or catalog.conversation_id(item) in search.conversations)
            and (not search.terms or any(term in text for term in search.terms))
        )

    # pages ------------------------------------------------------------------

    def _page(
        self,
        endpoint: str,
        items: list[TrafficItem],
        window: _Window,
        max_results: int,
        fields: _Fields,
    ) -> Json:
        catalog = self.catalog
        matching = [i for i in items if window.admits(catalog.numeric_id(i), i.created_at)]
        matching.sort(key=catalog.numeric_id, reverse=True)
        page = matching[:max_results]
        if not page:
            return {"meta": {"result_count": 0}}
        body: Json = {"data": [catalog.tweet_json(i, fields.tweet) for i in page]}
        includes = self._includes(page, fields)
        if includes:
            body["includes"] = includes
        meta: Json = {
            "newest_id": catalog.tweet_id(page[0]),
            "oldest_id": catalog.tweet_id(page[-1]),
            "result_count": len(page),
        }
        if len(matching) > len(page):
            meta["next_token"] = encode_token(endpoint, catalog.numeric_id(page[-1]))
        body["meta"] = meta
        return body

    def _includes(self, page: list[TrafficItem], fields: _Fields) -> Json:
        users: dict[str, Json] = {}
        tweets: dict[str, Json] = {}
        for item in page:
            for handle in self._expanded_handles(item, fields.expansions):
                users.setdefault(
                    self.catalog.id(handle), self.catalog.user_json(handle, fields.user)
                )
            parent = self.catalog.parent(item)
            if parent is not None and "referenced_tweets.id" in fields.expansions:
                tweets.setdefault(
                    self.catalog.tweet_id(parent), self.catalog.tweet_json(parent, fields.tweet)
                )
        includes: Json = {}
        if users:
            includes["users"] = list(users.values())
        if tweets:
            includes["tweets"] = list(tweets.values())
        return includes

    def _expanded_handles(self, item: TrafficItem, expansions: frozenset[str]) -> list[str]:
        handles: list[str] = []
        if "author_id" in expansions:
            handles.append(item.author_handle)
        reply_to = self.catalog.in_reply_to_handle(item)
        if "in_reply_to_user_id" in expansions and reply_to is not None:
            handles.append(reply_to)
        if "entities.mentions.username" in expansions:
            found = (self.catalog.handle(m.group(1)) for m in _MENTION.finditer(item.text))
            handles.extend(h for h in found if h is not None)
        parent = self.catalog.parent(item)
        if "referenced_tweets.id.author_id" in expansions and parent is not None:
            handles.append(parent.author_handle)
        return handles


def _check_path_id(user_id: str) -> None:
    if not re.fullmatch(_ID_PATTERN, user_id):
        message = f"The `id` query parameter value [{user_id}] does not match {_ID_PATTERN}"
        raise invalid_parameter("id", [user_id], message)


def _search_query(params: _Params) -> SearchQuery:
    raw = params.get("query")
    if not raw:
        raise invalid_parameter("query", [], "The `query` query parameter can not be empty")
    if len(raw) > 512:
        message = f"The `query` query parameter value [{raw}] is not between 1 and 512"
        raise invalid_parameter("query", [raw], message)
    search = SearchQuery.parse(raw)
    if search.empty:
        message = (
            "There were errors processing your request: "
            "Rules must contain a non-negation term (at position 1)"
        )
        raise invalid_parameter("query", [raw], message)
    return search


def _check_search_start(params: _Params, window: _Window, clock: datetime) -> None:
    earliest = (clock - SEARCH_WINDOW).replace(second=0, microsecond=0)
    if window.start_time is not None and window.start_time < earliest:
        raw = params.get("start_time") or ""
        message = (
            f"Invalid 'start_time':'{raw}'. 'start_time' must be on or after "
            f"{earliest:%Y-%m-%dT%H:%M}Z"
        )
        raise invalid_parameter("start_time", [raw], message)
    # a since_id older than the window is refused too: 400 Invalid Request naming since_id
    # (rooteco/tweetscape#421)
    if window.since_id is not None and snowflake_time(window.since_id) < earliest:
        raw = params.get("since_id") or ""
        message = (
            f"Invalid 'since_id':'{raw}'. 'since_id' must be a tweet id created after "
            f"{earliest:%Y-%m-%dT%H:%M}Z"
        )
        raise invalid_parameter("since_id", [raw], message)


# --------------------------------------------------------------------------- the sandbox


class XSandbox(TrafficSandbox):
    """A local X API v2 server over deterministic generated traffic.

    Only items with ``created_at <= clock`` are visible.  Use as a context manager, or call
    :meth:`start` and :meth:`stop`.  Any bearer token is accepted unless ``bearer_token`` is set.
    """

    label = "X sandbox"
    platform = "x"
    server_version = "XSandbox/1.0"
    endpoints = ENDPOINTS
    reset_headers = (_RATE_HEADERS.reset,)
    routes = (
        route("GET", r"/2/users/by/username/([^/]+)", "user", "user_by_username"),
        route("GET", r"/2/users/([^/]+)/tweets", "tweets", "timeline"),
        route("GET", r"/2/users/([^/]+)/mentions", "mentions", "mentions"),
        route("GET", r"/2/tweets/search/recent()", "search", "search"),
        route("GET", r"/2/users/([^/]+)", "user", "user_by_id"),
    )

    def __init__(
        self,
        *,
        brand_user_id: str = "1500000000000000001",
        bearer_token: str | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        require("brand_handle", options.get("brand_handle", "acme"), _USERNAME_PATTERN)
        require("brand_user_id", brand_user_id, _ID_PATTERN)
        self.brand_user_id = brand_user_id
        self.bearer_token = bearer_token
        super().__init__(**options)
        self._catalog = _Catalog(self.items, self.brand_handle, brand_user_id)
        self._api = _Api(self._catalog)
        limits = {name: (limit, RATE_WINDOW_SECONDS) for name, limit in RATE_LIMITS.items()}
        self.limiter = RateLimiter(limits, default=(DEFAULT_RATE_LIMIT, RATE_WINDOW_SECONDS))

    def tweet_id(self, item: TrafficItem) -> str:
        """The X id of ``item``."""
        return self._catalog.tweet_id(item)

    native_id = tweet_id

    def user_id(self, handle: str) -> str:
        """The X user id of ``handle`` (the brand's is ``brand_user_id``)."""
        return self._catalog.id(handle)

    # SandboxServer hooks ----------------------------------------------------------

    def authenticate(self, route: Route, request: Request) -> bool:
        """A bearer token, and the configured one if there is one."""
        return request.bearer_is(self.bearer_token)

    def answer(self, route: Route, request: Request) -> Response:
        """The API answer."""
        return Response.json(200, self._api.answer(route, request.query, self.clock))

    def rate_windows(self, route: Route | None) -> tuple[str, ...]:
        """One window per endpoint."""
        return (route.endpoint if route else "other",)

    def rate_headers(self, window: RateWindow) -> Headers:
        """X's rate-limit headers; the reset in epoch seconds."""
        return _RATE_HEADERS.of(window, str(math.ceil(window.reset)))

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        """X's problem body with the endpoint's current rate-limit headers."""
        body = problem(status, HTTPStatus(status).phrase)
        return Response.json(status, body, self.current_rate_headers(route))
