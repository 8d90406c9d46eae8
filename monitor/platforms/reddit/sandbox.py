"""A deterministic local server speaking Reddit's OAuth API wire format, as praw 8 reads it.

It serves generated :mod:`monitor.sandbox.traffic` so that the real ``praw.Reddit`` (pointed at
``127.0.0.1`` with ``oauth_url`` / ``reddit_url``) can be driven against it: the token endpoint
(``POST /api/v1/access_token``, HTTP Basic client credentials, ``password`` and
``client_credentials`` grants), ``/api/v1/me``, ``/user/<name>/about``, the user listings
(``overview``, ``submitted``, ``comments``), the inbox (``/message/inbox``, ``mentions``,
``comments``, ``selfreply``, ``unread``), subreddit search (``/r/<a+b>/search``) and ``/api/info``.
The server, clock, recording, faults and control API come from
:class:`monitor.sandbox.server.SandboxServer`; this module adds Reddit's things (t1 comments, t2
accounts, t3 submissions) shaped like the recorded responses, base36 ids that grow with time,
``after``/``before``/``limit`` pagination with ``"after": null`` on the last page, the
``x-ratelimit-*`` headers, and Reddit's error answers.

How the platform-neutral traffic maps onto Reddit:

* brand posts -> the brand's self-post submissions in a few subreddits;
* mentions -> customers' comments: some reply to one of the brand's recent submissions (inbox
  type ``post_reply``), the others mention ``u/<brand>`` in another thread (``username_mention``);
* brand replies -> the brand's comments whose ``parent_id`` is the mention's fullname;
* keyword hits -> customers' submissions containing the keyword (Reddit's search returns
  submissions only).
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Unpack

from monitor import clock
from monitor.sandbox.common import Catalog, Params, QuerySyntax
from monitor.sandbox.limits import RateLimiter, RateWindow, exact
from monitor.sandbox.server import (
    ApiError,
    Headers,
    Json,
    Query,
    Request,
    Response,
    Route,
    route,
)
from monitor.sandbox.traffic import (
    KEYWORD,
    MENTION,
    POST,
    REPLY,
    SandboxOptions,
    TrafficItem,
    TrafficSandbox,
)

ENDPOINTS = ("token", "me", "about", "overview", "inbox", "search", "info")
TOKEN_PATH = "/api/v1/access_token"
TOKEN_LIFETIME = 86400
# One budget per client; windows of 60 s (the recorded 2025 answer says "reset: 30") keep
# prawcore's pacing, which assumes 600 s windows, from delaying a caller until ~90% is used.
RATE_LIMIT = 1000
RATE_WINDOW_SECONDS = 60
LISTING_CAP = 1000  # Reddit listings end at about 1,000 items
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
POST_REPLY_WINDOW = timedelta(days=3)  # a mention may answer a brand post this recent
T3_BASE = int("1p00000", 36)
T1_BASE = int("n000000", 36)
BRAND_SUBREDDITS = ("gadgets",)  # besides the brand's own subreddit
CUSTOMER_SUBREDDITS = ("AskReddit", "gadgets", "BuyItForLife", "CustomerService")
THREAD_TITLES = ("Daily discussion thread", "Weekly help thread", "Recommendation megathread")
INBOX_FEEDS: dict[str, frozenset[str] | None] = {
    "inbox": None,
    "unread": None,
    "mentions": frozenset({"username_mention"}),
    "comments": frozenset({"comment_reply"}),
    "selfreply": frozenset({"post_reply"}),
}
SEARCH_WINDOWS = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
_NAME = r"[A-Za-z0-9_-]{1,50}"
_HANDLE_TOKEN = re.compile(r"(?<![\w@/])@(\w+)")
_SYNTAX = QuerySyntax(
    operators=frozenset({"author", "subreddit"}),
    skip=frozenset({"OR", "AND", "NOT"}),
    other="value",
)
_TRUE = frozenset({"1", "true", "on", "yes"})


# --------------------------------------------------------------------------- errors and helpers


def error_body(status: int) -> Json:
    """Reddit's error body: ``{"message": "<reason>", "error": <status>}``."""
    return {"message": HTTPStatus(status).phrase, "error": status}


def _error(status: int, headers: Headers = ()) -> ApiError:
    return ApiError(status, error_body(status), headers)


def base36(number: int) -> str:
    """``number`` in Reddit's base36 (digits, then lower-case letters)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def _pick(options: Sequence[str], *salt: object) -> str:
    return options[_digest(*salt) % len(options)]


def reddit_text(text: str) -> str:
    """Traffic text in Reddit's idiom: ``@name`` becomes ``u/name``."""
    return _HANDLE_TOKEN.sub(lambda m: f"u/{m.group(1)}", text)


def _without_addressee(text: str, handle: str) -> str:
    return re.sub(rf"^\s*@{re.escape(handle)}\b[\s,:]*", "", text, flags=re.IGNORECASE)


def _body_html(text: str) -> str:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>\n" for p in text.split("\n\n") if p)
    return f'<!-- SC_OFF --><div class="md">{paragraphs}</div><!-- SC_ON -->'


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())[:8]
    return "_".join(words) or "_"


# --------------------------------------------------------------------------- things


@dataclass(frozen=True)
class Thing:
    """One traffic item as a Reddit thing: a t3 submission or a t1 comment."""

    item: TrafficItem
    kind: str
    id36: str
    subreddit: str
    text: str
    link_id36: str
    link_title: str
    link_author: str
    parent: str | None = None
    inbox_type: str | None = None
    dest: str | None = None

    @property
    def fullname(self) -> str:
        """``t1_<id>`` or ``t3_<id>``."""
        return f"{self.kind}_{self.id36}"

    @property
    def author(self) -> str:
        """The author's user name."""
        return self.item.author_handle

    @property
    def created_utc(self) -> float:
        """Seconds since the epoch, as Reddit sends them (a float with no fraction)."""
        return float(math.floor(self.item.created_at.timestamp()))

    @property
    def permalink(self) -> str:
        """The path of the thing on reddit.com."""
        base = f"/r/{self.subreddit}/comments/{self.link_id36}/{_slug(self.link_title)}/"
        return base if self.kind == "t3" else f"{base}{self.id36}/"


class _Catalog(Catalog):
    """The sandbox's things and accounts (immutable once built)."""

    def __init__(self, items: Sequence[TrafficItem], brand_handle: str) -> None:
        brand_id = _user_id36(brand_handle)
        super().__init__(items, brand_handle, brand_id, _HANDLE_TOKEN, extra=("AutoModerator",))
        self.brand_subreddits = (brand_handle, *BRAND_SUBREDDITS)
        self.things: list[Thing] = []
        self._by_seq: dict[int, Thing] = {}
        self._build()
        self.by_name = {t.fullname: t for t in self.things}
        self.subreddits = {
            s.lower(): s
            for s in (
                *self.brand_subreddits,
                *CUSTOMER_SUBREDDITS,
                *(t.subreddit for t in self.things),
            )
        }

    def _build(self) -> None:
        brand_posts: list[Thing] = []
        for item in self.items:
            if item.kind == POST:
                thing = self._submission(item, _pick(self.brand_subreddits, "sub", item.seq))
                brand_posts.append(thing)
            elif item.kind == KEYWORD:
                thing = self._submission(item, _pick(CUSTOMER_SUBREDDITS, "sub", item.seq))
            elif item.kind == MENTION:
                thing = self._mention(item, brand_posts)
            elif item.kind == REPLY:
                thing = self._reply(item)
            else:
                raise ValueError(f"unknown traffic kind {item.kind!r}")
            self.things.append(thing)
            self._by_seq[item.seq] = thing

    def _submission(self, item: TrafficItem, subreddit: str) -> Thing:
        id36 = base36(T3_BASE + 2 * item.seq)
        title = reddit_text(item.text)
        return Thing(
            item=item,
            kind="t3",
            id36=id36,
            subreddit=subreddit,
            text=title,
            link_id36=id36,
            link_title=title,
            link_author=item.author_handle,
        )

    def _mention(self, item: TrafficItem, brand_posts: list[Thing]) -> Thing:
        recent = [
            p for p in brand_posts if item.created_at - p.item.created_at <= POST_REPLY_WINDOW
        ]
        id36 = base36(T1_BASE + item.seq)
        if recent and _digest("post-reply", item.seq) % 2 == 0:
            post = recent[-1]
            body = reddit_text(_without_addressee(item.text, self.brand_handle))
            return Thing(
                item=item,
                kind="t1",
                id36=id36,
                subreddit=post.subreddit,
                text=body or reddit_text(item.text),
                link_id36=post.id36,
                link_title=post.link_title,
                link_author=post.author,
                parent=post.fullname,
                inbox_type="post_reply",
                dest=self.brand_handle,
            )
        thread = base36(T3_BASE + 2 * item.seq + 1)  # a thread the sandbox does not serve
        return Thing(
            item=item,
            kind="t1",
            id36=id36,
            subreddit=_pick(CUSTOMER_SUBREDDITS, "sub", item.seq),
            text=reddit_text(item.text),
            link_id36=thread,
            link_title=_pick(THREAD_TITLES, "thread", item.seq),
            link_author="AutoModerator",
            parent=f"t3_{thread}",
            inbox_type="username_mention",
            dest=self.brand_handle,
        )

    def _reply(self, item: TrafficItem) -> Thing:
        assert item.in_reply_to_seq is not None, "a reply answers an earlier item"
        parent = self._by_seq[item.in_reply_to_seq]
        return Thing(
            item=item,
            kind="t1",
            id36=base36(T1_BASE + item.seq),
            subreddit=parent.subreddit,
            text=reddit_text(item.text),
            link_id36=parent.link_id36,
            link_title=parent.link_title,
            link_author=parent.link_author,
            parent=parent.fullname,
        )

    def id(self, handle: str) -> str:
        """The base36 id of the account ``handle`` (its fullname without ``t2_``)."""
        return _user_id36(handle)

    def thing(self, item: TrafficItem) -> Thing:
        return self._by_seq[item.seq]


# --------------------------------------------------------------------------- JSON shapes


def _common(thing: Thing) -> Json:
    item = thing.item
    return {
        "subreddit_id": f"t5_{base36(_digest('subreddit', thing.subreddit.lower()) % 36**6)}",
        "approved_by": None,
        "author": thing.author,
        "author_fullname": f"t2_{_user_id36(thing.author)}",
        "banned_by": None,
        "likes": None,
        "saved": False,
        "id": thing.id36,
        "gilded": 0,
        "archived": False,
        "stickied": False,
        "report_reasons": None,
        "score": item.likes,
        "ups": item.likes,
        "downs": 0,
        "edited": False,
        "author_flair_css_class": None,
        "author_flair_text": None,
        "subreddit": thing.subreddit,
        "subreddit_name_prefixed": f"r/{thing.subreddit}",
        "name": thing.fullname,
        "created": thing.created_utc,
        "created_utc": thing.created_utc,
        "distinguished": None,
        "quarantine": False,
        "over_18": False,
        "removal_reason": None,
        "user_reports": [],
        "mod_reports": [],
        "num_reports": None,
        "permalink": thing.permalink,
    }


def submission_json(thing: Thing, escape: Callable[[str], str] = str) -> Json:
    """A t3 submission's ``data``, the keys of the recorded ``/user/<name>/submitted`` answer."""
    item = thing.item
    data = _common(thing)
    data.update(
        {
            "domain": f"self.{thing.subreddit}",
            "media_embed": {},
            "selftext_html": None,
            "selftext": "",
            "suggested_sort": None,
            "secure_media": None,
            "link_flair_text": None,
            "from_kind": None,
            "clicked": False,
            "media": None,
            "num_comments": item.replies,
            "num_crossposts": item.reposts,
            "upvote_ratio": 1.0,
            "thumbnail": "self",
            "hide_score": False,
            "link_flair_css_class": None,
            "secure_media_embed": {},
            "from": None,
            "is_self": True,
            "from_id": None,
            "locked": False,
            "url": f"https://www.reddit.com{thing.permalink}",
            "title": escape(thing.text),
            "visited": False,
            "hidden": False,
        }
    )
    return data


def comment_json(thing: Thing, escape: Callable[[str], str] = str) -> Json:
    """A t1 comment's ``data``, the keys of the recorded ``/user/<name>/comments`` answer."""
    data = _common(thing)
    data.update(
        {
            "link_title": escape(thing.link_title),
            "link_id": f"t3_{thing.link_id36}",
            "link_author": thing.link_author,
            "replies": "",
            "parent_id": thing.parent,
            "controversiality": 0,
            "body": escape(thing.text),
            "body_html": _body_html(thing.text),
            "score_hidden": False,
            "link_url": f"https://www.reddit.com{thing.permalink.rsplit('/', 2)[0]}/",
        }
    )
    return data


def inbox_json(thing: Thing, escape: Callable[[str], str] = str) -> Json:
    """An inbox item's ``data`` (a comment as the inbox shows it), keys as recorded."""
    item = thing.item
    subject = (thing.inbox_type or "comment_reply").replace("_", " ")
    return {
        "first_message": None,
        "first_message_name": None,
        "subreddit": thing.subreddit,
        "likes": None,
        "replies": "",
        "author_fullname": f"t2_{_user_id36(thing.author)}",
        "id": thing.id36,
        "subject": subject,
        "associated_awarding_id": None,
        "score": item.likes,
        "author": thing.author,
        "num_comments": item.replies,
        "parent_id": thing.parent,
        "subreddit_name_prefixed": f"r/{thing.subreddit}",
        "new": True,
        "type": thing.inbox_type,
        "body": escape(thing.text),
        "link_title": escape(thing.link_title),
        "dest": thing.dest,
        "was_comment": True,
        "body_html": _body_html(thing.text),
        "name": thing.fullname,
        "created": thing.created_utc,
        "created_utc": thing.created_utc,
        "context": f"{thing.permalink}?context=3",
        "distinguished": None,
    }


def _user_id36(name: str) -> str:
    return base36(_digest("user", name.lower()) % 36**8)


def account_json(name: str, created: datetime) -> Json:
    """A t2 account's ``data`` as ``/user/<name>/about`` and ``/api/v1/me`` send it."""
    karma = _digest("karma", name.lower()) % 5000
    return {
        "is_employee": False,
        "has_verified_email": True,
        "is_suspended": False,
        "icon_img": "",
        "verified": True,
        "is_gold": False,
        "is_mod": False,
        "id": _user_id36(name),
        "name": name,
        "created": float(math.floor(created.timestamp())),
        "created_utc": float(math.floor(created.timestamp())),
        "link_karma": karma,
        "comment_karma": 2 * karma,
        "total_karma": 3 * karma,
    }


def listing(children: list[Json], after: str | None, before: str | None) -> Json:
    """A Listing envelope (``"after": null`` on the last page)."""
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(children),
            "modhash": None,
            "geo_filter": "",
            "children": children,
            "before": before,
        },
    }


def _escaper(query: Query) -> Callable[[str], str]:
    """Without ``raw_json=1`` Reddit sends ``&``, ``<`` and ``>`` as HTML entities."""
    if Params(query).get("raw_json") == "1":
        return str
    return lambda text: text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- listings


def _limit(query: Query) -> int:
    raw = Params(query).get("limit")
    if raw is None or not raw.isdigit():
        return DEFAULT_LIMIT
    return min(max(int(raw), 1), MAX_LIMIT)


def paginate(things: list[Thing], query: Query) -> tuple[list[Thing], str | None, str | None]:
    """One page of ``things`` (newest first) by ``after``/``before``/``limit``.

    An anchor that is not in the listing yields an empty page, as on Reddit.
    """
    things = things[:LISTING_CAP]
    limit = _limit(query)
    names = [t.fullname for t in things]
    params = Params(query)
    after, before = params.get("after"), params.get("before")
    if after:
        start = names.index(after) + 1 if after in names else len(names)
    elif before:
        end = names.index(before) if before in names else 0
        start = max(0, end - limit)
        limit = end - start
    else:
        start = 0
    page = things[start : start + limit]
    more = start + len(page) < len(things)
    next_after = page[-1].fullname if page and more else None
    prev_before = page[0].fullname if page and start > 0 else None
    return page, next_after, prev_before


@dataclass(frozen=True)
class SearchQuery:
    """The subset of Reddit's lucene search the sandbox understands.

    Terms and quoted phrases are OR-ed and matched case-insensitively as substrings of the
    title and text; ``author:`` and ``subreddit:`` narrow the match; ``AND``/``OR``/``NOT`` and
    negated terms are ignored.
    """

    terms: tuple[str, ...]
    authors: tuple[str, ...] = ()
    subreddits: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: str) -> SearchQuery:
        parsed = _SYNTAX.parse(query)
        return cls(parsed.terms, parsed.operator("author"), parsed.operator("subreddit"))

    def matches(self, thing: Thing) -> bool:
        text = thing.text.lower()
        return (
            (not self.terms or any(term in text for term in self.terms))
            and (not self.authors or thing.author.lower() in self.authors)
            and (not self.subreddits or thing.subreddit.lower() in self.subreddits)
        )


# --------------------------------------------------------------------------- the sandbox


def rate_headers(remaining: float, used: int, reset_in: float) -> Headers:
    """Reddit's three rate-limit headers; ``reset`` in seconds from now, ``remaining`` a float."""
    return (
        ("x-ratelimit-remaining", f"{max(remaining, 0):.1f}"),
        ("x-ratelimit-used", str(used)),
        ("x-ratelimit-reset", str(max(0, math.ceil(reset_in)))),
    )


@dataclass(frozen=True)
class _Token:
    user: str | None  # None: an app-only (read-only) token
    expires_at: float


class RedditSandbox(TrafficSandbox):
    """A local Reddit OAuth API over deterministic generated traffic.

    Only items with ``created_at <= clock`` are visible.  The token endpoint checks the HTTP Basic
    client credentials (any non-empty ones unless ``client_id``/``client_secret`` are set) and,
    for the ``password`` grant, ``username``/``password`` when they are set.  The inbox belongs to
    the user a token was issued to.  Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    label = "Reddit sandbox"
    platform = "reddit"
    server_version = "RedditSandbox/1.0"
    endpoints = ENDPOINTS
    reset_headers = ("retry-after", "x-ratelimit-reset")
    time_field = "created_utc"
    routes = (
        route("POST", re.escape(TOKEN_PATH), "token"),
        route("GET", r"/api/v1/me", "me"),
        route("GET", rf"/user/({_NAME})/about", "about"),
        route("GET", rf"/user/({_NAME})(?:/(overview|submitted|comments))?", "overview"),
        route("GET", r"/message/(inbox|unread|mentions|comments|selfreply)", "inbox"),
        route("GET", rf"/r/({_NAME}(?:\+{_NAME})*)/search", "search"),
        route("GET", r"/api/info", "info"),
    )

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        brand_handle = options.get("brand_handle", "acme")
        if not re.fullmatch(r"[A-Za-z0-9_-]{3,20}", brand_handle):
            raise ValueError(f"not a Reddit user name: {brand_handle!r}")
        self.client = (client_id, client_secret)
        self.user = (username, password)
        super().__init__(**options)
        self._catalog = _Catalog(self.items, brand_handle)
        self._seed = options.get("seed", 7)
        self._tokens: dict[str, _Token] = {}
        self._state_lock = threading.Lock()
        self.limiter = RateLimiter({"api": (RATE_LIMIT, RATE_WINDOW_SECONDS)}, reset=exact)

    # public helpers -------------------------------------------------------------

    def thing(self, item: TrafficItem) -> Thing:
        """The Reddit thing ``item`` is served as."""
        return self._catalog.thing(item)

    def fullname(self, item: TrafficItem) -> str:
        """The fullname (``t1_...`` / ``t3_...``) of ``item``."""
        return self._catalog.thing(item).fullname

    native_id = fullname

    def user_fullname(self, name: str) -> str:
        """The ``t2_...`` fullname of the account ``name``."""
        return f"t2_{_user_id36(name)}"

    @property
    def tokens_issued(self) -> int:
        """How many access tokens the token endpoint has handed out."""
        with self._state_lock:
            return len(self._tokens)

    # SandboxServer hooks ----------------------------------------------------------

    def resolve(self, method: str, path: str) -> Route | None:
        """The route of a request (trailing slashes and ``.json`` ignored), or None (404)."""
        return super().resolve(method, path.removesuffix(".json").rstrip("/") or "/")

    def authenticate(self, route: Route, request: Request) -> bool:
        """Client credentials for the token endpoint; a live bearer token for the API."""
        if route.endpoint == "token":
            return self._client_ok(request.basic_auth())
        return self._token(request) is not None

    def answer(self, route: Route, request: Request) -> Response:
        """Issue a token, or answer the API request."""
        if route.endpoint == "token":
            return Response.json(200, self._grant(request))
        return Response.json(200, self._api(route, request))

    def rate_windows(self, route: Route | None) -> tuple[str, ...]:
        """One budget for the API; the token endpoint is not counted."""
        return () if route is None or route.endpoint == "token" else ("api",)

    def rate_headers(self, window: RateWindow) -> Headers:
        """Reddit's three headers, the reset in seconds from now."""
        return rate_headers(window.remaining, window.used, window.reset - clock.timestamp())

    def throttled(self, route: Route, request: Request, headers: Headers) -> Response:
        """429 with ``retry-after``: the window's budget is used up, wait for its reset."""
        reset = dict(headers)["x-ratelimit-reset"]
        return Response.json(429, error_body(429), (*headers, ("retry-after", reset)))

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        """Reddit's ``{"message", "error"}`` body, with the rate headers on API answers."""
        return Response.json(status, error_body(status), self.current_rate_headers(route))

    def unauthorized(self, route: Route, request: Request, *, expired: bool) -> Response:
        """401; API answers carry ``www-authenticate`` (prawcore needs it to name the error)."""
        if route.endpoint == "token":
            return Response.json(401, error_body(401))
        challenge = ("www-authenticate", 'Bearer realm="reddit", error="invalid_token"')
        return Response.json(401, error_body(401), (*self.current_rate_headers(route), challenge))

    def rate_limited(self, route: Route, request: Request, reset_in: float) -> Response:
        """429 with ``retry-after`` and the budget used up until ``reset_in`` seconds from now."""
        retry = ("retry-after", str(max(0, math.ceil(reset_in))))
        if route.endpoint == "token":
            return Response.json(429, error_body(429), (retry,))
        return Response.json(429, error_body(429), (*rate_headers(0, RATE_LIMIT, reset_in), retry))

    # authentication -------------------------------------------------------------

    def _client_ok(self, credentials: tuple[str, str] | None) -> bool:
        if credentials is None or not credentials[0]:
            return False
        wanted_id, wanted_secret = self.client
        return (wanted_id is None or credentials[0] == wanted_id) and (
            wanted_secret is None or credentials[1] == wanted_secret
        )

    def _token(self, request: Request) -> _Token | None:
        token = request.bearer()
        with self._state_lock:
            found = self._tokens.get(token or "")
        return found if found is not None and found.expires_at > clock.timestamp() else None

    def _grant(self, request: Request) -> Json:
        form = {name: values[-1] for name, values in request.form().items()}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._issue(None)
        if grant != "password":
            return {"error": "unsupported_grant_type"}
        wanted_user, wanted_password = self.user
        user, password = form.get("username", ""), form.get("password", "")
        user_ok = wanted_user is None or user.lower() == wanted_user.lower()
        if not user or not user_ok or (wanted_password is not None and password != wanted_password):
            return {"error": "invalid_grant"}
        return self._issue(user)

    def _issue(self, user: str | None) -> Json:
        with self._state_lock:
            number = len(self._tokens) + 1
            token = f"{number}-{hashlib.sha256(f'{self._seed}:{number}'.encode()).hexdigest()[:27]}"
            self._tokens[token] = _Token(user, clock.timestamp() + TOKEN_LIFETIME)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": "*",
        }

    # the API --------------------------------------------------------------------

    def _api(self, route: Route, request: Request) -> Json:
        handlers: dict[str, Callable[[Route, Request], Json]] = {
            "me": self._me,
            "about": self._about,
            "overview": self._overview,
            "inbox": self._inbox,
            "search": self._search,
            "info": self._info,
        }
        return handlers[route.endpoint](route, request)

    def _user_of(self, request: Request) -> str:
        token = self._token(request)
        if token is None or token.user is None:
            raise _error(403)  # an app-only token has no user: no inbox, no "me"
        return token.user

    def _me(self, route: Route, request: Request) -> Json:
        user = self._user_of(request)
        name = self._catalog.handle(user) or user
        return account_json(name, self._account_created(name))

    def _about(self, route: Route, request: Request) -> Json:
        name = self._catalog.handle(route.args[0])
        if name is None:
            raise _error(404)
        return {"kind": "t2", "data": account_json(name, self._account_created(name))}

    def _account_created(self, name: str) -> datetime:
        days = _digest("created", name.lower()) % 4000
        return datetime(2012, 1, 1, tzinfo=UTC) + timedelta(days=days)

    def _visible_things(self) -> list[Thing]:
        clock = self.clock
        visible = [t for t in self._catalog.things if t.item.created_at <= clock]
        return sorted(visible, key=lambda t: t.item.seq, reverse=True)

    def _overview(self, route: Route, request: Request) -> Json:
        user, which = route.args[0].lower(), route.args[1] or "overview"
        kinds = {"overview": ("t1", "t3"), "submitted": ("t3",), "comments": ("t1",)}[which]
        things = [t for t in self._visible_things() if t.author.lower() == user and t.kind in kinds]
        return self._listing(things, request.query, _thing_json)

    def _inbox(self, route: Route, request: Request) -> Json:
        user = self._user_of(request).lower()
        types = INBOX_FEEDS[route.args[0]]
        things = [
            t
            for t in self._visible_things()
            if t.inbox_type is not None
            and (t.dest or "").lower() == user
            and (types is None or t.inbox_type in types)
        ]
        return self._listing(things, request.query, inbox_json)

    def _search(self, route: Route, request: Request) -> Json:
        names = route.args[0].lower().split("+")
        if "all" not in names and not any(n in self._catalog.subreddits for n in names):
            location = f"{self.url}/subreddits/search?q={route.args[0]}"
            raise _error(302, (("location", location),))
        query = request.query
        params = Params(query)
        search = SearchQuery.parse(params.get("q") or "")
        restrict = (params.get("restrict_sr") or "").lower() in _TRUE and "all" not in names
        window = SEARCH_WINDOWS.get(params.get("t") or "all")
        since = None if window is None else self.clock - window
        things = [
            t
            for t in self._visible_things()
            if t.kind == "t3"
            and (since is None or t.item.created_at >= since)
            and (not restrict or t.subreddit.lower() in names)
            and search.matches(t)
        ]
        return self._listing(things, query, _thing_json)

    def _info(self, route: Route, request: Request) -> Json:
        wanted = ",".join(request.query.get("id", [])).split(",")
        clock = self.clock
        found = [self._catalog.by_name.get(name.strip()) for name in wanted]
        things = [t for t in found if t is not None and t.item.created_at <= clock]
        escape = _escaper(request.query)
        children = [{"kind": t.kind, "data": _thing_json(t, escape)} for t in things[:MAX_LIMIT]]
        return listing(children, None, None)

    def _listing(
        self,
        things: list[Thing],
        query: Query,
        shape: Callable[[Thing, Callable[[str], str]], Json],
    ) -> Json:
        page, after, before = paginate(things, query)
        escape = _escaper(query)
        return listing([{"kind": t.kind, "data": shape(t, escape)} for t in page], after, before)


def _thing_json(thing: Thing, escape: Callable[[str], str]) -> Json:
    return submission_json(thing, escape) if thing.kind == "t3" else comment_json(thing, escape)
