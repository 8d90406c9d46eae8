"""The watchdog thread: tells the ops channels when alert passes stall, and beats the heartbeat.

:class:`monitor.alerts.watchdog.Watchdog` judges; this module configures it from the settings
(at start and after each reload) and runs its thread until the daemon stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlite_utils import Database

from monitor import clock
from monitor.alerts import outbox
from monitor.alerts.heartbeat import build_heartbeat
from monitor.alerts.watchdog import Watchdog
from monitor.config import Settings

logger = logging.getLogger(__name__)

WATCHDOG_TICK_SECONDS = 60.0  # how often the watchdog looks (more often for a short watchdog_after)


def configure_watchdog(watchdog: Watchdog, settings: Settings) -> None:
    """Tell the watchdog which channels to use and how long a pass may take: at least one
    alerts interval plus a job deadline (the classify child's), however short the setting."""
    options = settings.daemon
    names = options.watchdog_channels
    channels = outbox.build_channels(settings)
    chosen = {n: c for n, c in channels.items() if not names or n in names}
    bound = options.alerts_interval_seconds + options.job_deadline_seconds
    after = max(options.watchdog_after_seconds, bound)
    hours = min((b.alerts.repeat_hours for b in settings.brands), default=4.0)
    heartbeat = build_heartbeat(settings)  # checked before start and reload
    watchdog.configure(
        chosen,
        after=timedelta(seconds=after),
        repeat=timedelta(hours=hours),
        heartbeat=heartbeat,
    )
    logger.info("watchdog: alerts not going out for %.0fs are told to %s", after, ", ".join(chosen))
    if heartbeat is not None:
        logger.info(
            "heartbeat: %s every %.0fs while alerts go out",
            heartbeat.where,
            heartbeat.every.total_seconds(),
        )


def start_watching(
    watchdog: Watchdog, stop: threading.Event, db: Callable[[], Database]
) -> threading.Thread:
    """Start the watchdog thread (a daemon thread: it never holds the process back)."""
    thread = threading.Thread(
        target=_watch, args=(watchdog, stop, db), name="watchdog", daemon=True
    )
    thread.start()
    return thread


def _watch(watchdog: Watchdog, stop: threading.Event, db: Callable[[], Database]) -> None:
    """The watchdog thread: judge the alert passes (and beat the heartbeat) until the daemon
    stops; never raise. ``db`` gives this thread's own connection."""
    while not stop.wait(watch_tick(watchdog)):
        try:
            watchdog.check(db(), clock.now())
        except Exception:
            logger.exception("watchdog: check failed")


def watch_tick(watchdog: Watchdog) -> float:
    """Seconds between the watchdog's looks: often enough for its limit and the heartbeat."""
    spans = [WATCHDOG_TICK_SECONDS, watchdog.after.total_seconds() / 5]
    if watchdog.heartbeat is not None:
        spans.append(watchdog.heartbeat.every.total_seconds() / 5)
    return min(spans)
