"""Mastodon collector on httpx: the brand's statuses, its mention notifications, status search.

One ``httpx.Client`` per collector, pointed at the instance origin (``api_base``) with the brand
account's user token and a timeout on every request.

Cursors:

* **posts** and **mentions** walk *forward* with ``min_id``: each page is the ``limit`` items
  immediately newer than the cursor (Mastodon answers them newest-first), the next page comes from
  the ``Link: <…>; rel="prev"`` header, and every page is committed with the newest id in it.  A
  burst larger than one page is therefore collected whole (``since_id`` would only return the
  newest page above the cursor).  The mentions cursor is a *notification* id; the stored posts
  carry the status ids.
* **keywords** (``/api/v2/search``, newest-first, no Link header) walk *backward* with ``max_id``
  down to the cursor (``min_id``), one search per keyword, resumable through ``Cursor.pending``;
  the position holds one newest id per keyword, comma-separated, so a hit for one keyword that
  arrives while another is being walked is never skipped.
* **backfill** (``target.since``) walks every stream backward from the newest item
  (``Link rel="next"``) until it passes ``since``, resumable through ``Cursor.pending``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx

from monitor import clock
from monitor.config import Settings
from monitor.models import Cursor, Post, iso, parse_iso
from monitor.platforms.base import (
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
    budget_spent,
    call_with_retries,
    clamp_retry_at,
    connection,
    default_wait_note,
    forward,
    newest_first,
    next_cursor,
)
from monitor.platforms.http import (
    connection_problem,
    deadline_transport,
    fetch_whole,
    request_deadline,
)
from monitor.platforms.mastodon import keyword_query
from monitor.platforms.mastodon.normalize import (
    _ID,
    _account,
    _in_window,
    _validate_items,
    _validate_search,
    normalize_status,
)

logger = logging.getLogger(__name__)

MASTODON_ORIGIN = "https://mastodon.social"
SEARCH_PATH = "/api/v2/search"
NOTIFICATIONS_PATH = "/api/v1/notifications"
_SEARCH_TERM = re.compile(r'"[^"]*"|\S+')

Params = list[tuple[str, str]]


class NotFound(CollectorError):
    """HTTP 404: ``{"error": "Record not found"}``."""


@dataclass(frozen=True)
class Answer:
    """A decoded API answer and its ``Link`` header: rel -> that link's query parameters."""

    body: Any
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def link_param(self, rel: str, name: str) -> str | None:
        """The query parameter ``name`` of the ``rel`` link, if there is one and it is an id."""
        value = self.links.get(rel, {}).get(name)
        return value if value and _ID.fullmatch(value) else None


def parse_links(response: httpx.Response) -> dict[str, dict[str, str]]:
    """The query parameters of each link of a ``Link`` header (RFC 8288), by rel.

    Only the id bound is taken from a link: the next request goes to ``api_base`` with the
    collector's own parameters plus that bound, so a link naming another host never receives the
    token, and a parameter Mastodon leaves out of its links (``exclude_reblogs``) is still sent.
    """
    try:
        return {
            str(rel): dict(httpx.URL(link["url"]).params.items())
            for rel, link in response.links.items()
            if rel
        }
    except (httpx.InvalidURL, KeyError):
        raise MalformedResponse("Mastodon sent an unusable Link header") from None


class MastodonCollector(Collector):
    """Brand statuses, mention notifications and status search on one Mastodon instance."""

    platform = "mastodon"

    def __init__(
        self,
        *,
        access_token: str,
        token_env: str = "MASTODON_ACCESS_TOKEN",
        api_base: str = MASTODON_ORIGIN,
        page_size: int = 40,
        timeout: tuple[float, float] = (5.0, 20.0),
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        connect, read = timeout
        self.api_base = api_base.rstrip("/")
        self.token_env = token_env  # the variable's name, for the fix of a refused token
        self.page_size = page_size
        self.policy = policy or RetryPolicy()
        self._sleep = sleep or time.sleep
        self._exhausted_until: datetime | None = None
        self._deadline = request_deadline(timeout)
        self.client = httpx.Client(
            base_url=self.api_base,
            timeout=httpx.Timeout(read, connect=connect),
            headers={"Authorization": f"Bearer {access_token}"},
            transport=transport or deadline_transport(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MastodonCollector:
        """Build the collector from the config; the token comes from its environment variable."""
        return cls(
            access_token=settings.secret("mastodon", "access_token"),
            token_env=settings.platforms["mastodon"].secret_env["access_token"],
            **connection(settings, "mastodon"),
        )

    @classmethod
    def backfill_reach(cls, since: datetime, now: datetime) -> list[str]:
        """Statuses and notifications reach back to the start; search only what is indexed."""
        return [
            "mastodon: keyword search finds only statuses the instance has indexed (full-text "
            "search needs ElasticSearch, and other people's posts appear only when their authors "
            "opted in); hits elsewhere on the fediverse cannot be fetched"
        ]

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    # -- fetch (I/O) -----------------------------------------------------------------------------

    def resolve_account(self, handle: str) -> str:
        """Return the account id of ``handle``; warn when the token belongs to someone else."""
        try:
            account = self._get("/api/v1/accounts/lookup", [("acct", handle)], _account).body
        except NotFound:
            raise CollectorError(
                f"Mastodon has no account @{handle} on {self.api_base} (Record not found). "
                "Fix: check brands.accounts.mastodon and platforms.mastodon.api_base"
            ) from None
        account_id = str(account["id"])
        me = self._get("/api/v1/accounts/verify_credentials", [], _account).body
        if me["id"] != account_id:
            logger.warning(
                "mastodon: the access token belongs to @%s, not @%s: mentions will be that "
                "account's notifications",
                me.get("acct"),
                handle,
            )
        return account_id

    @classmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        """The search query finding any of ``keywords``: the platform spec's rule."""
        return keyword_query(keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Yield pages to store in order; each page's cursor holds once it is stored."""
        if target.stream == "keywords":
            return self._search_walk(target, cursor)
        if target.is_backfill:
            return newest_first(target, cursor, self._backward_walk(target, cursor))
        return forward(target, self._forward_walk(target, cursor))

    def _listing(self, target: Target) -> tuple[str, Params, str]:
        """Path, base parameters and raw-page key of the posts or mentions stream."""
        limit = ("limit", str(self.page_size))
        if target.stream == "posts":
            path = f"/api/v1/accounts/{quote(target.account_id, safe='')}/statuses"
            return path, [limit, ("exclude_reblogs", "true")], "statuses"
        if target.stream == "mentions":
            return NOTIFICATIONS_PATH, [("types[]", "mention"), limit], "notifications"
        raise CollectorError(f"mastodon has no stream {target.stream!r}")

    def _forward_walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        """min_id pages, oldest first, each committed with its newest id, until an empty page."""
        path, params, key = self._listing(target)
        check = partial(_validate_items, key=key)
        position = cursor.position
        min_id = position or "0"
        while True:
            answer = self._get(path, _with_bound(params, "min_id", min_id), check)
            items = answer.body
            position = _newest([i["id"] for i in items], position)
            yield Step(raw={key: items}, position=position)
            if not items:
                return
            min_id = answer.link_param("prev", "min_id") or str(position)

    def _backward_walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        """Backfill: max_id pages from the newest down to ``target.since``; resumable."""
        path, params, key = self._listing(target)
        check = partial(_validate_items, key=key)
        max_id: str | None = (cursor.pending or {}).get("max_id")
        while True:
            answer = self._get(path, _with_bound(params, "max_id", max_id), check)
            items = answer.body
            max_id = _older_page(answer, items, max_id)
            done = max_id is None or _passed(items, target.since)
            yield Step(raw={key: items}, pending=None if done else {"max_id": max_id})

    def _search_walk(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """One newest-first search per keyword, down to that keyword's last position."""
        terms = search_terms(target.query)
        positions = _decode_positions(cursor.position, len(terms), target)
        walk = dict(cursor.pending or {})
        term = int(walk.get("term", 0))
        max_id: str | None = walk.get("max_id")
        newest: str | None = walk.get("newest_id")
        pages = 0
        while term < len(terms):
            floor = None if target.is_backfill else positions[term]
            params: Params = [
                ("q", terms[term]),
                ("type", "statuses"),
                ("limit", str(self.page_size)),
            ]
            params = _with_bound(_with_bound(params, "min_id", floor), "max_id", max_id)
            answer = self._get(SEARCH_PATH, params, _validate_search)
            statuses = answer.body["statuses"]
            pages += 1
            newest = _newest([s["id"] for s in statuses], newest)
            max_id = _older_page(answer, statuses, max_id)
            if max_id is None or _passed(statuses, target.since):
                if not target.is_backfill:
                    positions[term] = _newest([newest] if newest else [], positions[term])
                term, max_id, newest = term + 1, None, None
            yield Page(
                raw=answer.body, cursor=_search_cursor(target, positions, term, max_id, newest)
            )
            if term >= len(terms) or budget_spent(target, pages):
                return

    # -- HTTP ------------------------------------------------------------------------------------

    def _get(self, path: str, params: Params, validate: Callable[[Any], Any]) -> Answer:
        """GET ``path`` and validate its body, with bounded retries (an answer of the wrong
        shape included); typed errors for every failure."""

        def once() -> Answer:
            self._check_rate_budget()
            try:
                response = fetch_whole(
                    self.client,
                    "GET",
                    path,
                    params=tuple(params),
                    seconds=self._deadline,
                    what=f"mastodon GET {path}",
                )
            except httpx.TimeoutException:
                raise TransientError(f"no answer from {self.api_base} in time") from None
            except httpx.TransportError as exc:
                raise TransientError(connection_problem(exc, self.api_base)) from None
            self._note_rate_limit(response.headers)
            _check_status(response, self.token_env)
            try:
                body = response.json()
            except ValueError:
                raise MalformedResponse("Mastodon sent a body that is not valid JSON") from None
            return Answer(validate(body), parse_links(response))

        return call_with_retries(
            once, policy=self.policy, what=f"mastodon GET {path}", sleep=self._sleep
        )

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        """Remember when an exhausted rate-limit window resets (None while requests remain)."""
        remaining = (headers.get("X-RateLimit-Remaining") or "").strip()
        spent = remaining.isdigit() and int(remaining) == 0
        self._exhausted_until = parse_reset(headers.get("X-RateLimit-Reset")) if spent else None

    def _check_rate_budget(self) -> None:
        """Refuse a request the server would answer 429: the window is spent until its reset."""
        until = self._exhausted_until
        if until is not None and until > clock.now():
            retry_at = clamp_retry_at(until)
            raise RateLimited(
                f"Mastodon rate limit spent; retry at {iso(retry_at)}",
                retry_at=retry_at,
                reset=until,
            )

    # -- normalize (pure) ------------------------------------------------------------------------

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        """Turn one page (statuses, notifications or a search answer) into Posts.

        Reblogs and notifications other than mentions are skipped; in a backfill, items outside
        ``[since, until)`` are left out.
        """
        if "notifications" in raw:
            statuses = [
                n["status"]
                for n in raw["notifications"]
                if n.get("type") == "mention" and isinstance(n.get("status"), dict)
            ]
        else:
            statuses = list(raw.get("statuses") or [])
        posts = (normalize_status(s, target) for s in statuses if _in_window(s, target))
        return [p for p in posts if p is not None]


# --------------------------------------------------------------------------- normalize helpers


# --------------------------------------------------------------------------- cursor helpers


def search_terms(query: str) -> list[str]:
    """The searches a keyword query stands for (``acme OR "rocket skates"`` -> two)."""
    return [t for t in _SEARCH_TERM.findall(query) if t != "OR" and t.strip('"')]


def _id_key(native_id: str) -> tuple[int, str]:
    """Order Mastodon ids: numeric strings by value, other sortable ids (ULIDs) lexically."""
    return len(native_id), native_id


def _newest(ids: Sequence[str], current: str | None) -> str | None:
    candidates = [*ids, *([current] if current else [])]
    return max(candidates, key=_id_key) if candidates else None


def _with_bound(params: Params, name: str, value: str | None) -> Params:
    return [*params, (name, value)] if value else list(params)


def _older_page(answer: Answer, items: Sequence[Mapping[str, Any]], sent: str | None) -> str | None:
    """The max_id of the next older page, or None when this page is the last (or the one sent
    again: a server that ignored it would answer the same page for ever).

    A ``Link`` header's ``rel="next"`` decides where there is one (Mastodon leaves it out on the
    last page); search sends no Link header, so its next page starts below the oldest item.
    """
    if not items:
        return None
    if answer.links:
        return next_cursor("mastodon", answer.link_param("next", "max_id"), sent)
    return next_cursor("mastodon", min((str(i["id"]) for i in items), key=_id_key), sent)


def _passed(items: Sequence[Mapping[str, Any]], since: datetime | None) -> bool:
    """True when the page reaches back before ``since`` (nothing older is in the window)."""
    if since is None or not items:
        return False
    return any(parse_iso(str(i["created_at"])) < since for i in items)


def _decode_positions(position: str | None, terms: int, target: Target) -> list[str | None]:
    if target.is_backfill or not position:
        return [None] * terms
    parts = position.split(",")
    if len(parts) != terms:
        logger.warning("%s: cursor %r does not fit the query; searching anew", target.key, position)
        return [None] * terms
    return [p or None for p in parts]


def _search_cursor(
    target: Target, positions: list[str | None], term: int, max_id: str | None, newest: str | None
) -> Cursor:
    position = None if target.is_backfill else ",".join(p or "" for p in positions)
    if term >= len(positions):
        return Cursor(position=position)
    walk: dict[str, Any] = {"term": term}
    if max_id is not None:
        walk.update(max_id=max_id, newest_id=newest)
    return Cursor(position=position, pending=walk)


# --------------------------------------------------------------------------- validation


# --------------------------------------------------------------------------- errors


def parse_reset(value: str | None) -> datetime | None:
    """``X-RateLimit-Reset`` (an ISO-8601 time) as a datetime; None when missing or odd."""
    if not value:
        return None
    try:
        return parse_iso(value.strip())
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:200]
    return response.reason_phrase or "no detail"


def _check_status(response: httpx.Response, token_env: str) -> None:
    """Map an error status onto the collector's typed errors (no secret in any message;
    ``token_env`` is the name of the token's variable, for the fix of a refused token)."""
    status = response.status_code
    if status < 400:
        return
    if status == 429:
        reset = parse_reset(response.headers.get("X-RateLimit-Reset"))
        retry_at = clamp_retry_at(reset)
        raw = response.headers.get("X-RateLimit-Reset")
        note = "" if reset else default_wait_note("X-RateLimit-Reset", raw)
        raise RateLimited(
            f"Mastodon rate limited until {iso(retry_at)}{note}", retry_at=retry_at, reset=reset
        )
    text = _error_text(response)
    if status in (401, 403):
        raise AuthError(
            f"Mastodon refused the access token (HTTP {status}: {text}). Fix: check the user "
            f"token in {token_env} (the variable named by platforms.mastodon.access_token_env)"
        )
    if status == 404:
        raise NotFound(f"Mastodon answered HTTP 404: {text}")
    if status == 408 or status >= 500:
        raise TransientError(f"Mastodon server error HTTP {status}")
    raise CollectorError(f"Mastodon answered HTTP {status}: {text}")
