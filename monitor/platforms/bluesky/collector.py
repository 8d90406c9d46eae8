"""Bluesky (AT Protocol XRPC) collector on httpx.

Streams per brand account: ``app.bsky.feed.getAuthorFeed`` (the brand's posts and replies,
reposts and pins skipped), ``app.bsky.notification.listNotifications`` with reasons mention and
reply, and ``app.bsky.feed.searchPosts`` (``sort=latest``).

Login: ``com.atproto.server.createSession`` with the brand's handle and an app password, **once**:
the session (access and refresh JWTs, DID, handle) is kept across runs through
:meth:`BlueskyCollector.dump_state` / :meth:`~BlueskyCollector.load_state`, and an expired access
token is renewed with ``com.atproto.server.refreshSession``; only when the refresh token is refused
too is createSession called again (the PDS allows 30 logins per 5 minutes and 300 a day; a
login answered 429 is not tried again before its reset, by any stream or run of the collector;
the reset is kept with the session state, so a restart or a cron-run ``touchpoint collect`` waits
for it too). A refused login (a 401, or a token error a PDS may send by mistake) is tried again
after a back-off of 1 minute, doubling with each refusal in a row up to 16, and at once by a new
process or after a reload (SIGHUP): only the third refusal in a row (counted across processes)
is reported as refused credentials, the ones before as transient failures.

Limitation: a config holds one app password (``platforms.bluesky.app_password_env``), so the
collector logs in as the first brand with a Bluesky account. Every brand's posts and keyword
search work through that session, but notifications belong to the account that is logged in:
the mentions of any other brand's account cannot be read, and their runs fail saying so.

Pagination is the opaque ``cursor``, newest first. An incremental walk pages down until it meets
an item not newer than the stored mark (``position`` = sort time and at:// uri of the newest item
stored), commits page by page with the walk in ``Cursor.pending`` (resumable after a kill), and
moves ``position`` only at its end. Items at or below the mark are trimmed from the pages before
they are stored, as ``since_id`` does on other platforms.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from monitor.config import ConfigError, Settings
from monitor.logs import register_secret
from monitor.models import Cursor, Post, iso
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
    as_object,
    call_with_retries,
    clamp_retry_at,
    connection,
    default_wait_note,
    epoch_reset,
    newest_first,
    next_cursor,
    retry_after_reset,
)
from monitor.platforms.bluesky import keyword_query
from monitor.platforms.bluesky.normalize import (
    _count,
    _validate_page,
    normalize_feed_item,
    normalize_notification,
    normalize_post_view,
)
from monitor.platforms.bluesky.session import CREATE_SESSION, LoginGate, Session
from monitor.platforms.bluesky.walk import (
    SEARCH_DEPTH,
    Mark,
    _cut_short,
    _gap,
    _keeper,
    _mark,
    _Walk,
    _walk_ends,
    _xrpc_time,
)
from monitor.platforms.http import (
    connection_problem,
    deadline_transport,
    fetch_whole,
    request_deadline,
)

logger = logging.getLogger(__name__)

BSKY_ORIGIN = "https://bsky.social"
USER_AGENT = "touchpoint-monitor/0.1 (self-hosted brand monitor)"
MENTION_REASONS = ("mention", "reply")
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})

REFRESH_SESSION = "com.atproto.server.refreshSession"
# a refused login is tried again after this, doubling with each refusal in a row up to the most

Validator = Callable[[dict[str, Any]], dict[str, Any]]  # checks an answer's shape, returns it

_STREAMS: dict[str, tuple[str, str]] = {  # stream -> (nsid, list field of the answer)
    "posts": ("app.bsky.feed.getAuthorFeed", "feed"),
    "mentions": ("app.bsky.notification.listNotifications", "notifications"),
    "keywords": ("app.bsky.feed.searchPosts", "posts"),
}


class SessionRejected(CollectorError):
    """The PDS refused the session's token (expired, revoked or unknown): renew the session."""


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes


class BlueskyCollector(Collector):
    """Brand feed, notifications and post search over XRPC, with a session kept across runs."""

    platform = "bluesky"

    def __init__(
        self,
        *,
        identifier: str,
        app_password: str,
        api_base: str = BSKY_ORIGIN,
        page_size: int = 100,
        timeout: tuple[float, float] = (5.0, 20.0),
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        password_env: str = "BLUESKY_APP_PASSWORD",
    ) -> None:
        register_secret(app_password)
        self.identifier = identifier.lstrip("@").lower()
        self._password = app_password
        self.api_base = api_base.rstrip("/")
        self.page_size = page_size
        self.policy = policy or RetryPolicy()
        self.password_env = password_env
        self._sleep = sleep or time.sleep
        self._deadline = request_deadline(timeout)
        self._client = httpx.Client(
            base_url=self.api_base,
            timeout=httpx.Timeout(timeout[1], connect=timeout[0]),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=deadline_transport(),
        )
        self._session: Session | None = None
        self._gate = LoginGate(self.identifier, password_env)

    @classmethod
    def from_settings(cls, settings: Settings) -> BlueskyCollector:
        """Log in as the first brand's Bluesky account: one app password per config."""
        platform = settings.platforms["bluesky"]
        handles = [b.accounts["bluesky"] for b in settings.brands if "bluesky" in b.accounts]
        if not handles:
            raise ConfigError(
                str(settings.source),
                "brands",
                "no brand has a Bluesky account",
                'add bluesky = "yourbrand.bsky.social" to a [brands.accounts] table',
            )
        others = sorted({h.lower() for h in handles[1:]} - {handles[0].lower()})
        if others:
            logger.warning(
                "bluesky: one app password per config: logging in as @%s; the mentions of %s "
                "cannot be read",
                handles[0],
                ", ".join(f"@{h}" for h in others),
            )
        return cls(
            identifier=handles[0],
            app_password=settings.secret("bluesky", "app_password"),
            password_env=platform.secret_env["app_password"],
            **connection(settings, "bluesky"),
        )

    @classmethod
    def backfill_reach(cls, since: datetime, now: datetime) -> list[str]:
        """Feeds and notifications reach back to the start; search pages 10,000 hits deep."""
        return [
            f"bluesky: keyword search pages at most {SEARCH_DEPTH:,} hits deep per query; "
            "older hits of a busy keyword cannot be fetched"
        ]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- session state kept across runs ----------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        """Take back what an earlier run kept, if it is this account's on this PDS: the session,
        the reset of a login limit hit (so that no new process logs in before it) and the count
        of logins refused in a row (a new process, or a reload, tries one at once)."""
        if state.get("service") != self.api_base:
            return
        self._gate.take_back(state)
        try:
            session = Session.from_answer(state)
        except MalformedResponse:
            return
        if session.handle.lower() == self.identifier or session.did == self.identifier:
            self._session = session

    def dump_state(self) -> dict[str, Any]:
        """What to keep: the session, a login limit's reset and the logins refused in a row ({}
        when there is none of them, so a dead session is forgotten)."""
        state: dict[str, Any] = {}
        session = self._session
        if session is not None:
            state = {
                "service": self.api_base,
                "did": session.did,
                "handle": session.handle,
                "accessJwt": session.access_jwt,
                "refreshJwt": session.refresh_jwt,
            }
        kept = self._gate.to_keep()
        if kept:
            state.update(service=self.api_base, login=self.identifier, **kept)
        return state

    # -- fetch (I/O) -----------------------------------------------------------------------------

    def resolve_account(self, handle: str) -> str:
        """Return the DID of ``handle`` (this logs in first, when there is no session yet)."""
        body = self._xrpc("com.atproto.identity.resolveHandle", {"handle": handle}, _with_did)
        return str(body["did"])

    @classmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        """The search query finding any of ``keywords``: the platform spec's rule."""
        return keyword_query(keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Yield pages newest-first; ``position`` moves to the newest item after the last page."""
        return newest_first(target, cursor, self._walk(target, cursor))

    def _walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        nsid, field = _STREAMS[target.stream]
        params = self._stream_params(target)
        if target.stream == "mentions":
            self._check_own_notifications(target)
        pending = cursor.pending or {}
        mark = None if target.is_backfill else Mark.decode(pending.get("mark", cursor.position))
        newest = Mark.decode(pending.get("newest"))
        api_cursor: str | None = pending.get("cursor")
        seen = _count(pending.get("seen"))
        keep = _keeper(target, mark)
        while True:
            call = {**params, "cursor": api_cursor} if api_cursor else params
            body = self._xrpc(nsid, call, partial(_validate_page, field=field))
            items: list[dict[str, Any]] = body[field]
            seen += len(items)
            marks = [m for m in (_mark(target.stream, item) for item in items) if m is not None]
            newest = max([*marks, *(m for m in (newest, mark) if m is not None)], default=None)
            api_cursor = next_cursor("bluesky", body.get("cursor"), api_cursor)
            reached = _walk_ends(marks, mark, target.since)
            done = api_cursor is None or reached
            raw = {**body, field: [i for i in items if keep(_mark(target.stream, i))]}
            walk = _Walk(mark, newest, None if done else api_cursor, seen)
            ended_early = api_cursor is None and bool(marks) and not reached
            cut = ended_early and _cut_short(seen, body.get("hitsTotal"))
            gap = _gap(target, mark) if cut else None
            yield walk.step(raw, target, cursor, gap)
            if done:
                return

    def _stream_params(self, target: Target) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size}
        if target.stream == "posts":
            params.update(actor=target.account_id, filter="posts_with_replies")
        elif target.stream == "mentions":
            params["reasons"] = list(MENTION_REASONS)
        else:
            params.update(q=target.query, sort="latest")
            if target.since is not None:
                params["since"] = _xrpc_time(target.since)
            if target.until is not None:
                params["until"] = _xrpc_time(target.until)
        return params

    def _check_own_notifications(self, target: Target) -> None:
        session = self._ensure_session()
        if session.did != target.account_id:
            raise CollectorError(
                f"bluesky: the mentions of @{target.handle} are notifications of that account, "
                f"and the app password logs in as @{session.handle} (one Bluesky account per "
                "config)"
            )

    # -- XRPC with the session -------------------------------------------------------------------

    def _xrpc(self, nsid: str, params: Mapping[str, Any], validate: Validator) -> dict[str, Any]:
        """An authenticated query whose answer ``validate`` checks (an answer of the wrong shape
        is retried too); an expired session is renewed once and the call retried once."""
        self._ensure_session()
        try:
            return self._query(nsid, params, validate)
        except SessionRejected as exc:
            logger.info("bluesky: %s refused the access token (%s); refreshing", nsid, exc)
        self._renew_session()
        try:
            return self._query(nsid, params, validate)
        except SessionRejected as exc:
            raise AuthError(f"Bluesky refused a fresh session for {nsid} ({exc})") from None

    def _query(self, nsid: str, params: Mapping[str, Any], validate: Validator) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            session = self._session  # read on every attempt: a renewal replaces it
            token = session.access_jwt if session else None
            answer = self._send("GET", nsid, params=params, token=token)
            return validate(_parse(answer, nsid))

        return self._retrying(once, nsid)

    def _procedure(
        self, nsid: str, *, token: str | None = None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._retrying(
            lambda: _parse(self._send("POST", nsid, token=token, body=body), nsid), nsid
        )

    def _retrying(self, once: Callable[[], dict[str, Any]], nsid: str) -> dict[str, Any]:
        what = f"bluesky {nsid}"
        return call_with_retries(once, policy=self.policy, what=what, sleep=self._sleep)

    def _ensure_session(self) -> Session:
        if self._session is None:
            self._login()
        assert self._session is not None
        return self._session

    def _renew_session(self) -> None:
        """refreshSession once; when the refresh token is refused too, createSession once.

        A transient failure of the refresh leaves the session as it was, to be tried next run.
        """
        session = self._session
        if session is not None:
            try:
                answer = self._procedure(REFRESH_SESSION, token=session.refresh_jwt)
            except SessionRejected as exc:
                logger.info("bluesky: the refresh token was refused (%s); logging in again", exc)
                self._session = None
            else:
                self._session = Session.from_answer(answer)
                logger.info("bluesky: session of @%s refreshed", self._session.handle)
                return
        self._login()

    def _login(self) -> None:
        self._gate.check()
        body = {"identifier": self.identifier, "password": self._password}
        try:
            answer = self._procedure(CREATE_SESSION, body=body)
        except RateLimited as exc:
            self._gate.limited(exc)
            raise
        except (SessionRejected, AuthError) as exc:
            raise self._gate.refused(exc) from None
        self._session = Session.from_answer(answer)
        self._gate.opened()
        logger.info("bluesky: logged in as @%s (createSession)", self._session.handle)

    def _send(
        self,
        method: str,
        nsid: str,
        *,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> _Answer:
        """One HTTP exchange within an overall deadline; transport failures become typed."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = fetch_whole(
                self._client,
                method,
                f"/xrpc/{nsid}",
                params=params,
                json=body,
                headers=headers,
                seconds=self._deadline,
                what=nsid,
            )
            return _Answer(response.status_code, response.headers, response.content)
        except httpx.TimeoutException:
            raise TransientError(f"no answer from {self.api_base} in time ({nsid})") from None
        except httpx.DecodingError:
            raise MalformedResponse(f"{nsid}: the answer could not be decoded") from None
        except httpx.HTTPError as exc:
            raise TransientError(connection_problem(exc, self.api_base)) from None

    # -- normalize (pure) ------------------------------------------------------------------------

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        """Turn one page into Posts: reposts and pins skipped, replies linked to their parent."""
        _, field = _STREAMS[target.stream]
        posts = []
        for item in raw.get(field, []):
            if target.stream == "posts":
                post = normalize_feed_item(item, target)
            elif target.stream == "mentions":
                post = normalize_notification(item, target)
            else:
                post = normalize_post_view(item, target)
            if post is not None:
                posts.append(post)
        return posts


# --------------------------------------------------------------------------- normalize helpers


# --------------------------------------------------------------------------- the walk


# --------------------------------------------------------------------------- answers and errors


def _with_did(body: dict[str, Any]) -> dict[str, Any]:
    """Check a resolveHandle answer names a DID, and return it."""
    did = body.get("did")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise MalformedResponse("resolveHandle answered without a DID")
    return body


def _parse(answer: _Answer, nsid: str) -> dict[str, Any]:
    """The JSON object of a 200 answer; every other status becomes a typed error."""
    if answer.status == 200:
        try:
            body = json.loads(answer.body)
        except ValueError:
            raise MalformedResponse(f"{nsid}: the body is not valid JSON") from None
        return as_object(body, nsid)
    error, message = _error_of(answer.body)
    what = f"{nsid}: HTTP {answer.status} {error}".rstrip()
    if answer.status == 429:
        reset = _reset_time(answer.headers)
        retry_at = clamp_retry_at(reset)
        raw = answer.headers.get("ratelimit-reset")
        note = "" if reset else default_wait_note("RateLimit-Reset", raw)
        raise RateLimited(
            f"{what}, rate limited until {iso(retry_at)}{note}", retry_at=retry_at, reset=reset
        )
    if answer.status >= 500 or answer.status == 408:
        raise TransientError(what)
    if answer.status == 401 or (answer.status == 400 and error in TOKEN_ERRORS):
        raise SessionRejected(f"HTTP {answer.status} {error}".rstrip())
    if answer.status == 403:
        raise AuthError(f"Bluesky refused access: {what} {message}".rstrip())
    raise CollectorError(f"Bluesky answered {what}: {message or 'no detail'}")


def _error_of(body: bytes) -> tuple[str, str]:
    """The ``error`` name and ``message`` of an XRPC error body (empty when it has none)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(payload, dict):
        return "", ""
    error, message = payload.get("error"), payload.get("message")
    return (
        error[:80] if isinstance(error, str) else "",
        message[:200] if isinstance(message, str) else "",
    )


def _reset_time(headers: httpx.Headers) -> datetime | None:
    """``RateLimit-Reset`` (epoch seconds), else ``Retry-After``, as a time; None when neither
    is there and readable."""
    return epoch_reset(headers.get("ratelimit-reset")) or retry_after_reset(
        headers.get("retry-after")
    )
