"""A deterministic local server speaking the Mastodon 4.x REST API (the parts a monitor reads).

It serves generated :mod:`monitor.sandbox.traffic` as one Mastodon instance: the brand's statuses
(its posts, and its replies with ``in_reply_to_id`` / ``in_reply_to_account_id`` set), customers'
statuses that mention ``@brand`` (with ``mentions[]``) and their ``mention`` notifications, a
``favourite`` notification for each brand post, and keyword hits as plain statuses.  Endpoints:
``accounts/lookup``, ``accounts/verify_credentials``, ``accounts/:id/statuses``,
``notifications`` and ``v2/search``, with Mastodon's ``limit``, ``max_id`` / ``since_id`` /
``min_id`` semantics, ``Link`` headers (absolute URLs, ``rel="next"`` / ``rel="prev"``),
``X-RateLimit-*`` headers (the reset an ISO-8601 time) and ``{"error": ...}`` bodies.  Entities
are shaped like the recorded Mastodon 4.6 answers in ``tests/fixtures/mastodon/``.  The server,
clock, recording, faults and control API come from :class:`SandboxServer`.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, Unpack
from urllib.parse import urlencode, urlsplit

from monitor.sandbox.common import Catalog, Params, QuerySyntax, require
from monitor.sandbox.limits import HeaderNames, RateLimiter, RateWindow, aligned
from monitor.sandbox.server import (
    ApiError,
    Headers,
    Json,
    Request,
    Response,
    Route,
    format_time,
    route,
)
from monitor.sandbox.traffic import (
    MENTION,
    POST,
    SandboxOptions,
    TrafficItem,
    TrafficSandbox,
)

T = TypeVar("T")

ENDPOINTS = ("lookup", "verify_credentials", "statuses", "notifications", "search")
PUBLIC_ENDPOINTS = frozenset({"lookup", "statuses", "search"})
# (default, maximum) of ``limit`` per endpoint, as Mastodon 4.x clamps them
STATUS_LIMITS = (20, 40)
NOTIFICATION_LIMITS = (40, 80)
SEARCH_LIMITS = (20, 40)
RATE_LIMIT = 300
RATE_WINDOW_SECONDS = 300
_RATE_HEADERS = HeaderNames("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
DEFAULT_BRAND_ACCOUNT_ID = "110000000000000001"
INVALID_TOKEN = "The access token is invalid"
EXPIRED_TOKEN = "The access token expired"
NOT_FOUND = "Record not found"
TOO_MANY_REQUESTS = "Too many requests"
# Link parameters Mastodon carries over (note: account statuses drop exclude_reblogs)
STATUS_LINK_PARAMS = ("limit", "only_media", "exclude_replies")
NOTIFICATION_LINK_PARAMS = ("limit", "account_id", "types[]", "exclude_types[]", "include_filtered")

_USERNAME = re.compile(r"[A-Za-z0-9_]{1,30}")
_ID = re.compile(r"[0-9]{1,19}")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,30})\b")
_RICH = re.compile(r"(?<![\w@])@(?P<user>\w{1,30})\b|(?<![\w#&])#(?P<tag>\w*[^\W\d]\w*)")
_SYNTAX = QuerySyntax(signs="+-", parens=False, skip=frozenset(), other="drop")
_RUBY_INT = re.compile(r"\s*([+-]?\d+)")
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _error(status: int, message: str) -> ApiError:
    """A Mastodon error answer: ``{"error": message}``."""
    return ApiError(status, {"error": message})


def status_snowflake(item: TrafficItem) -> int:
    """Mastodon-style id: milliseconds since the Unix epoch shifted 16 bits, seq in the low bits."""
    millis = (item.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return (millis << 16) | (item.seq & 0xFFFF)


def format_reset(when: datetime) -> str:
    """``X-RateLimit-Reset`` as Mastodon writes it: ``2026-08-01T13:55:00.212100Z``."""
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


def _ruby_int(raw: str) -> int:
    """``String#to_i``: the leading integer, 0 when there is none."""
    match = _RUBY_INT.match(raw)
    return int(match.group(1)) if match else 0


def _hash_number(text: str, low: int, span: int) -> int:
    return low + int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % span


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _View:
    """Who asks, when, and under which origin: what entity JSON depends on."""

    origin: str
    clock: datetime
    authed: bool


class _Params(Params):
    """The query string of one request, read the way Rails/Mastodon reads it."""

    def values(self, name: str) -> list[str]:
        """An array parameter: ``name[]=a&name[]=b`` (or a single ``name=a``)."""
        return [*self._query.get(f"{name}[]", []), *self._query.get(name, [])]

    def flag(self, name: str) -> bool:
        return (self.get(name) or "").lower() in ("1", "true", "t", "on", "yes")

    def limit(self, limits: tuple[int, int]) -> int:
        default, maximum = limits
        raw = self.get("limit")
        return default if not raw else min(abs(_ruby_int(raw)), maximum)

    def id(self, name: str) -> int | None:
        raw = self.get(name)
        if not raw:
            return None
        if not _ID.fullmatch(raw):
            raise _error(400, f"Invalid {name}")
        return int(raw)


@dataclass(frozen=True)
class _Bounds:
    max_id: int | None
    since_id: int | None
    min_id: int | None

    @classmethod
    def parse(cls, params: _Params) -> _Bounds:
        return cls(params.id("max_id"), params.id("since_id"), params.id("min_id"))

    def admits(self, entry_id: int) -> bool:
        below = self.max_id is None or entry_id < self.max_id
        if self.min_id is not None:  # paginate_by_min_id ignores since_id
            return below and entry_id > self.min_id
        return below and (self.since_id is None or entry_id > self.since_id)


def paginate(entries: Iterable[tuple[int, T]], bounds: _Bounds, limit: int) -> list[tuple[int, T]]:
    """Mastodon's ``to_a_paginated_by_id``: newest-first; with ``min_id`` the ``limit`` entries
    immediately newer than it, otherwise the newest ``limit`` below ``max_id`` / above
    ``since_id``."""
    admitted = sorted((e for e in entries if bounds.admits(e[0])), key=lambda e: e[0])
    if limit <= 0:
        return []
    chosen = admitted[:limit] if bounds.min_id is not None else admitted[-limit:]
    return chosen[::-1]


def link_header(
    url: str, params: _Params, kept: Sequence[str], page_ids: Sequence[int], *, has_next: bool
) -> str | None:
    """``Link: <…max_id=oldest>; rel="next", <…min_id=newest>; rel="prev"`` (absolute URLs)."""
    if not page_ids:
        return None
    carried = [(name, value) for name in kept for value in params.all(name)]

    def link(bound: str, value: int, rel: str) -> str:
        query = urlencode(sorted([*carried, (bound, str(value))], key=lambda p: p[0]))
        return f'<{url}?{query}>; rel="{rel}"'

    links = [link("max_id", page_ids[-1], "next")] if has_next else []
    links.append(link("min_id", page_ids[0], "prev"))
    return ", ".join(links)


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class _Notification:
    id: int
    type: str
    created_at: datetime
    actor: str
    item: TrafficItem


class _Catalog(Catalog):
    """The instance's accounts, statuses and notifications with their ids (immutable)."""

    def __init__(
        self, items: Sequence[TrafficItem], brand_handle: str, brand_account_id: str
    ) -> None:
        super().__init__(
            sorted(items, key=status_snowflake), brand_handle, brand_account_id, _MENTION
        )
        self.notifications = self._build_notifications()
        self._mention_notification = {
            n.item.seq: n.id for n in self.notifications if n.type == "mention"
        }

    def _build_notifications(self) -> list[_Notification]:
        drafts: list[tuple[datetime, int, str, str, TrafficItem]] = []
        for item in self.items:
            if item.kind == MENTION:
                drafts.append((item.created_at, 0, "mention", item.author_handle, item))
            elif item.kind == POST:
                fan = f"user{1000 + (item.seq * 7919) % 9000}"
                when = item.created_at + timedelta(minutes=1 + item.seq % 90)
                drafts.append((when, 1, "favourite", fan, item))
        drafts.sort(key=lambda d: (d[0], d[1], d[4].seq))
        return [
            _Notification(i + 1, kind, when, actor, item)
            for i, (when, _, kind, actor, item) in enumerate(drafts)
        ]

    # ids -----------------------------------------------------------------------

    def status_id(self, item: TrafficItem) -> str:
        return str(status_snowflake(item))

    def mention_notification_id(self, item: TrafficItem) -> str:
        return str(self._mention_notification[item.seq])

    def visible(self, clock: datetime) -> list[TrafficItem]:
        return [i for i in self.items if i.created_at <= clock]

    # JSON ----------------------------------------------------------------------

    def account_json(self, handle: str, view: _View) -> Json:
        account_id = self.id(handle)
        is_brand = account_id == self.brand_id
        own = [i for i in self.visible(view.clock) if i.author_handle.lower() == handle.lower()]
        created = datetime(2017, 4, 1, tzinfo=UTC) + timedelta(days=int(account_id[-6:]) % 2500)
        missing = f"{view.origin}/avatars/original/missing.png"
        header = f"{view.origin}/headers/original/missing.png"
        return {
            "id": account_id,
            "username": handle,
            "acct": handle,
            "display_name": handle[:1].upper() + handle[1:],
            "locked": False,
            "bot": False,
            "discoverable": True,
            "indexable": True,
            "group": False,
            "created_at": format_time(created),
            "note": f"<p>Official account of {html.escape(handle)}.</p>" if is_brand else "",
            "url": f"{view.origin}/@{handle}",
            "uri": f"{view.origin}/ap/users/{account_id}",
            "avatar": missing,
            "avatar_static": missing,
            "avatar_description": "",
            "header": header,
            "header_static": header,
            "header_description": "",
            "followers_count": _hash_number(f"followers:{handle}", 0, 5000 if is_brand else 300),
            "following_count": _hash_number(f"following:{handle}", 0, 300),
            "statuses_count": len(own),
            "last_status_at": f"{own[-1].created_at:%Y-%m-%d}" if own else None,
            "hide_collections": None,
            "show_media": True,
            "show_media_replies": True,
            "show_featured": True,
            "noindex": False,
            "feature_approval": {"automatic": [], "manual": [], "current_user": "denied"},
            "emojis": [],
            "roles": [],
            "fields": [],
        }

    def credential_account_json(self, view: _View) -> Json:
        """``verify_credentials``: the brand's Account plus ``source`` and ``role``."""
        account = self.account_json(self.brand_handle, view)
        source = {
            "privacy": "public",
            "sensitive": False,
            "language": None,
            "note": "",
            "fields": [],
            "follow_requests_count": 0,
            "hide_collections": None,
            "discoverable": True,
            "indexable": True,
            "attribution_domains": [],
            "quote_policy": "public",
        }
        out: Json = {}
        for name, value in account.items():
            if name == "emojis":
                out["source"] = source
            out[name] = value
        out["role"] = {
            "id": "-99",
            "name": "",
            "permissions": "65536",
            "color": "",
            "highlighted": False,
            "collection_limit": 10,
        }
        return out

    def status_json(self, item: TrafficItem, view: _View) -> Json:
        status_id = self.status_id(item)
        account_id = self.id(item.author_handle)
        parent = self.parent(item)
        out: Json = {
            "id": status_id,
            "created_at": format_time(item.created_at),
            "in_reply_to_id": self.status_id(parent) if parent else None,
            "in_reply_to_account_id": self.id(parent.author_handle) if parent else None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": item.lang,
            "uri": f"{view.origin}/ap/users/{account_id}/statuses/{status_id}",
            "url": f"{view.origin}/@{item.author_handle}/{status_id}",
            "replies_count": item.replies,
            "reblogs_count": item.reposts,
            "favourites_count": item.likes,
            "quotes_count": item.quotes,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
        }
        if view.authed and account_id == self.brand_id:
            out["pinned"] = False  # only on the token owner's own statuses
        out.update(
            {
                "content": self.content_html(item.text, view),
                "filtered": [],
                "reblog": None,
                "application": {"name": "Web", "website": None},
                "account": self.account_json(item.author_handle, view),
                "media_attachments": [],
                "mentions": self._mentions_json(item.text, view),
                "tags": self._tags_json(item.text, view),
                "emojis": [],
                "tagged_collections": [],
                "quote": None,
                "card": None,
                "poll": None,
                "quote_approval": {
                    "automatic": ["public"],
                    "manual": [],
                    "current_user": "automatic",
                },
            }
        )
        return out

    def notification_json(self, notification: _Notification, view: _View) -> Json:
        return {
            "id": str(notification.id),
            "type": notification.type,
            "created_at": format_time(notification.created_at),
            "group_key": f"ungrouped-{notification.id}",
            "account": self.account_json(notification.actor, view),
            "status": self.status_json(notification.item, view),
        }

    def content_html(self, text: str, view: _View) -> str:
        """Mastodon's HTML for a plain text: paragraphs, <br />, h-card mentions, hashtags."""
        paragraphs = (self._rich_text(p, view) for p in text.split("\n\n"))
        return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in paragraphs)

    def _rich_text(self, text: str, view: _View) -> str:
        out: list[str] = []
        last = 0
        for match in _RICH.finditer(text):
            out.append(html.escape(text[last : match.start()], quote=False))
            out.append(self._link(match, view))
            last = match.end()
        out.append(html.escape(text[last:], quote=False))
        return "".join(out)

    def _link(self, match: re.Match[str], view: _View) -> str:
        user, tag = match.group("user"), match.group("tag")
        if tag is not None:
            href = f"{view.origin}/tags/{tag.lower()}"
            return f'<a href="{href}" class="mention hashtag" rel="tag">#<span>{tag}</span></a>'
        handle = self.handle(user)
        if handle is None:
            return html.escape(match.group(0), quote=False)
        return (
            f'<span class="h-card" translate="no"><a href="{view.origin}/@{handle}" '
            f'class="u-url mention">@<span>{handle}</span></a></span>'
        )

    def _mentions_json(self, text: str, view: _View) -> list[Json]:
        mentions: dict[str, Json] = {}
        for match in _MENTION.finditer(text):
            handle = self.handle(match.group(1))
            if handle is not None:
                mentions.setdefault(
                    handle.lower(),
                    {
                        "id": self.id(handle),
                        "username": handle,
                        "url": f"{view.origin}/@{handle}",
                        "acct": handle,
                    },
                )
        return list(mentions.values())

    def _tags_json(self, text: str, view: _View) -> list[Json]:
        names = dict.fromkeys(
            m.group("tag").lower() for m in _RICH.finditer(text) if m.group("tag")
        )
        return [{"name": n, "url": f"{view.origin}/tags/{n}"} for n in names]


# --------------------------------------------------------------------------- search queries


@dataclass(frozen=True)
class SearchQuery:
    """Mastodon 4.x status search: every plain or ``+`` term must match, ``-`` terms must not.

    Terms match case-insensitively as whole words (``"quoted phrases"`` as phrases); operators
    such as ``from:`` or ``has:`` are ignored.
    """

    must: tuple[str, ...]
    must_not: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: str) -> SearchQuery:
        parsed = _SYNTAX.parse(query)
        return cls(parsed.terms, parsed.excluded)

    def matches(self, text: str) -> bool:
        lowered = text.lower()
        found = [
            re.search(rf"(?<!\w){re.escape(t)}(?!\w)", lowered)
            for t in (*self.must, *self.must_not)
        ]
        hits = [f is not None for f in found]
        return bool(self.must) and all(hits[: len(self.must)]) and not any(hits[len(self.must) :])


# --------------------------------------------------------------------------- the API


_Answer = tuple[Any, str | None]  # body, Link header


class _Api:
    """Answers API requests against a catalog as seen through a :class:`_View`."""

    def __init__(self, catalog: _Catalog, *, search_enabled: bool) -> None:
        self.catalog = catalog
        self.search_enabled = search_enabled

    def answer(self, route: Route, request: Request, view: _View) -> _Answer:
        handlers: dict[str, Callable[[str, _Params, _View], _Answer]] = {
            "lookup": self._lookup,
            "verify_credentials": self._verify_credentials,
            "statuses": self._statuses,
            "notifications": self._notifications,
            "search": self._search,
        }
        return handlers[route.endpoint](route.args[0], _Params(request.query), view)

    def _lookup(self, _arg: str, params: _Params, view: _View) -> _Answer:
        acct = (params.get("acct") or "").lstrip("@")
        username, _, domain = acct.partition("@")
        local = {urlsplit(view.origin).netloc, urlsplit(view.origin).hostname}
        handle = self.catalog.handle(username) if not domain or domain in local else None
        if handle is None:
            raise _error(404, NOT_FOUND)
        return self.catalog.account_json(handle, view), None

    def _verify_credentials(self, _arg: str, params: _Params, view: _View) -> _Answer:
        return self.catalog.credential_account_json(view), None

    def _statuses(self, account_id: str, params: _Params, view: _View) -> _Answer:
        handle = self.catalog.handle_for_id(account_id)
        if handle is None:
            raise _error(404, NOT_FOUND)
        limit, bounds = params.limit(STATUS_LIMITS), _Bounds.parse(params)
        items = [i for i in self.catalog.visible(view.clock) if i.author_handle == handle]
        if params.flag("exclude_replies"):
            items = [i for i in items if self._self_thread(i)]
        if params.flag("only_media") or params.flag("pinned"):
            items = []  # the sandbox has neither media nor pinned statuses
        tagged = (params.get("tagged") or "").lstrip("#").lower()
        if tagged:
            items = [i for i in items if re.search(rf"#{re.escape(tagged)}\b", i.text, re.I)]
        page = paginate(((status_snowflake(i), i) for i in items), bounds, limit)
        url = f"{view.origin}/api/v1/accounts/{account_id}/statuses"
        ids = [entry_id for entry_id, _ in page]
        link = link_header(url, params, STATUS_LINK_PARAMS, ids, has_next=len(page) == limit)
        return [self.catalog.status_json(i, view) for _, i in page], link

    def _self_thread(self, item: TrafficItem) -> bool:
        parent = self.catalog.parent(item)
        return parent is None or parent.author_handle == item.author_handle

    def _notifications(self, _arg: str, params: _Params, view: _View) -> _Answer:
        limit, bounds = params.limit(NOTIFICATION_LIMITS), _Bounds.parse(params)
        types, excluded = set(params.values("types")), set(params.values("exclude_types"))
        actor = params.get("account_id")
        chosen = [
            n
            for n in self.catalog.notifications
            if n.created_at <= view.clock
            and (not types or n.type in types)
            and n.type not in excluded
            and (actor is None or self.catalog.id(n.actor) == actor)
        ]
        page = paginate(((n.id, n) for n in chosen), bounds, limit)
        url = f"{view.origin}/api/v1/notifications"
        ids = [entry_id for entry_id, _ in page]
        link = link_header(url, params, NOTIFICATION_LINK_PARAMS, ids, has_next=True)
        return [self.catalog.notification_json(n, view) for _, n in page], link

    def _search(self, _arg: str, params: _Params, view: _View) -> _Answer:
        query = params.get("q")
        if not query:
            raise _error(400, "param is missing or the value is empty: q")
        offset_raw = params.get("offset")
        if offset_raw and not view.authed:
            raise _error(401, "Search queries pagination is not supported without authentication")
        offset, limit = max(0, _ruby_int(offset_raw or "0")), params.limit(SEARCH_LIMITS)
        kind = params.get("type")
        body: Json = {"accounts": [], "statuses": [], "hashtags": [], "collections": []}
        if kind in (None, "accounts"):
            body["accounts"] = self._search_accounts(query, view)[offset : offset + limit]
        if kind in (None, "statuses") and view.authed and self.search_enabled:
            body["statuses"] = self._search_statuses(query, params, view, offset, limit)
        if kind in (None, "hashtags"):
            body["hashtags"] = self._search_hashtags(query, view)[offset : offset + limit]
        return body, None

    def _search_statuses(
        self, query: str, params: _Params, view: _View, offset: int, limit: int
    ) -> list[Json]:
        search = SearchQuery.parse(query)
        bounds = _Bounds(params.id("max_id"), None, None)
        floor = params.id("min_id")
        account = params.get("account_id")
        hits = [
            i
            for i in self.catalog.visible(view.clock)
            if bounds.admits(status_snowflake(i))
            and (floor is None or status_snowflake(i) > floor)
            and (account is None or self.catalog.id(i.author_handle) == account)
            and search.matches(i.text)
        ]
        hits.sort(key=status_snowflake, reverse=True)  # newest first, whatever min_id says
        return [self.catalog.status_json(i, view) for i in hits[offset : offset + limit]]

    def _search_accounts(self, query: str, view: _View) -> list[Json]:
        wanted = query.strip().lstrip("@").lower()
        handles = sorted({i.author_handle for i in self.catalog.visible(view.clock)})
        return [
            self.catalog.account_json(h, view) for h in handles if wanted and wanted in h.lower()
        ]

    def _search_hashtags(self, query: str, view: _View) -> list[Json]:
        wanted = query.strip().lstrip("#").lower()
        tags = sorted(
            {
                m.group("tag").lower()
                for i in self.catalog.visible(view.clock)
                for m in _RICH.finditer(i.text)
                if m.group("tag")
            }
        )
        return [
            {"name": t, "url": f"{view.origin}/tags/{t}", "history": []}
            for t in tags
            if wanted and t.startswith(wanted)
        ]


# --------------------------------------------------------------------------- the sandbox


class MastodonSandbox(TrafficSandbox):
    """A local Mastodon instance over deterministic generated traffic.

    Only items with ``created_at <= clock`` are visible.  Any bearer token is accepted unless
    ``access_token`` is set; lookups, account statuses and search also answer without one (search
    then finds no statuses).  ``search_enabled=False`` is an instance without ElasticSearch:
    status search answers an empty list.  One rate-limit window of ``rate_limit`` requests per
    5 minutes covers every endpoint, as Mastodon's per-account limit does.
    """

    label = "Mastodon sandbox"
    platform = "mastodon"
    server_version = "Mastodon"
    endpoints = ENDPOINTS
    reset_headers = (_RATE_HEADERS.reset,)
    routes = (
        route("GET", r"/api/v1/accounts/lookup()", "lookup"),
        route("GET", r"/api/v1/accounts/verify_credentials()", "verify_credentials"),
        route("GET", r"/api/v1/accounts/([^/]+)/statuses", "statuses"),
        route("GET", r"/api/v1/notifications()", "notifications"),
        route("GET", r"/api/v2/search()", "search"),
    )

    def __init__(
        self,
        *,
        brand_account_id: str = DEFAULT_BRAND_ACCOUNT_ID,
        access_token: str | None = None,
        search_enabled: bool = True,
        rate_limit: int = RATE_LIMIT,
        **options: Unpack[SandboxOptions],
    ) -> None:
        require("brand_handle", options.get("brand_handle", "acme"), _USERNAME.pattern)
        require("brand_account_id", brand_account_id, _ID.pattern)
        self.brand_account_id = brand_account_id
        self.access_token = access_token
        self.rate_limit = rate_limit
        super().__init__(**options)
        self._catalog = _Catalog(self.items, self.brand_handle, brand_account_id)
        self._api = _Api(self._catalog, search_enabled=search_enabled)
        self.limiter = RateLimiter({"all": (rate_limit, RATE_WINDOW_SECONDS)}, reset=aligned)

    def status_id(self, item: TrafficItem) -> str:
        """The Mastodon status id of ``item``."""
        return self._catalog.status_id(item)

    native_id = status_id

    def account_id(self, handle: str) -> str:
        """The account id of ``handle`` (the brand's is ``brand_account_id``)."""
        return self._catalog.id(handle)

    def notification_id(self, item: TrafficItem) -> str:
        """The id of the ``mention`` notification of a mention item."""
        return self._catalog.mention_notification_id(item)

    # SandboxServer hooks ----------------------------------------------------------

    def authenticate(self, route: Route, request: Request) -> bool:
        """A presented token must be good; public endpoints also answer without one."""
        if request.bearer() is None:
            return route.endpoint in PUBLIC_ENDPOINTS and request.header("Authorization") is None
        return request.bearer_is(self.access_token)

    def answer(self, route: Route, request: Request) -> Response:
        """The API answer, with its ``Link`` header when it is a page."""
        view = _View(self.url, self.clock, request.bearer() is not None)
        body, link = self._api.answer(route, request, view)
        return Response.json(200, body, (("Link", link),) if link else ())

    def rate_windows(self, route: Route | None) -> tuple[str, ...]:
        """One window for every endpoint, as Mastodon's per-account limit."""
        return ("all",)

    def rate_headers(self, window: RateWindow) -> Headers:
        """Mastodon's rate-limit headers; the reset is an ISO-8601 time."""
        return _RATE_HEADERS.of(window, format_reset(datetime.fromtimestamp(window.reset, UTC)))

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        """``{"error": ...}`` from Mastodon; 502-504 as the HTML page of the nginx in front."""
        if status in (502, 503, 504):
            phrase = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(
                status, "Gateway Time-out"
            )
            page = _NGINX_PAGE.format(status=status, phrase=phrase)
            return Response.text(status, page, content_type="text/html")
        messages = {401: INVALID_TOKEN, 404: NOT_FOUND, 429: TOO_MANY_REQUESTS}
        body = {"error": messages.get(status, "Internal server error")}
        return Response.json(status, body, self.current_rate_headers(route))

    def unauthorized(self, route: Route, request: Request, *, expired: bool) -> Response:
        """401 ``{"error": "The access token is invalid"}`` (or "expired") with the challenge."""
        message = EXPIRED_TOKEN if expired else INVALID_TOKEN
        challenge = (
            "WWW-Authenticate",
            f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{message}"',
        )
        return Response.json(
            401, {"error": message}, (challenge, *self.current_rate_headers(route))
        )
