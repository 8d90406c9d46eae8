"""The heartbeat: a dead-man's switch for ``touchpoint run``.

The watchdog speaks only while the daemon lives. A daemon that died, froze (``SIGSTOP``, a hung
host) or lost its machine says nothing, so something outside must expect to hear from it: an
uptime monitor with a push or heartbeat check (healthchecks.io, Uptime Kuma's push monitor,
Better Stack heartbeats, Cronitor, Dead Man's Snitch) gives a ping URL and raises its own alarm
when that URL is not called in time.

With ``[daemon] heartbeat_url_env`` set, the watchdog thread GETs that URL every
``heartbeat_seconds`` while its own check finds alerts going out, and stops while they do not, so
the monitor also hears of a stall that touchpoint's channels cannot carry (a mail server that is
down, say). Each beat is one GET through the channels' URL guard (``https`` only unless private
addresses are allowed, the checked address pinned, no redirect, no proxy) with a 10 s timeout; a
beat that fails is tried again at the watchdog's next look. The URL is a secret (its path is the
monitor's token): it is masked in the logs, and messages name only its scheme and host.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from monitor.config import ConfigError, Settings
from monitor.config.urls import redact_url
from monitor.logs import clean
from monitor.notify import unusable_url
from monitor.notify.base import DeliveryError
from monitor.notify.http import Target, request_once
from monitor.notify.urlguard import Resolver

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


class Heartbeat:
    """Calls one ping URL, at most every ``every`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        every: timedelta,
        allow_private: bool = False,
        timeout: float = TIMEOUT_SECONDS,
        resolver: Resolver | None = None,
    ) -> None:
        """Check the URL's form now (no DNS); ``http`` only with ``allow_private``."""
        self._target = Target.guarded(
            name="heartbeat",
            url=url,
            timeout=timeout,
            allow_private=allow_private,
            allow_http=allow_private,
            resolver=resolver,
            secret_path=True,
        )
        self.every = every
        self._last: datetime | None = None  # the last beat the monitor took
        self._failing = False

    def __repr__(self) -> str:
        return f"Heartbeat({redact_url(self._target.url)!r}, every={self.every})"

    @property
    def where(self) -> str:
        """The ping URL without its secret parts, for messages."""
        return redact_url(self._target.url)

    def validate(self) -> None:
        """Resolve and check the URL now; raise ``ValueError``/``OSError`` if it is unusable."""
        self._target.check()

    def due(self, now: datetime) -> bool:
        """Whether a beat is due at ``now``."""
        return self._last is None or now - self._last >= self.every

    def beat(self, now: datetime) -> bool:
        """One GET to the ping URL; True if the monitor took it (2xx)."""
        try:
            request_once(self._target, "GET")
        except DeliveryError as exc:
            say = logger.debug if self._failing else logger.warning
            say("heartbeat not taken: %s; tried again at the watchdog's next look", exc)
            self._failing = True
            return False
        if self._failing:
            logger.info("heartbeat: %s takes it again", self.where)
        else:
            logger.debug("heartbeat: %s took it", self.where)
        self._failing = False
        self._last = now
        return True


def build_heartbeat(settings: Settings, *, resolver: Resolver | None = None) -> Heartbeat | None:
    """The heartbeat the config asks for (None when ``heartbeat_url_env`` is empty).

    Raises :class:`ConfigError` when the variable is unset or its URL is not usable."""
    url = settings.heartbeat_url()
    if url is None:
        return None
    daemon = settings.daemon
    try:
        return Heartbeat(
            url,
            every=timedelta(seconds=daemon.heartbeat_seconds),
            allow_private=daemon.heartbeat_allow_private_addresses,
            resolver=resolver,
        )
    except ValueError as exc:
        raise ConfigError(
            str(settings.source),
            "daemon.heartbeat_url_env",
            f"{daemon.heartbeat_url_env}: {clean(str(exc))}",
            "set it to the https ping URL your uptime monitor gave you (an http or private "
            "address needs heartbeat_allow_private_addresses = true)",
        ) from None


def check_heartbeat(settings: Settings) -> Heartbeat | None:
    """Build the heartbeat and check its URL now, DNS included (``check-config``)."""
    heartbeat = build_heartbeat(settings)
    if heartbeat is None:
        return None
    try:
        heartbeat.validate()
    except (ValueError, OSError) as exc:
        raise unusable_url(
            settings, "daemon.heartbeat_url_env", exc, "heartbeat_allow_private_addresses"
        ) from None
    return heartbeat
