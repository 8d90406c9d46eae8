"""Bluesky's login: the session kept across runs, and when a new login may be tried.

The PDS allows 30 logins per 5 minutes and 300 a day, so a login answered 429 is not tried
again before its reset, and a refused one waits a back-off that doubles with each refusal in a
row; both are kept with the session state, so a restart waits for them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor import clock
from monitor.logs import register_secret
from monitor.models import iso, parse_iso
from monitor.platforms.base import (
    AuthError,
    CollectorError,
    MalformedResponse,
    RateLimited,
    TransientError,
    clamp_retry_at,
)

CREATE_SESSION = "com.atproto.server.createSession"
MAX_LOGIN_WAIT = timedelta(hours=25)  # createSession's longest limit is a day
FIRST_LOGIN_BACKOFF = timedelta(minutes=1)
MAX_LOGIN_BACKOFF = timedelta(minutes=16)
REFUSALS_REPORTED = 3  # refusals in a row that make refused credentials (before: transient)


@dataclass(frozen=True)
class Session:
    """A logged-in session: what is kept across runs (never the app password)."""

    did: str
    handle: str
    access_jwt: str
    refresh_jwt: str

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> Session:
        """The session in a createSession / refreshSession answer."""
        fields = ("did", "handle", "accessJwt", "refreshJwt")
        if not all(isinstance(body.get(f), str) and body.get(f) for f in fields):
            raise MalformedResponse("the session answer lacks did, handle or the tokens")
        session = cls(body["did"], body["handle"], body["accessJwt"], body["refreshJwt"])
        session.register()
        return session

    def register(self) -> None:
        """Mark both tokens as secrets: they never reach a log line or a stored error."""
        register_secret(self.access_jwt)
        register_secret(self.refresh_jwt)


@dataclass
class LoginGate:
    """When the next createSession may be sent: not before the reset of a login limit hit,
    nor before the back-off of the last refusal; counts the refusals in a row."""

    identifier: str
    password_env: str  # named in the fix of refused credentials
    refusals: int = 0  # logins refused in a row (kept across runs)
    last_refusal: CollectorError | None = None  # the last refusal, as reported
    retry_at: datetime | None = None  # no login before then (this process)
    limited_until: datetime | None = None  # the reset of a login limit hit (kept across runs)

    def take_back(self, state: Mapping[str, Any]) -> None:
        """Take back the login limit and the refusals an earlier run kept for this account."""
        self.limited_until = _kept_login_limit(state, self.identifier)
        self.refusals = _kept_refusals(state, self.identifier)

    def to_keep(self) -> dict[str, Any]:
        """What to keep across runs: a login limit not yet over, the refusals in a row."""
        kept: dict[str, Any] = {}
        until = self.limited_until
        if until is not None and clock.now() < until:
            kept["login_limited_until"] = iso(until)
        if self.refusals:
            kept["login_refusals"] = self.refusals
        return kept

    def check(self) -> None:
        """Refuse, without a request, a login during a back-off or a login limit."""
        until, refused = self.retry_at, self.last_refusal
        if until is not None and refused is not None and clock.now() < until:
            raise type(refused)(str(refused))
        self.check_limit()

    def check_limit(self) -> None:
        """Refuse, without a request, a login before the reset of a login limit hit."""
        until = self.limited_until
        if until is not None and clock.now() < until:
            raise RateLimited(
                f"Bluesky's login ({CREATE_SESSION}) is rate limited until {iso(until)}; no "
                "login is tried before then",
                retry_at=clamp_retry_at(until),
                reset=until,
            )

    def limited(self, exc: RateLimited) -> None:
        """A login answered 429: none before its reset (capped), which may be a day away:
        streams come back every 16 minutes at most, and each login before the reset would
        only be refused again. Raises the limit when it is still ahead."""
        self.limited_until = min(exc.reset or exc.retry_at, clock.now() + MAX_LOGIN_WAIT)
        self.check_limit()

    def refused(self, exc: CollectorError) -> CollectorError:
        """Count a refused login and say so: a transient error at first (a PDS may refuse a
        login now and then), refused credentials once it repeats; either way the next login waits
        a back-off that doubles with each refusal in a row (the login limit is tight)."""
        self.refusals += 1
        refusals = self.refusals
        wait = min(FIRST_LOGIN_BACKOFF * 2 ** min(refusals - 1, 10), MAX_LOGIN_BACKOFF)
        self.retry_at = clock.now() + wait
        then = iso(self.retry_at)
        error: CollectorError
        if refusals >= REFUSALS_REPORTED:
            error = AuthError(
                f"Bluesky refused the login of @{self.identifier} {refusals} times in a row "
                f"({exc}); next try after {then}. Fix: create an app password in Bluesky's "
                f"settings and export it in {self.password_env}"
            )
        else:
            error = TransientError(
                f"Bluesky refused the login of @{self.identifier} ({exc}; {refusals} of "
                f"{REFUSALS_REPORTED} refusals in a row before it counts as bad credentials); "
                f"trying again after {then}"
            )
        self.last_refusal = error
        return error

    def opened(self) -> None:
        """A login succeeded: no refusal in a row any more."""
        self.refusals, self.last_refusal, self.retry_at = 0, None, None


def _kept_login_limit(state: Mapping[str, Any], identifier: str) -> datetime | None:
    """The kept reset of a login limit, for this account; a bad or far value counts as none."""
    if state.get("login") != identifier:
        return None
    try:
        until = parse_iso(str(state["login_limited_until"]))
    except (KeyError, ValueError):
        return None
    return until if until <= clock.now() + MAX_LOGIN_WAIT else None


def _kept_refusals(state: Mapping[str, Any], identifier: str) -> int:
    """The kept count of logins refused in a row, for this account; a bad value counts as 0."""
    count = state.get("login_refusals") if state.get("login") == identifier else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
