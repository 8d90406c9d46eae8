"""A deterministic local server speaking Bluesky's XRPC wire format (AT Protocol).

It serves generated :mod:`monitor.sandbox.traffic` as a small Bluesky network: the brand's posts,
its replies and its reposts (``app.bsky.feed.getAuthorFeed``), the brand's notifications with the
AppView's after-the-fact ``reasons`` filter, so that a filtered page can be short or empty and still
carry a cursor (``app.bsky.notification.listNotifications``), post search with an offset cursor
(``app.bsky.feed.searchPosts``), handle resolution and the session procedures
(``com.atproto.server.createSession`` / ``refreshSession`` / ``getSession``) with access tokens
that expire.  Shapes follow the lexicons and AppView snapshots of ``fixtures/bluesky/``.

Mapping of the platform-neutral traffic: a customer ``user1234`` is ``user1234.bsky.social``;
every third mention written after a brand post is a reply to that post (notification reason
``reply``), the others mention the brand (reason ``mention``); the brand reposts every fifth
mention; each brand post draws a few likes and reposts (notifications the ``reasons`` filter drops).
Ids are deterministic: ``did:plc:`` from the handle, TID record keys from the creation time, CIDv1
(dag-cbor, sha-256) from the record.  The server, clock, recording, faults and control API come
from :class:`monitor.sandbox.server.SandboxServer`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Unpack

from monitor import clock
from monitor.sandbox.common import Params, QuerySyntax
from monitor.sandbox.limits import HeaderNames, RateLimiter, RateWindow
from monitor.sandbox.server import (
    ApiError,
    Headers,
    Json,
    Request,
    Response,
    Route,
    format_time,
)
from monitor.sandbox.traffic import (
    MENTION,
    POST,
    SandboxOptions,
    TrafficItem,
    TrafficSandbox,
    fit,
)

POST_TYPE = "app.bsky.feed.post"
LIKE_TYPE = "app.bsky.feed.like"
REPOST_TYPE = "app.bsky.feed.repost"
REASON_REPOST = "app.bsky.feed.defs#reasonRepost"
REASON_PIN = "app.bsky.feed.defs#reasonPin"
POST_VIEW = "app.bsky.feed.defs#postView"
MAX_GRAPHEMES = 300
ACCESS_TTL_SECONDS = 7200.0  # the PDS's access tokens live two hours
REFRESH_TTL_SECONDS = 90 * 86400.0
SEARCH_DEPTH = 10_000  # palomar, the search behind searchPosts, pages this deep at most

# nsid -> (endpoint name for faults, HTTP method, auth: "none" | "optional" | "access" | "refresh")
METHODS: dict[str, tuple[str, str, str]] = {
    "com.atproto.server.createSession": ("createSession", "POST", "none"),
    "com.atproto.server.refreshSession": ("refreshSession", "POST", "refresh"),
    "com.atproto.server.getSession": ("getSession", "GET", "access"),
    "com.atproto.identity.resolveHandle": ("resolveHandle", "GET", "optional"),
    "app.bsky.feed.getAuthorFeed": ("getAuthorFeed", "GET", "optional"),
    "app.bsky.notification.listNotifications": ("listNotifications", "GET", "access"),
    "app.bsky.feed.searchPosts": ("searchPosts", "GET", "access"),
}
ENDPOINTS = tuple(endpoint for endpoint, _, _ in METHODS.values())
# xrpc-server's limits: 3000 requests / 5 min per IP; createSession 30 / 5 min per account
RATE_LIMITS: dict[str, tuple[int, int]] = {"global": (3000, 300), "createSession": (30, 300)}
_RATE_HEADERS = HeaderNames("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
AUTHOR_FEED_FILTERS = frozenset(
    {
        "posts_with_replies",
        "posts_no_replies",
        "posts_with_media",
        "posts_and_author_threads",
        "posts_with_video",
    }
)
# xrpc's names for the statuses it answers
_ERROR_NAMES = {
    400: "InvalidRequest",
    401: "AuthenticationRequired",
    403: "Forbidden",
    404: "NotFound",
    413: "PayloadTooLarge",
    429: "RateLimitExceeded",
    500: "InternalServerError",
    501: "MethodNotImplemented",
    502: "UpstreamFailure",
    503: "NotEnoughResources",
    504: "UpstreamTimeout",
}
_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"
_HANDLE = re.compile(
    r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]*[a-z0-9])?$"
)
_TEXT_HANDLE = re.compile(r"(?<![\w@])@(\w+)\b(?!\.\w)")
_MENTION = re.compile(r"(?<![\w@])@((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*)", re.I)
_TAG = re.compile(r"(?<![\w#&])#(\w*[^\W\d]\w*)")
_SYNTAX = QuerySyntax(operators=frozenset({"from"}), skip=frozenset({"AND", "OR", "and", "or"}))


def xrpc_error(status: int, error: str, message: str) -> ApiError:
    """An XRPC error answer: HTTP status and the body ``{"error": <name>, "message": ...}``."""
    return ApiError(status, {"error": error, "message": message})


def invalid(message: str) -> ApiError:
    """400 InvalidRequest."""
    return xrpc_error(400, "InvalidRequest", message)


# --------------------------------------------------------------------------- identifiers


def did_for(handle: str) -> str:
    """The deterministic ``did:plc:`` of ``handle`` (24 base32 characters, as PLC ids have)."""
    digest = hashlib.sha256(handle.lower().encode()).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]


def tid(when: datetime, clock_id: int) -> str:
    """A record key (TID): microseconds since the epoch and a 10-bit clock id, base32-sortable."""
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    value = (micros << 10) | (clock_id & 0x3FF)
    chars = [_B32_SORTABLE[(value >> shift) & 31] for shift in range(60, -1, -5)]
    return "".join(chars)


def cid_for(payload: object) -> str:
    """A CIDv1 string (base32, dag-cbor codec, sha2-256) derived from ``payload``'s JSON."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _byte_index(text: str, start: int, end: int) -> Json:
    return {
        "byteStart": len(text[:start].encode("utf-8")),
        "byteEnd": len(text[:end].encode("utf-8")),
    }


def _handle_for_label(label: str) -> str | None:
    name = re.sub(r"[^a-z0-9-]", "-", label.lower()).strip("-")
    return f"{name}.bsky.social" if name else None


def _display_name(handle: str) -> str:
    first = handle.split(".")[0]
    return first[:1].upper() + first[1:]


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class Record:
    """One record of the sandbox network (post, like or repost) with its place in the repo."""

    uri: str
    cid: str
    handle: str
    value: Json
    at: datetime  # createdAt, and indexedAt: the sandbox indexes at once
    item: TrafficItem | None = None

    @property
    def did(self) -> str:
        """The author's DID (the authority of the at:// uri)."""
        return self.uri.split("/")[2]

    @property
    def ref(self) -> Json:
        """A ``com.atproto.repo.strongRef`` to the record."""
        return {"cid": self.cid, "uri": self.uri}

    @property
    def order(self) -> tuple[datetime, str]:
        """The AppView's keyset order (sortAt, cid)."""
        return (self.at, self.cid)


@dataclass(frozen=True)
class Notification:
    """A notification of the brand: a record, why it was delivered and what it concerns."""

    record: Record
    reason: str
    subject: str | None = None


@dataclass(frozen=True)
class FeedEntry:
    """An author-feed entry: a post, or a repost of it (``repost`` is the repost record)."""

    post: Record
    repost: Record | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        """Sorted by the repost time for a repost, else by the post's."""
        return (self.repost or self.post).order


class Network:
    """The records, feeds and notifications built from the traffic (immutable)."""

    def __init__(
        self,
        items: Sequence[TrafficItem],
        brand_handle: str,
        brand_label: str,
        likes_per_post: int,
    ) -> None:
        self.brand_handle = brand_handle
        self.brand_did = did_for(brand_handle)
        self._labels = {brand_label.lower(): brand_handle}
        self.records: dict[int, Record] = {}
        self.parent: dict[int, int] = {}
        self.root: dict[int, int] = {}
        self._thread(items)
        for item in items:
            self.records[item.seq] = self._post_record(item)
        self.feeds: dict[str, list[FeedEntry]] = {}
        self.notifications: list[Notification] = []
        self._build_feeds(items)
        self._build_notifications(items, likes_per_post)
        self.handles = self._known_handles()
        self._handle_by_did = {did: handle for handle, did in self.handles.items()}

    # construction -------------------------------------------------------------

    def _thread(self, items: Sequence[TrafficItem]) -> None:
        last_post: TrafficItem | None = None
        for item in items:
            if item.kind == POST:
                last_post = item
            elif item.kind == MENTION and last_post is not None and item.seq % 3 == 0:
                self.parent[item.seq] = self.root[item.seq] = last_post.seq
            elif item.in_reply_to_seq is not None:
                self.parent[item.seq] = item.in_reply_to_seq
                self.root[item.seq] = self.root.get(item.in_reply_to_seq, item.in_reply_to_seq)

    def handle_of(self, label: str) -> str:
        """The Bluesky handle of a traffic handle (``user1234`` -> ``user1234.bsky.social``)."""
        known = self._labels.get(label.lower())
        return known or _handle_for_label(label) or label

    def _rewrite(self, text: str) -> str:
        def swap(match: re.Match[str]) -> str:
            handle = self._labels.get(match.group(1).lower()) or _handle_for_label(match.group(1))
            return f"@{handle}" if handle else match.group(0)

        return fit(_TEXT_HANDLE.sub(swap, text), MAX_GRAPHEMES)

    def _post_record(self, item: TrafficItem) -> Record:
        handle = self.handle_of(item.author_handle)
        text = self._rewrite(item.text)
        value: Json = {
            "$type": POST_TYPE,
            "createdAt": format_time(item.created_at),
            "langs": [item.lang],
            "text": text,
        }
        facets = _facets(text)
        if facets:
            value["facets"] = facets
        if item.seq in self.parent:
            parent = self.records[self.parent[item.seq]]
            root = self.records[self.root[item.seq]]
            value["reply"] = {"parent": parent.ref, "root": root.ref}
        uri = f"at://{did_for(handle)}/{POST_TYPE}/{tid(item.created_at, item.seq)}"
        return Record(uri, cid_for(value), handle, value, item.created_at, item)

    def _subject_record(
        self, kind: str, handle: str, subject: Record, at: datetime, clock_id: int
    ) -> Record:
        value: Json = {"$type": kind, "createdAt": format_time(at), "subject": subject.ref}
        uri = f"at://{did_for(handle)}/{kind}/{tid(at, clock_id)}"
        return Record(uri, cid_for(value), handle, value, at)

    def _build_feeds(self, items: Sequence[TrafficItem]) -> None:
        for item in items:
            record = self.records[item.seq]
            self.feeds.setdefault(record.did, []).append(FeedEntry(record))
            if item.kind == MENTION and item.seq % 5 == 1:
                at = item.created_at + timedelta(minutes=3)
                repost = self._subject_record(REPOST_TYPE, self.brand_handle, record, at, item.seq)
                self.feeds.setdefault(self.brand_did, []).append(FeedEntry(record, repost))
        for entries in self.feeds.values():
            entries.sort(key=lambda e: e.order, reverse=True)

    def _build_notifications(self, items: Sequence[TrafficItem], likes_per_post: int) -> None:
        out: list[Notification] = []
        for item in items:
            record = self.records[item.seq]
            if item.kind == MENTION:
                parent = self.parent.get(item.seq)
                if parent is None:
                    out.append(Notification(record, "mention"))
                else:
                    out.append(Notification(record, "reply", self.records[parent].uri))
            elif item.kind == POST:
                out.extend(self._reactions(item, record, likes_per_post))
        self.notifications = sorted(out, key=lambda n: n.record.order, reverse=True)

    def _reactions(
        self, item: TrafficItem, record: Record, likes_per_post: int
    ) -> Iterable[Notification]:
        for j in range(min(item.likes, likes_per_post)):
            fan = f"fan{1000 + (item.seq * 97 + j * 31) % 9000}.bsky.social"
            at = item.created_at + timedelta(seconds=20 * (j + 1))
            like = self._subject_record(LIKE_TYPE, fan, record, at, j)
            yield Notification(like, "like", record.uri)
        for j in range(min(item.reposts, 2)):
            fan = f"fan{1000 + (item.seq * 89 + j * 37) % 9000}.bsky.social"
            at = item.created_at + timedelta(seconds=200 + 30 * j)
            repost = self._subject_record(REPOST_TYPE, fan, record, at, 512 + j)
            yield Notification(repost, "repost", record.uri)

    def _known_handles(self) -> dict[str, str]:
        names = {self.brand_handle}
        for record in self.records.values():
            names.add(record.handle)
            names.update(m.group(1).lower() for m in _MENTION.finditer(record.value["text"]))
        names.update(note.record.handle for note in self.notifications)
        return {handle: did_for(handle) for handle in sorted(names)}

    # views ------------------------------------------------------------------

    def handle_for_did(self, did: str) -> str | None:
        """The handle behind ``did``, if the network knows it."""
        return self._handle_by_did.get(did)

    def actor_did(self, actor: str) -> str:
        """The DID of an actor named by handle or DID; 400 when the network has no such one."""
        actor = actor.lower()
        if actor.startswith("did:"):
            if self.handle_for_did(actor) is None:
                raise invalid("Profile not found")
            return actor
        if actor not in self.handles:
            raise invalid("Profile not found")
        return self.handles[actor]

    def pinned(self, did: str, clock: datetime) -> Record | None:
        """The account's pinned post: its first visible post without a reply."""
        own = [
            e.post
            for e in reversed(self.feeds.get(did, []))
            if e.repost is None and "reply" not in e.post.value and e.post.at <= clock
        ]
        return own[0] if own else None

    def profile_basic(self, handle: str) -> Json:
        """``app.bsky.actor.defs#profileViewBasic``."""
        did = did_for(handle)
        return {
            "did": did,
            "handle": handle,
            "displayName": _display_name(handle),
            "associated": {"activitySubscription": {"allowSubscriptions": "followers"}},
            "viewer": {"muted": False, "blockedBy": False},
            "labels": [],
            "createdAt": format_time(_account_created(did)),
        }

    def profile(self, handle: str) -> Json:
        """``app.bsky.actor.defs#profileView`` (as notifications carry it)."""
        view = self.profile_basic(handle)
        view["description"] = "Official account." if handle == self.brand_handle else ""
        view["indexedAt"] = view["createdAt"]
        return view

    def post_view(self, record: Record, *, typed: bool = False) -> Json:
        """``app.bsky.feed.defs#postView`` of a post record."""
        item = record.item
        view: Json = {"$type": POST_VIEW} if typed else {}
        view.update(
            {
                "uri": record.uri,
                "cid": record.cid,
                "author": self.profile_basic(record.handle),
                "record": record.value,
                "bookmarkCount": 0,
                "replyCount": item.replies if item else 0,
                "repostCount": item.reposts if item else 0,
                "likeCount": item.likes if item else 0,
                "quoteCount": item.quotes if item else 0,
                "indexedAt": format_time(record.at),
                "viewer": {"bookmarked": False, "threadMuted": False, "embeddingDisabled": False},
                "labels": [],
            }
        )
        return view

    def feed_view(self, entry: FeedEntry, *, pinned: bool = False) -> Json:
        """``app.bsky.feed.defs#feedViewPost``: the post, its reply context and the reason."""
        post = entry.post
        out: Json = {"post": self.post_view(post)}
        seq = post.item.seq if post.item else None
        if seq is not None and seq in self.parent:
            parent = self.records[self.parent[seq]]
            reply: Json = {
                "root": self.post_view(self.records[self.root[seq]], typed=True),
                "parent": self.post_view(parent, typed=True),
            }
            grand = self.parent.get(self.parent[seq])
            if grand is not None:
                reply["grandparentAuthor"] = self.profile_basic(self.records[grand].handle)
            out["reply"] = reply
        if entry.repost is not None:
            out["reason"] = {
                "$type": REASON_REPOST,
                "by": self.profile_basic(entry.repost.handle),
                "uri": entry.repost.uri,
                "cid": entry.repost.cid,
                "indexedAt": format_time(entry.repost.at),
            }
        elif pinned:
            out["reason"] = {"$type": REASON_PIN}
        return out

    def notification_view(self, note: Notification) -> Json:
        """``app.bsky.notification.listNotifications#notification``."""
        out: Json = {
            "uri": note.record.uri,
            "cid": note.record.cid,
            "author": self.profile(note.record.handle),
            "reason": note.reason,
        }
        if note.subject is not None:
            out["reasonSubject"] = note.subject
        out.update(
            {
                "record": note.record.value,
                "isRead": False,
                "indexedAt": format_time(note.record.at),
                "labels": [],
            }
        )
        return out


def _facets(text: str) -> list[Json]:
    facets: list[Json] = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).lower()
        feature = {"$type": "app.bsky.richtext.facet#mention", "did": did_for(handle)}
        facets.append({"features": [feature], "index": _byte_index(text, *match.span())})
    for match in _TAG.finditer(text):
        feature = {"$type": "app.bsky.richtext.facet#tag", "tag": match.group(1)}
        facets.append({"features": [feature], "index": _byte_index(text, *match.span())})
    return facets


def _account_created(did: str) -> datetime:
    days = int(hashlib.sha256(did.encode()).hexdigest()[:6], 16) % 600
    return datetime(2023, 5, 1, 12, tzinfo=UTC) + timedelta(days=days)


# --------------------------------------------------------------------------- parameters


class _Params(Params):
    """The query string of one XRPC query, validated the way xrpc-server validates it."""

    def required(self, name: str) -> str:
        """A required parameter; 400 when missing or empty."""
        value = self.get(name)
        if not value:
            raise invalid(f'Error: Params must have the property "{name}"')
        return value

    def limit(self, default: int) -> int:
        """``limit``: an integer from 1 to 100."""
        raw = self.get("limit")
        if raw is None:
            return default
        if not re.fullmatch(r"-?\d{1,6}", raw):
            raise invalid("Error: limit must be an integer")
        value = int(raw)
        if value < 1:
            raise invalid("Error: limit can not be less than 1")
        if value > 100:
            raise invalid("Error: limit can not be greater than 100")
        return value

    def flag(self, name: str) -> bool:
        """A boolean parameter (``true`` / ``false``)."""
        raw = self.get(name)
        if raw in (None, "false"):
            return False
        if raw == "true":
            return True
        raise invalid(f"Error: {name} must be a boolean")

    def time(self, name: str) -> datetime | None:
        """A datetime or a plain ISO date (searchPosts' ``since`` / ``until``)."""
        raw = self.get(name)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise invalid(f"Error: {name} must be a valid datetime or date") from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def encode_keyset(order: tuple[datetime, str]) -> str:
    """The AppView's feed cursor: ``<sortAt in epoch ms>::<cid>``."""
    when, cid = order
    return f"{int(when.timestamp() * 1000)}::{cid}"


def decode_keyset(cursor: str) -> tuple[datetime, str]:
    """The position a keyset cursor stands for; 400 when it is not one."""
    millis, sep, cid = cursor.partition("::")
    if not sep or not millis.isdigit() or not cid:
        raise invalid("Malformed cursor")
    return datetime.fromtimestamp(int(millis) / 1000, UTC), cid


def _keyset_page(
    entries: Sequence[Any], order: Callable[[Any], tuple[datetime, str]], cursor: str | None, n: int
) -> tuple[list[Any], str | None]:
    """The next ``n`` of ``entries`` (newest first) after ``cursor``, and the cursor after them."""
    rest = list(entries)
    if cursor is not None:
        after = decode_keyset(cursor)
        rest = [e for e in rest if _before(order(e), after)]
    page = rest[:n]
    more = len(rest) > n
    return page, encode_keyset(order(page[-1])) if page and more else None


def _before(order: tuple[datetime, str], after: tuple[datetime, str]) -> bool:
    millis = int(order[0].timestamp() * 1000)
    limit = int(after[0].timestamp() * 1000)
    return millis < limit or (millis == limit and order[1] < after[1])


# --------------------------------------------------------------------------- search queries


@dataclass(frozen=True)
class SearchQuery:
    """The part of palomar's query syntax the sandbox understands.

    ``|`` separates alternatives (simple_query_string's OR); within one, words and quoted
    phrases must all match as whole words (case-insensitive; ``#tag`` matches ``tag``, a handle
    ``@acme.bsky.social`` does not match ``acme``); ``-word`` excludes; ``from:handle`` narrows.
    """

    alternatives: tuple[tuple[str, ...], ...]
    excluded: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: str) -> SearchQuery:
        alternatives: list[tuple[str, ...]] = []
        excluded: list[str] = []
        authors: list[str] = []
        for part in query.split("|"):
            parsed = _SYNTAX.parse(part.strip().strip("()"))
            authors.extend(parsed.operator("from"))
            excluded.extend(parsed.excluded)
            if parsed.terms:
                alternatives.append(parsed.terms)
        return cls(tuple(alternatives), tuple(excluded), tuple(authors))

    @property
    def empty(self) -> bool:
        return not (self.alternatives or self.authors)

    def matches(self, text: str, handle: str) -> bool:
        """Whether a post with ``text`` by ``handle`` is a hit."""
        if self.authors and handle.lower() not in self.authors:
            return False
        if any(_has_word(text, word) for word in self.excluded):
            return False
        return not self.alternatives or any(
            all(_has_word(text, term) for term in terms) for terms in self.alternatives
        )


def _has_word(text: str, term: str) -> bool:
    pattern = rf"(?<![\w.@]){re.escape(term.lstrip('#'))}(?!\w|\.\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


# --------------------------------------------------------------------------- sessions


@dataclass
class _Token:
    kind: str  # "access" | "refresh"
    did: str
    expires: float  # time.monotonic() deadline
    revoked: bool = False


class _Sessions:
    """Issued JWTs: HS256-signed, typed ``at+jwt`` (access) or ``refresh+jwt`` (refresh)."""

    def __init__(self, access_ttl: float) -> None:
        self.access_ttl = access_ttl
        self._key = hashlib.sha256(b"touchpoint bluesky sandbox").digest()
        self._tokens: dict[str, _Token] = {}
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def issue(self, did: str) -> tuple[str, str]:
        """A new (accessJwt, refreshJwt) pair for ``did``."""
        now = time.monotonic()
        with self._lock:
            access = self._jwt("at+jwt", "com.atproto.access", did, self.access_ttl)
            refresh = self._jwt("refresh+jwt", "com.atproto.refresh", did, REFRESH_TTL_SECONDS)
            self._tokens[access] = _Token("access", did, now + self.access_ttl)
            self._tokens[refresh] = _Token("refresh", did, now + REFRESH_TTL_SECONDS)
        return access, refresh

    def _jwt(self, typ: str, scope: str, did: str, ttl: float) -> str:
        issued = int(clock.timestamp())
        header = {"typ": typ, "alg": "HS256"}
        claims = {
            "scope": scope,
            "sub": did,
            "aud": "did:web:sandbox.bsky.local",
            "iat": issued,
            "exp": issued + math.ceil(ttl),
            "jti": f"sandbox-{next(self._serial)}",
        }
        signing = f"{_b64(header)}.{_b64(claims)}"
        signature = hmac.new(self._key, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"

    def problem(self, token: str | None, kind: str) -> ApiError | None:
        """Why ``token`` is no good as a ``kind`` token (None: it is good)."""
        if token is None:
            return xrpc_error(401, "AuthenticationRequired", "Authentication Required")
        with self._lock:
            found = self._tokens.get(token)
        if found is None:
            return xrpc_error(401, "InvalidToken", "Token could not be verified")
        if found.kind != kind:
            return invalid_token("Bad token scope")
        if found.revoked:
            return xrpc_error(400, "ExpiredToken", "Token has been revoked")
        if time.monotonic() >= found.expires:
            return xrpc_error(400, "ExpiredToken", "Token has expired")
        return None

    def owner(self, token: str | None) -> str:
        """The DID a (checked) token belongs to."""
        with self._lock:
            return self._tokens[token or ""].did

    def revoke(self, token: str) -> None:
        """Revoke a refresh token (refreshSession rotates it)."""
        with self._lock:
            if token in self._tokens:
                self._tokens[token].revoked = True

    def expire(self, token: str | None = None) -> None:
        """Expire one access token, or (None) every access token issued so far."""
        now = time.monotonic()
        with self._lock:
            for value, found in self._tokens.items():
                if found.kind == "access" and token in (None, value):
                    found.expires = now


def invalid_token(message: str) -> ApiError:
    """400 InvalidToken."""
    return xrpc_error(400, "InvalidToken", message)


def _b64(payload: Json) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- the sandbox


class BlueskySandbox(TrafficSandbox):
    """A local Bluesky PDS + AppView over deterministic generated traffic.

    Only items with ``created_at <= clock`` are visible.  One account can log in: the brand's
    handle (or DID) with ``app_password``.  Access tokens expire after ``access_ttl`` seconds of
    real time, on :meth:`expire_access_tokens`, or through the ``expired_token`` fault (which
    expires the token presented); :attr:`create_session_calls` and :attr:`refresh_session_calls`
    count the logins and refreshes.  Each brand post draws up to ``likes_per_post`` like
    notifications (and up to two reposts) within minutes, the noise that a ``reasons`` filter
    drops from a page.  Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    label = "Bluesky sandbox"
    platform = "bluesky"
    server_version = "BlueskySandbox/1.0"
    endpoints = ENDPOINTS
    reset_headers = (_RATE_HEADERS.reset,)
    time_field = "indexedAt"

    def __init__(
        self,
        *,
        app_password: str = "sandbox-bluesky-password",
        access_ttl: float = ACCESS_TTL_SECONDS,
        likes_per_post: int = 8,
        search_depth: int = SEARCH_DEPTH,
        **options: Unpack[SandboxOptions],
    ) -> None:
        """``search_depth``: how many hits of one query searchPosts pages through at most."""
        brand_handle = options.setdefault("brand_handle", "acme.bsky.social")
        if not _HANDLE.match(brand_handle):
            raise ValueError(f"brand_handle must be a lowercase domain handle: {brand_handle!r}")
        self.app_password = app_password
        self.search_depth = search_depth
        super().__init__(**options)
        self.network = Network(self.items, brand_handle, self.traffic_brand(), likes_per_post)
        self.sessions = _Sessions(access_ttl)
        self.limiter = RateLimiter(RATE_LIMITS)

    def traffic_brand(self) -> str:
        """The brand in the traffic: the first label of its handle (``acme.bsky.social``: acme)."""
        return self.brand_handle.split(".")[0].replace("-", "_")

    # for tests and the demo --------------------------------------------------------

    @property
    def brand_did(self) -> str:
        """The brand account's DID."""
        return self.network.brand_did

    def uri(self, item: TrafficItem) -> str:
        """The at:// uri of ``item``'s post record."""
        return self.network.records[item.seq].uri

    native_id = uri

    def record(self, item: TrafficItem) -> Record:
        """``item``'s post record."""
        return self.network.records[item.seq]

    def handle(self, item: TrafficItem) -> str:
        """The Bluesky handle of ``item``'s author."""
        return self.network.records[item.seq].handle

    def calls(self, nsid: str) -> int:
        """How many requests to ``/xrpc/<nsid>`` were received (faulted ones included)."""
        return sum(1 for r in self.requests if r.path == f"/xrpc/{nsid}")

    @property
    def create_session_calls(self) -> int:
        """Logins attempted (``com.atproto.server.createSession``)."""
        return self.calls("com.atproto.server.createSession")

    @property
    def refresh_session_calls(self) -> int:
        """Refreshes attempted (``com.atproto.server.refreshSession``)."""
        return self.calls("com.atproto.server.refreshSession")

    def expire_access_tokens(self) -> None:
        """Let every access token issued so far expire now (refresh tokens stay good)."""
        self.sessions.expire()

    # SandboxServer hooks ----------------------------------------------------------

    def resolve(self, method: str, path: str) -> Route | None:
        """``/xrpc/<nsid>`` for the methods the sandbox knows (others: 501)."""
        nsid = path.removeprefix("/xrpc/")
        if nsid == path or nsid not in METHODS:
            return None
        endpoint, _, _ = METHODS[nsid]
        return Route(endpoint, nsid)

    def authenticate(self, route: Route, request: Request) -> bool:
        """The token each method needs (see ``METHODS``) is present and good."""
        return self._auth_problem(route, request) is None

    def _auth_problem(self, route: Route, request: Request) -> ApiError | None:
        _, _, auth = METHODS[route.action]
        token = request.bearer()
        if auth == "none" or (auth == "optional" and token is None):
            return None
        return self.sessions.problem(token, "refresh" if auth == "refresh" else "access")

    def unauthorized(self, route: Route, request: Request, *, expired: bool) -> Response:
        """400 ExpiredToken / InvalidToken, or 401 AuthenticationRequired / InvalidToken."""
        problem = self._auth_problem(route, request)
        if expired:
            token = request.bearer()
            if token is not None and METHODS[route.action][2] != "refresh":
                self.sessions.expire(token)
            problem = xrpc_error(400, "ExpiredToken", "Token has expired")
        problem = problem or xrpc_error(401, "AuthenticationRequired", "Authentication Required")
        return self._error_response(problem, route)

    def answer(self, route: Route, request: Request) -> Response:
        """The XRPC answer (400 for the wrong HTTP method)."""
        _, method, _ = METHODS[route.action]
        if request.method != method:
            raise invalid(f"Incorrect HTTP method ({request.method}) expected {method}")
        return Response.json(200, self._handlers()[route.action](request))

    def rate_windows(self, route: Route | None) -> tuple[str, ...]:
        """Every request counts against the global window, a login also against its own."""
        if route is not None and route.endpoint == "createSession":
            return ("global", "createSession")
        return ("global",)

    def rate_headers(self, window: RateWindow) -> Headers:
        """xrpc-server's headers; ``RateLimit-Reset`` in epoch seconds."""
        policy = ("RateLimit-Policy", f"{window.limit};w={window.seconds}")
        return (*_RATE_HEADERS.of(window, str(math.ceil(window.reset))), policy)

    def throttled(self, route: Route, request: Request, headers: Headers) -> Response:
        """429 RateLimitExceeded."""
        return xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded").response(headers)

    def error(self, status: int, route: Route | None, request: Request) -> Response:
        """XRPC's ``{"error", "message"}`` body; an unknown method is 501."""
        if route is None and request.path.startswith("/xrpc/"):
            status = 501
        name = _ERROR_NAMES.get(status, HTTPStatus(status).phrase.replace(" ", ""))
        return self._error_response(xrpc_error(status, name, HTTPStatus(status).phrase), route)

    def _error_response(self, error: ApiError, route: Route | None) -> Response:
        return error.response(self.current_rate_headers(route))

    # methods ----------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Request], Json]]:
        return {
            "com.atproto.server.createSession": self._create_session,
            "com.atproto.server.refreshSession": self._refresh_session,
            "com.atproto.server.getSession": self._get_session,
            "com.atproto.identity.resolveHandle": self._resolve_handle,
            "app.bsky.feed.getAuthorFeed": self._author_feed,
            "app.bsky.notification.listNotifications": self._notifications,
            "app.bsky.feed.searchPosts": self._search,
        }

    def _create_session(self, request: Request) -> Json:
        try:
            body = request.json_body()
        except ValueError:
            raise invalid("Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise invalid("Input must be an object")
        for name in ("identifier", "password"):
            if not isinstance(body.get(name), str):
                raise invalid(f'Input must have the property "{name}"')
        identifier = str(body["identifier"]).lower().lstrip("@")
        known = identifier in (self.brand_handle, self.brand_did)
        if not known or body["password"] != self.app_password:
            raise xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        out = _session_json(self.brand_handle, self.brand_did, self.sessions.issue(self.brand_did))
        out.update({"email": f"social@{self.brand_handle}", "emailConfirmed": True})
        out["emailAuthFactor"] = False
        return out

    def _refresh_session(self, request: Request) -> Json:
        token = request.bearer() or ""
        self.sessions.revoke(token)
        return _session_json(
            self.brand_handle, self.brand_did, self.sessions.issue(self.sessions.owner(token))
        )

    def _get_session(self, request: Request) -> Json:
        return {
            "handle": self.brand_handle,
            "did": self.sessions.owner(request.bearer()),
            "email": f"social@{self.brand_handle}",
            "emailConfirmed": True,
            "emailAuthFactor": False,
            "active": True,
        }

    def _resolve_handle(self, request: Request) -> Json:
        handle = _Params(request.query).required("handle").lower()
        if handle not in self.network.handles:
            raise invalid("Unable to resolve handle")
        return {"did": self.network.handles[handle]}

    def _author_feed(self, request: Request) -> Json:
        params = _Params(request.query)
        did = self.network.actor_did(params.required("actor"))
        limit = params.limit(50)
        feed_filter = params.get("filter") or "posts_with_replies"
        if feed_filter not in AUTHOR_FEED_FILTERS:
            raise invalid(f"Error: filter must be one of {', '.join(sorted(AUTHOR_FEED_FILTERS))}")
        clock = self.clock
        entries = [
            e
            for e in self.network.feeds.get(did, [])
            if e.order[0] <= clock and _in_filter(e, feed_filter, did)
        ]
        cursor = params.get("cursor")
        page, next_cursor = _keyset_page(entries, lambda e: e.order, cursor, limit)
        feed = [self.network.feed_view(e) for e in page]
        if params.flag("includePins") and cursor is None:
            pinned = self.network.pinned(did, self.clock)
            if pinned is not None:
                feed.insert(0, self.network.feed_view(FeedEntry(pinned), pinned=True))
        out: Json = {"feed": feed}
        if next_cursor:
            out["cursor"] = next_cursor
        return out

    def _notifications(self, request: Request) -> Json:
        params = _Params(request.query)
        limit = params.limit(50)
        params.flag("priority")
        reasons = set(params.all("reasons"))
        owner = self.sessions.owner(request.bearer())
        clock = self.clock
        notes: list[Notification] = []
        if owner == self.brand_did:
            notes = [n for n in self.network.notifications if n.record.at <= clock]
        # like the AppView: fetch a page, THEN filter by reason (a page can end up empty)
        page, next_cursor = _keyset_page(
            notes, lambda n: n.record.order, params.get("cursor"), limit
        )
        kept = [n for n in page if not reasons or n.reason in reasons]
        out: Json = {"notifications": [self.network.notification_view(n) for n in kept]}
        if next_cursor:
            out["cursor"] = next_cursor
        out["priority"] = False
        out["seenAt"] = format_time(self.traffic_start)
        return out

    def _search(self, request: Request) -> Json:
        params = _Params(request.query)
        raw = params.required("q")
        query = SearchQuery.parse(raw)
        if query.empty:
            raise xrpc_error(400, "BadQueryString", "Query string is empty")
        sort = params.get("sort") or "latest"
        if sort not in ("latest", "top"):
            raise invalid("Error: sort must be one of latest, top")
        limit = params.limit(25)
        since, until = params.time("since"), params.time("until")
        hits = self._hits(query, params, since, until)
        offset = _offset(params.get("cursor"))
        reachable = hits[: self.search_depth]  # deeper hits are counted, never listed
        page = reachable[offset : offset + limit]
        out: Json = {"posts": [self.network.post_view(r) for r in page]}
        if offset + limit < len(reachable):
            out["cursor"] = str(offset + limit)
        out["hitsTotal"] = len(hits)
        return out

    def _hits(
        self, query: SearchQuery, params: _Params, since: datetime | None, until: datetime | None
    ) -> list[Record]:
        author = params.get("author")
        mentions = params.get("mentions")
        author_did = self.network.actor_did(author) if author else None
        mention_did = self.network.actor_did(mentions) if mentions else None
        clock = self.clock
        hits = []
        for record in self.network.records.values():
            text = str(record.value["text"])
            if (
                record.at <= clock
                and (since is None or record.at >= since)
                and (until is None or record.at < until)
                and (author_did is None or record.did == author_did)
                and (mention_did is None or mention_did in _mentioned(record))
                and query.matches(text, record.handle)
            ):
                hits.append(record)
        hits.sort(key=lambda r: r.order, reverse=True)
        return hits


def _session_json(handle: str, did: str, tokens: tuple[str, str]) -> Json:
    """A session as createSession and refreshSession answer it."""
    access, refresh = tokens
    return {
        "accessJwt": access,
        "refreshJwt": refresh,
        "handle": handle,
        "did": did,
        "active": True,
    }


def _mentioned(record: Record) -> set[str]:
    return {
        str(f["features"][0].get("did"))
        for f in record.value.get("facets", [])
        if "did" in f["features"][0]
    }


def _in_filter(entry: FeedEntry, feed_filter: str, did: str) -> bool:
    if entry.repost is not None:
        return feed_filter in ("posts_with_replies", "posts_no_replies", "posts_and_author_threads")
    reply = entry.post.value.get("reply")
    if feed_filter == "posts_with_replies":
        return True
    if feed_filter == "posts_no_replies":
        return reply is None
    if feed_filter == "posts_and_author_threads":
        return reply is None or str(reply["parent"]["uri"]).split("/")[2] == did
    return False  # media and video: the sandbox's posts have none


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise invalid("Malformed cursor")
    return int(cursor)
