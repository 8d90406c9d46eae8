"""A deterministic local server speaking the X (Twitter) API v2 wire format.

It serves generated :mod:`monitor.sandbox.traffic` for the endpoints a monitor reads (user lookup,
a user's tweets, a user's mentions, recent search) so that the real ``tweepy.Client`` can be driven
against ``127.0.0.1``.  Faults (rate limits, server errors, truncated bodies, hanging responses,
expired tokens) can be queued from Python or over HTTP (``/_sandbox/...``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Unpack, cast
from urllib.parse import parse_qs, urlsplit

from monitor.sandbox.traffic import (
    MENTION,
    POST,
    REPLY,
    TrafficItem,
    TrafficRates,
    generate_traffic,
)

logger = logging.getLogger(__name__)

Json = dict[str, Any]
Query = dict[str, list[str]]

TWITTER_EPOCH = datetime(2010, 11, 4, 1, 42, 54, 657000, tzinfo=UTC)
SEARCH_WINDOW = timedelta(days=7)
FAULT_KINDS = ("429", "500", "503", "malformed", "slow", "expired_token")
ENDPOINTS = ("tweets", "mentions", "search", "user")
# App-auth (bearer token) limits per 15-minute window, as documented by X.
RATE_LIMITS: Mapping[str, int] = {"tweets": 1500, "mentions": 450, "search": 450, "user": 300}
DEFAULT_RATE_LIMIT = 900
RATE_WINDOW_SECONDS = 900
CONTENT_TYPE = "application/json; charset=utf-8"
_CONTROL_PREFIX = "/_sandbox/"
_MAX_CONTROL_BODY = 64 * 1024

_INVALID_REQUEST_TYPE = "https://api.twitter.com/2/problems/invalid-request"
_NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"
_ID_PATTERN = "^[0-9]{1,19}$"
_USERNAME_PATTERN = "^[A-Za-z0-9_]{1,15}$"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,15})\b")
_HASHTAG = re.compile(r"(?<![\w#&])#(\w*[^\W\d]\w*)")
_QUERY_TOKEN = re.compile(r'-?"[^"]*"|\S+')

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
# fmt: on
USER_EXPANSIONS = frozenset({"affiliation.user_id", "most_recent_tweet_id", "pinned_tweet_id"})
_OTHER_FIELDS = ("media.fields", "place.fields", "poll.fields")
_TWEET_FIELD_ORDER = (
    "created_at",
    "author_id",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "public_metrics",
    "lang",
    "entities",
    "possibly_sensitive",
)


# --------------------------------------------------------------------------- errors and helpers


class ApiError(Exception):
    """An X API error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


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


def format_time(when: datetime) -> str:
    """X's timestamp format: ``2026-11-22T10:15:00.000Z``."""
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def _as_utc(when: datetime, name: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return when.astimezone(UTC)


def snowflake(item: TrafficItem) -> int:
    """Snowflake-style id: milliseconds since X's epoch, shifted, with the seq in the low bits."""
    millis = (item.created_at - TWITTER_EPOCH) // timedelta(milliseconds=1)
    if millis < 0:
        raise ValueError("items before 2010-11-04 cannot get snowflake ids")
    return (millis << 22) | (item.seq & 0x3FFFFF)


def _listed(values: Iterable[str]) -> str:
    return ",".join(sorted(values))


# --------------------------------------------------------------------------- query parameters


class _Params:
    """The query string of one request, validated the way X validates it."""

    def __init__(self, query: Query, allowed: Iterable[str]) -> None:
        self._query = query
        allowed_set = frozenset(allowed)
        for name, values in query.items():
            if name not in allowed_set:
                message = f"The query parameter [{name}] is not one of [{_listed(allowed_set)}]"
                raise invalid_parameter(name, values, message)

    def get(self, name: str) -> str | None:
        values = self._query.get(name)
        return values[-1] if values else None

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
        terms: list[str] = []
        operators: dict[str, list[str]] = {"from": [], "to": [], "conversation_id": []}
        for raw in _QUERY_TOKEN.findall(query):
            token = raw.strip("()")
            if _ignored_term(token):
                continue
            name, sep, value = token.partition(":")
            if sep and value and name.lower() in operators:
                operators[name.lower()].append(value.lower().lstrip("@"))
            else:
                terms.append(token.strip('"').lower())
        return cls(
            terms=tuple(t for t in terms if t),
            authors=tuple(operators["from"]),
            recipients=tuple(operators["to"]),
            conversations=tuple(operators["conversation_id"]),
        )

    @property
    def empty(self) -> bool:
        return not (self.terms or self.authors or self.recipients or self.conversations)


def _ignored_term(token: str) -> bool:
    lowered = token.lower()
    return (
        not token
        or token in ("OR", "AND")
        or token.startswith("-")
        or lowered.startswith(("is:", "lang:", "has:"))
    )


# --------------------------------------------------------------------------- catalog


class _Catalog:
    """The sandbox's tweets and users with their X ids and JSON shapes (immutable)."""

    def __init__(self, items: Sequence[TrafficItem], brand_handle: str, brand_user_id: str) -> None:
        self.items = list(items)
        self.brand_handle = brand_handle
        self.brand_user_id = brand_user_id
        self._by_seq = {item.seq: item for item in self.items}
        self._ids = {item.seq: snowflake(item) for item in self.items}
        self._handles = self._collect_handles()
        self._handle_by_id = {self.user_id(h): h for h in self._handles.values()}

    def _collect_handles(self) -> dict[str, str]:
        handles = {self.brand_handle.lower(): self.brand_handle}
        for item in self.items:
            handles.setdefault(item.author_handle.lower(), item.author_handle)
            for match in _MENTION.finditer(item.text):
                handles.setdefault(match.group(1).lower(), match.group(1))
        return handles

    # ids ------------------------------------------------------------------

    def numeric_id(self, item: TrafficItem) -> int:
        return self._ids[item.seq]

    def tweet_id(self, item: TrafficItem) -> str:
        return str(self._ids[item.seq])

    def user_id(self, handle: str) -> str:
        if handle.lower() == self.brand_handle.lower():
            return self.brand_user_id
        digest = hashlib.sha256(handle.lower().encode()).digest()
        number = 10**17 + int.from_bytes(digest[:8], "big") % (9 * 10**17)
        if str(number) == self.brand_user_id:
            number += 1
        return str(number)

    def handle(self, username: str) -> str | None:
        return self._handles.get(username.lower())

    def handle_for_id(self, user_id: str) -> str | None:
        return self._handle_by_id.get(user_id)

    def parent(self, item: TrafficItem) -> TrafficItem | None:
        return None if item.in_reply_to_seq is None else self._by_seq.get(item.in_reply_to_seq)

    def in_reply_to_handle(self, item: TrafficItem) -> str | None:
        parent = self.parent(item)
        if parent is not None:
            return parent.author_handle
        return self.brand_handle if item.kind == MENTION else None

    def conversation_id(self, item: TrafficItem) -> str:
        root = self._by_seq.get(item.root_seq, item)
        return self.tweet_id(root)

    # JSON -----------------------------------------------------------------

    def user_json(self, handle: str, fields: frozenset[str]) -> Json:
        is_brand = handle.lower() == self.brand_handle.lower()
        user_id = self.user_id(handle)
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
            "author_id": lambda i: self.user_id(i.author_handle),
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
        return None if handle is None else self.user_id(handle)

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


@dataclass(frozen=True)
class _Route:
    endpoint: str
    action: str
    arg: str


_ROUTES = (
    (re.compile(r"/2/users/by/username/([^/]+)"), "user", "user_by_username"),
    (re.compile(r"/2/users/([^/]+)/tweets"), "tweets", "timeline"),
    (re.compile(r"/2/users/([^/]+)/mentions"), "mentions", "mentions"),
    (re.compile(r"/2/tweets/search/recent()"), "search", "search"),
    (re.compile(r"/2/users/([^/]+)"), "user", "user_by_id"),
)

_LIST_PARAMS = (
    "end_time",
    "expansions",
    "max_results",
    "since_id",
    "start_time",
    "tweet.fields",
    "until_id",
    "user.fields",
    *_OTHER_FIELDS,
)


def _resolve(method: str, path: str) -> _Route | None:
    """The API route for a request, or None (404)."""
    if method != "GET":
        return None
    for pattern, endpoint, action in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return _Route(endpoint, action, match.group(1))
    return None


class _Api:
    """Answers API requests against a catalog at a given sandbox time."""

    def __init__(self, catalog: _Catalog) -> None:
        self.catalog = catalog

    def answer(self, route: _Route, query: Query, clock: datetime) -> Json:
        handlers: dict[str, Callable[[str, Query, datetime], Json]] = {
            "user_by_username": self._user_by_username,
            "user_by_id": self._user_by_id,
            "timeline": self._timeline,
            "mentions": self._mentions,
            "search": self._search,
        }
        return handlers[route.action](route.arg, query, clock)

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
        kinds = {POST} if "replies" in excluded else {POST, REPLY}
        return self._listing("tweets", user_id, params, clock, kinds)

    def _mentions(self, user_id: str, query: Query, clock: datetime) -> Json:
        params = _Params(query, (*_LIST_PARAMS, "pagination_token"))
        return self._listing("mentions", user_id, params, clock, {MENTION})

    def _listing(
        self, endpoint: str, user_id: str, params: _Params, clock: datetime, kinds: set[str]
    ) -> Json:
        _check_path_id(user_id)
        max_results = params.max_results(5, 100)
        fields = _Fields.parse(params, TWEET_EXPANSIONS)
        window = _window(params, endpoint, "pagination_token")
        items: list[TrafficItem] = []
        if user_id == self.catalog.brand_user_id:
            items = [i for i in _visible(self.catalog.items, clock) if i.kind in kinds]
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
            for i in _visible(self.catalog.items, clock)
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
                    self.catalog.user_id(handle), self.catalog.user_json(handle, fields.user)
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


def _visible(items: Iterable[TrafficItem], clock: datetime) -> list[TrafficItem]:
    return [i for i in items if i.created_at <= clock]


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


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the sandbox received it (Authorization redacted)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    received_at: float
    status: int = 0  # 0 while unanswered, or when the connection was dropped (stop during "slow")

    def to_json(self) -> Json:
        return dataclasses.asdict(self)


@dataclass
class _Fault:
    kind: str
    remaining: int
    endpoint: str | None
    delay: float
    reset_in: float

    def matches(self, endpoint: str) -> bool:
        return self.endpoint is None or self.endpoint == endpoint


@dataclass
class _RateWindow:
    limit: int
    remaining: int
    reset: int


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


_FAULT_STATUS = {
    "429": (429, "Too Many Requests"),
    "500": (500, "Internal Server Error"),
    "503": (503, "Service Unavailable"),
    "expired_token": (401, "Unauthorized"),
}


def _encode(body: Json | list[Json]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _rate_headers(limit: int, remaining: int, reset: int) -> tuple[tuple[str, str], ...]:
    return (
        ("x-rate-limit-limit", str(limit)),
        ("x-rate-limit-remaining", str(remaining)),
        ("x-rate-limit-reset", str(reset)),
    )


def _truncated(body: bytes) -> bytes:
    """A valid prefix of ``body`` cut in the middle (never valid JSON)."""
    text = body.decode("utf-8")
    return text[: max(1, len(text) // 2)].encode("utf-8")


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: "<redacted>" if k.lower() == "authorization" else v for k, v in headers.items()}


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _json_object(body: bytes) -> Json:
    payload = json.loads(body.decode("utf-8") or "{}")
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload


def _number(payload: Json, name: str, default: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _fault_from_json(payload: Json) -> _Fault:
    kind, times, endpoint = payload.get("kind"), payload.get("times", 1), payload.get("endpoint")
    if not isinstance(kind, str):
        raise ValueError("kind must be a string")
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError("times must be an integer")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError("endpoint must be a string or null")
    return _Fault(
        kind, times, endpoint, _number(payload, "delay", 5.0), _number(payload, "reset_in", 2.0)
    )


def _validate_fault(fault: _Fault) -> None:
    if fault.kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {FAULT_KINDS}")
    if fault.endpoint is not None and fault.endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {fault.endpoint!r}; expected one of {ENDPOINTS}")
    if fault.remaining < 1:
        raise ValueError("times must be at least 1")
    if fault.delay < 0 or fault.reset_in < 0:
        raise ValueError("delay and reset_in must not be negative")


def _parse_clock(payload: Json) -> datetime:
    value = payload.get("clock")
    if not isinstance(value, str):
        raise ValueError("clock must be an ISO-8601 string")
    return datetime.fromisoformat(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: XSandbox, port: int) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn): not needed on loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "XSandbox/1.0"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: the sandbox logs through :mod:`logging` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(min(max(length, 0), _MAX_CONTROL_BODY)) if length > 0 else b""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        body = self._read_body()
        sandbox = self._server.sandbox
        answer: _Answer | None
        if split.path.startswith(_CONTROL_PREFIX):
            answer = sandbox._control(self.command, split.path, body)
        else:
            query = parse_qs(split.query, keep_blank_values=True)
            answer = sandbox._serve(self.command, split.path, query, dict(self.headers.items()))
        if answer is None:
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", CONTENT_TYPE)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


# --------------------------------------------------------------------------- the sandbox


class XSandbox:
    """A local X API v2 server over deterministic generated traffic.

    Only items with ``created_at <= clock`` are visible.  Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        brand_handle: str = "acme",
        brand_user_id: str = "1500000000000000001",
        keywords: Sequence[str] = ("acme",),
        start: datetime | None = None,
        end: datetime | None = None,
        clock: datetime | None = None,
        bearer_token: str | None = None,
        traffic: Sequence[TrafficItem] | None = None,
        port: int = 0,
        **rates: Unpack[TrafficRates],
    ) -> None:
        _check_identity(brand_handle, brand_user_id)
        self.port = port
        if traffic is not None and rates:
            raise ValueError("traffic rates apply only to generated traffic")
        self.brand_handle = brand_handle
        self.brand_user_id = brand_user_id
        self.keywords = tuple(keywords)
        self.bearer_token = bearer_token
        self.traffic_end = _default_end(end, traffic)
        self.traffic_start = (
            _as_utc(start, "start") if start else self.traffic_end - timedelta(days=1)
        )
        self.items: list[TrafficItem] = (
            list(traffic)
            if traffic is not None
            else generate_traffic(
                seed=seed,
                brand_handle=brand_handle,
                keywords=self.keywords,
                start=self.traffic_start,
                end=self.traffic_end,
                **rates,
            )
        )
        self._catalog = _Catalog(self.items, brand_handle, brand_user_id)
        self._api = _Api(self._catalog)
        self._lock = threading.Lock()
        self._clock = _as_utc(clock, "clock") if clock else self.traffic_end
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._rate_windows: dict[str, _RateWindow] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------

    def start(self) -> str:
        """Bind 127.0.0.1 (``port``; 0 picks a free one), serve in a thread, return the URL."""
        if self._server is not None:
            raise RuntimeError("the X sandbox is already running")
        self._stopping.clear()
        server = _Server(self, self.port)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"x-sandbox-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        logger.debug("X sandbox listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving, dropping any response still waiting on a "slow" fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        logger.debug("X sandbox stopped")

    def __enter__(self) -> XSandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the X sandbox is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    # state --------------------------------------------------------------------

    @property
    def clock(self) -> datetime:
        with self._lock:
            return self._clock

    @clock.setter
    def clock(self, when: datetime) -> None:
        self.set_clock(when)

    def set_clock(self, when: datetime) -> None:
        """Move the sandbox's "now" (timezone-aware); items up to it become visible."""
        when = _as_utc(when, "clock")
        with self._lock:
            self._clock = when
        logger.debug("X sandbox clock set to %s", when.isoformat())

    def visible(self) -> list[TrafficItem]:
        return _visible(self.items, self.clock)

    def tweet_id(self, item: TrafficItem) -> str:
        return self._catalog.tweet_id(item)

    def user_id(self, handle: str) -> str:
        return self._catalog.user_id(handle)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def add_fault(
        self,
        kind: str,
        *,
        times: int = 1,
        endpoint: str | None = None,
        delay: float = 5.0,
        reset_in: float = 2.0,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``endpoint`` (None: any endpoint)."""
        self._queue_fault(_Fault(kind, times, endpoint, delay, reset_in))

    def _queue_fault(self, fault: _Fault) -> None:
        _validate_fault(fault)
        with self._lock:
            self._faults.append(fault)
        logger.debug("X sandbox fault queued: %s", fault)

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return dataclasses.replace(fault)
        return None

    # API requests ---------------------------------------------------------------

    def _serve(
        self, method: str, path: str, query: Query, headers: Mapping[str, str]
    ) -> _Answer | None:
        started = time.monotonic()
        record = RecordedRequest(method, path, query, _redacted(headers), started)
        with self._lock:
            index = len(self._requests)
            self._requests.append(record)
        answer = self._answer(method, path, query, headers)
        status = 0 if answer is None else answer.status
        with self._lock:
            self._requests[index] = dataclasses.replace(record, status=status)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("%s %s %s -> %s (%.1f ms)", method, path, query, status, elapsed_ms)
        return answer

    def _answer(
        self, method: str, path: str, query: Query, headers: Mapping[str, str]
    ) -> _Answer | None:
        route = _resolve(method, path)
        if route is None:
            return self._plain_answer(404, problem(404, "Not Found"), "other")
        token = _bearer(headers)
        if token is None or (self.bearer_token is not None and token != self.bearer_token):
            return self._plain_answer(401, problem(401, "Unauthorized"), route.endpoint)
        fault = self._take_fault(route.endpoint)
        if fault is None:
            return self._api_answer(route, query)
        if fault.kind != "slow":
            return self._fault_answer(fault, route, query)
        if self._stopping.wait(fault.delay):
            return None
        return self._api_answer(route, query)

    def _rate_window(self, endpoint: str) -> _RateWindow:
        """The current rate-limit window of ``endpoint`` (call with the lock held)."""
        now = time.time()
        window = self._rate_windows.get(endpoint)
        if window is None or now >= window.reset:
            limit = RATE_LIMITS.get(endpoint, DEFAULT_RATE_LIMIT)
            window = _RateWindow(limit, limit, math.ceil(now) + RATE_WINDOW_SECONDS)
            self._rate_windows[endpoint] = window
        return window

    def _plain_answer(self, status: int, body: Json, endpoint: str) -> _Answer:
        with self._lock:
            window = self._rate_window(endpoint)
            headers = _rate_headers(window.limit, window.remaining, window.reset)
        return _Answer(status, _encode(body), headers)

    def _api_answer(self, route: _Route, query: Query) -> _Answer:
        with self._lock:
            window = self._rate_window(route.endpoint)
            allowed = window.remaining > 0
            window.remaining -= 1 if allowed else 0
            headers = _rate_headers(window.limit, window.remaining, window.reset)
            clock = self._clock
        if not allowed:
            return _Answer(429, _encode(problem(429, "Too Many Requests")), headers)
        try:
            status, body = 200, self._api.answer(route, query, clock)
        except ApiError as error:
            status, body = error.status, error.body
        except Exception:  # a sandbox bug must still answer like a server would
            logger.exception("X sandbox failed to answer %s", route)
            status, body = 500, problem(500, "Internal Server Error")
        return _Answer(status, _encode(body), headers)

    def _fault_answer(self, fault: _Fault, route: _Route, query: Query) -> _Answer:
        if fault.kind == "malformed":
            normal = self._api_answer(route, query)
            return _Answer(200, _truncated(normal.body), normal.headers)
        status, title = _FAULT_STATUS[fault.kind]
        answer = self._plain_answer(status, problem(status, title), route.endpoint)
        if fault.kind != "429":
            return answer
        limit = RATE_LIMITS.get(route.endpoint, DEFAULT_RATE_LIMIT)
        reset = math.ceil(time.time() + fault.reset_in)
        return _Answer(429, answer.body, _rate_headers(limit, 0, reset))

    # control API -----------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Answer:
        try:
            payload = self._control_payload(method, path.rstrip("/"), body)
        except ValueError as error:
            return _Answer(400, _encode({"error": str(error)}))
        if payload is None:
            return _Answer(404, _encode({"error": f"no control endpoint {method} {path}"}))
        return _Answer(200, _encode(payload))

    def _control_payload(self, method: str, path: str, body: bytes) -> Json | list[Json] | None:
        if (method, path) == ("POST", "/_sandbox/faults"):
            self._queue_fault(_fault_from_json(_json_object(body)))
            with self._lock:
                pending = sum(f.remaining for f in self._faults)
            return {"ok": True, "pending": pending}
        if (method, path) == ("POST", "/_sandbox/clock"):
            self.set_clock(_parse_clock(_json_object(body)))
            return {"clock": format_time(self.clock)}
        if (method, path) == ("GET", "/_sandbox/clock"):
            return {"clock": format_time(self.clock)}
        if (method, path) == ("GET", "/_sandbox/requests"):
            return [r.to_json() for r in self.requests]
        return None


def _check_identity(brand_handle: str, brand_user_id: str) -> None:
    if not re.fullmatch(_USERNAME_PATTERN, brand_handle):
        raise ValueError(f"brand_handle must match {_USERNAME_PATTERN}: {brand_handle!r}")
    if not re.fullmatch(_ID_PATTERN, brand_user_id):
        raise ValueError(f"brand_user_id must match {_ID_PATTERN}: {brand_user_id!r}")


def _default_end(end: datetime | None, traffic: Sequence[TrafficItem] | None) -> datetime:
    if end is not None:
        return _as_utc(end, "end")
    if traffic:
        return max(item.created_at for item in traffic).astimezone(UTC)
    return datetime.now(UTC).replace(microsecond=0)
