"""The watchdog: a second path for the news that alerts are not going out.

Every alert travels through the outbox, and the outbox is emptied by the daemon's alert pass. If
that pass dies on every run (the store full or locked by another program, a bug), or stops
running, nothing can say so through the outbox. The watchdog runs in its own thread of
``touchpoint run``, only reads the store, and sends its notice straight to the channels (one
attempt each, at the channel's own timeout, skipping a channel that asked to be left alone),
without writing anything:

* no alert pass has finished for ``[daemon] watchdog_after_seconds`` (the last failure's reason
  is given);
* or a message has been due that long and nothing has claimed it.

A new daemon is given that long before it is judged, so a backlog left by downtime is not blamed
on it; so is a daemon that wakes up (a gap of over half that long between two of the watchdog's
looks: the process frozen, the machine suspended, the clock stepped forward), which runs its
jobs once it is back. The notice is repeated every ``repeat_hours`` while the stall lasts, and an
all-clear follows when passes finish and nothing due is left waiting.

While nothing is wrong, the watchdog also beats the heartbeat, if one is configured
(:mod:`monitor.alerts.heartbeat`): an uptime monitor elsewhere hears of a daemon that died or froze.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlite_utils import Database

from monitor import store
from monitor.alerts.heartbeat import Heartbeat
from monitor.logs import clean
from monitor.models import iso
from monitor.notify.base import Channel, DeliveryError
from monitor.notify.message import AlertItem, Message

logger = logging.getLogger(__name__)

KIND = "watchdog"
PLATFORM = "touchpoint"


@dataclass(frozen=True)
class PassState:
    """What the daemon knows of its alert passes."""

    started: datetime  # when the daemon started
    last_pass: datetime | None  # when a pass last finished
    last_error: str | None  # why the last pass failed, if it did
    woke: datetime | None = None  # when it last came back from a freeze or a clock step

    @property
    def judged_from(self) -> datetime:
        """Since when the passes have had their chance: the start, or the last wake-up."""
        return max(self.started, self.woke or self.started)


def stalls(db: Database, state: PassState, *, now: datetime, after: timedelta) -> list[str]:
    """Why alerts are not going out (empty when they are), from the pass state and the outbox."""
    if now - state.judged_from < after:
        return []
    problems = []
    since = state.last_pass or state.started
    if now - since >= after:
        span = _minutes(now - since)
        ran = f"for {span}" if state.last_pass else f"since touchpoint run started, {span} ago"
        failed = f"; the last one failed: {state.last_error}" if state.last_error else ""
        problems.append(f"no alert pass has finished {ran}{failed}")
    try:
        overdue = store.overdue_deliveries(db, due_before=now - after)
    except (store.StoreError, sqlite3.Error) as exc:
        problems.append(f"the outbox cannot be read: {exc}")
        return problems
    if overdue.count and overdue.oldest_due is not None:
        s = "" if overdue.count == 1 else "s"
        problems.append(
            f"{overdue.count} alert message{s} due for {_minutes(now - overdue.oldest_due)} "
            "not sent yet"
        )
    return problems


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min" if minutes else f"{int(span.total_seconds())} s"


class Watchdog:
    """Watches the alert passes; :meth:`check` sends a notice when they stall and when they
    recover. Thread-safe: the alert job reports, the watchdog thread checks."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        after: timedelta,
        repeat: timedelta,
        started: datetime,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._state = PassState(started, None, None)
        self._notified_at: datetime | None = None  # the last notice of the current stall
        self._looked_at: datetime | None = None  # the last check
        self.configure(channels, after=after, repeat=repeat, heartbeat=heartbeat)

    def configure(
        self,
        channels: Mapping[str, Channel],
        *,
        after: timedelta,
        repeat: timedelta,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """Whom to tell, after how long, how often, what to beat (again after a config reload)."""
        self.channels = dict(channels)
        self.after = after
        self.repeat = repeat
        self.heartbeat = heartbeat

    def passed(self, at: datetime) -> None:
        """An alert pass finished (whatever it found)."""
        with self._lock:
            self._state = replace(self._state, last_pass=at, last_error=None)

    def failed(self, error: str) -> None:
        """An alert pass died with ``error``."""
        with self._lock:
            self._state = replace(self._state, last_error=clean(error)[:300])

    def check(self, db: Database, now: datetime) -> list[str]:
        """Judge now; send a notice if due, or beat the heartbeat when nothing is wrong; return
        the problems found."""
        with self._lock:
            if self._looked_at is not None and now - self._looked_at > self.after / 2:
                logger.info(
                    "watchdog: nothing looked for %s (the process frozen or the clock stepped "
                    "forward); the alert passes get %s to catch up",
                    _minutes(now - self._looked_at),
                    _minutes(self.after),
                )
                self._state = replace(self._state, woke=now)
            self._looked_at = now
            state = self._state
        problems = stalls(db, state, now=now, after=self.after)
        if problems:
            last = self._notified_at
            if last is None or now - last >= self.repeat:
                logger.error("watchdog: alerts are not going out: %s", "; ".join(problems))
                if self._send(db, _notice(problems, now), now):
                    self._notified_at = now
        elif self._notified_at is not None:
            logger.info("watchdog: alerts are going out again")
            if self._send(db, _all_clear(self._notified_at, now), now):
                self._notified_at = None
        heartbeat = self.heartbeat
        if not problems and heartbeat is not None and heartbeat.due(now):
            heartbeat.beat(now)
        return problems

    def _send(self, db: Database, message: Message, now: datetime) -> bool:
        """One attempt to each channel not held; True if any took it."""
        try:
            held = store.get_channel_holds(db, now=now)
        except Exception as exc:  # the store's trouble may be the news itself: send anyway
            logger.warning("watchdog: channel holds not read: %s", clean(str(exc)))
            held = {}
        taken = 0
        for name, channel in self.channels.items():
            if name in held:
                logger.warning("watchdog: %s not told, it asked to wait until %s", name, held[name])
                continue
            try:
                channel.send(message)
            except DeliveryError as exc:
                logger.warning("watchdog: %s not told: %s", name, exc)
                continue
            except Exception as exc:  # a bug in one channel must not silence the others
                logger.warning("watchdog: %s not told: %s", name, clean(repr(exc)))
                continue
            taken += 1
        return taken > 0


def _notice(problems: list[str], now: datetime) -> Message:
    text = "\n".join(problems)
    return Message(
        key=_key("stalled", text, now),
        brand=PLATFORM,
        kind=KIND,
        severity="critical",
        title="touchpoint: alerts are not going out",
        summary=(
            "; ".join(problems) + ". Sent straight from the watchdog of `touchpoint run`, "
            "not through the outbox; `touchpoint status` shows what is waiting."
        ),
        items=tuple(_item(p, now) for p in problems),
        created_at=iso(now),
    )


def _all_clear(since: datetime, now: datetime) -> Message:
    return Message(
        key=_key("recovered", iso(since), now),
        brand=PLATFORM,
        kind=KIND,
        severity="info",
        title="touchpoint: alerts are going out again",
        summary="alert passes finish again and no message due is left waiting",
        items=(),
        created_at=iso(now),
    )


def _item(problem: str, now: datetime) -> AlertItem:
    return AlertItem(
        text=problem, url="", author="", platform=PLATFORM, created_at=iso(now), detail=KIND
    )


def _key(what: str, text: str, now: datetime) -> str:
    digest = hashlib.sha256(f"{what}\n{text}\n{iso(now)}".encode()).hexdigest()
    return f"touchpoint-{KIND}-{digest[:24]}"
