"""The one clock: every read of the current date and time in touchpoint goes through here.

``now()`` is the system clock in UTC, shifted by ``$TOUCHPOINT_CLOCK_OFFSET`` seconds when that
is set (for a test or a replay that runs touchpoint's processes on another day), unless a source
was installed with :func:`use` or :func:`set_source`. Tests install a :class:`Shifted` clock at a
fixed instant, so nothing they check depends on the day they run, and pass its offset to the
processes they start; the sandbox servers compute "now" from the same clock. Durations are
measured with ``time.monotonic()``, never from this clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

Source = Callable[[], datetime]
OFFSET_ENV = "TOUCHPOINT_CLOCK_OFFSET"


def system() -> datetime:
    """The machine's clock, timezone-aware in UTC."""
    return datetime.now(UTC)


class Shifted:
    """The system clock plus an offset: it runs as the machine's clock does (timeouts, rate-limit
    windows and backoffs elapse), on another day. Tests set or advance it."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return system() + self.offset

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards or back) and run on from there."""
        if when.tzinfo is None:
            raise ValueError("naive datetime: every time in touchpoint is timezone-aware")
        self.offset = when.astimezone(UTC) - system()

    def advance(self, delta: timedelta) -> None:
        """Move forward (or back, with a negative ``delta``) by ``delta``."""
        self.offset += delta


def from_env(environ: dict[str, str] | None = None) -> Shifted:
    """The process's clock: the system clock shifted by ``$TOUCHPOINT_CLOCK_OFFSET`` seconds."""
    raw = (os.environ if environ is None else environ).get(OFFSET_ENV, "").strip()
    try:
        seconds = float(raw) if raw else 0.0
    except ValueError:
        raise ValueError(
            f"{OFFSET_ENV} must be a number of seconds to shift the clock by, not {raw!r}; "
            "unset it to run on the machine's clock"
        ) from None
    return Shifted(timedelta(seconds=seconds))


_source: Source | None = None  # from the environment on first use


def now() -> datetime:
    """The current time, timezone-aware in UTC, from the installed source."""
    global _source
    if _source is None:
        _source = from_env()
    return _source()


def timestamp() -> float:
    """The current time as POSIX seconds (for wire formats that count in epoch seconds)."""
    return now().timestamp()


def set_source(source: Source | None) -> Source | None:
    """Install ``source`` as the clock for the whole process (None: the environment's again);
    return the one it replaces."""
    global _source
    previous, _source = _source, source
    return previous


@contextmanager
def use(source: Source) -> Iterator[Source]:
    """Install ``source`` for the duration of a ``with`` block, then restore the previous one."""
    previous = set_source(source)
    try:
        yield source
    finally:
        set_source(previous)
