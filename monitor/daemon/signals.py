"""Signals: SIGTERM and SIGINT stop the daemon, SIGHUP reloads its config file.

The handlers only set events; the daemon's main loop acts on them (a signal handler must not
take locks the interrupted code may hold). A reload reads and checks the whole config before
anything changes: a config with a mistake leaves the running one in place.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from monitor.alerts import outbox
from monitor.alerts.heartbeat import build_heartbeat
from monitor.config import ConfigError, Settings, load_settings

logger = logging.getLogger(__name__)


def check_for_daemon(settings: Settings) -> Settings:
    """Check now what the daemon would otherwise find at 3 am: every secret the config names is
    set, every alert channel can be built. Raises :class:`ConfigError`."""
    settings.check_secrets()
    outbox.build_channels(settings)
    build_heartbeat(settings)
    return settings


def reread(current: Settings, db_path: Path) -> Settings | None:
    """The config file read again and checked, or None (said why) to go on with ``current``.
    A changed ``[store] path`` is only warned about: the daemon holds ``db_path``'s lock."""
    try:
        new = check_for_daemon(load_settings(current.source))
    except ConfigError as exc:
        logger.error("config not reloaded, still running the previous one: %s", exc)
        return None
    if new.db_path != current.db_path:
        logger.warning(
            "store.path changed to %s: restart `touchpoint run` to use it; still on %s",
            new.db_path,
            db_path,
        )
    return new


class Signals:
    """The daemon's signal handlers, setting ``stop`` (SIGTERM, SIGINT) or ``reload`` (SIGHUP)."""

    def __init__(self, stop: threading.Event, config: Path) -> None:
        self.stop = stop
        self.reload = threading.Event()  # SIGHUP: read the config file again
        self._config = config

    def install(self) -> None:
        """Install the handlers (from the main thread, as Python requires)."""
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGHUP, self._hangup)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.info("%s received: stopping", signal.Signals(signum).name)
        self.stop.set()

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        logger.info("SIGHUP received: reloading %s", self._config)
        self.reload.set()
