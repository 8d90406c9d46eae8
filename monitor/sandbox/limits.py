"""One fixed-window rate limiter for every platform sandbox.

Platforms differ only in their limits, in when a window resets and in the headers that report
it; the counting is written once here and driven by :class:`monitor.sandbox.server.SandboxServer`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from monitor import clock


@dataclass
class RateWindow:
    """One fixed rate-limit window: ``limit`` requests per ``seconds``, reset at ``reset``."""

    limit: int
    seconds: int
    remaining: int
    reset: float  # epoch seconds

    @property
    def used(self) -> int:
        """Requests counted in this window."""
        return self.limit - self.remaining


@dataclass(frozen=True)
class HeaderNames:
    """How a platform names the three headers reporting a window: its limit, what remains and
    when it resets."""

    limit: str
    remaining: str
    reset: str

    def of(self, window: RateWindow, reset: str) -> tuple[tuple[str, str], ...]:
        """The headers reporting ``window``, its reset written as ``reset``."""
        return (
            (self.limit, str(window.limit)),
            (self.remaining, str(window.remaining)),
            (self.reset, reset),
        )


def next_second(now: float, seconds: int) -> float:
    """A window opening now that resets ``seconds`` after the next whole second (X, Bluesky)."""
    return float(math.ceil(now) + seconds)


def aligned(now: float, seconds: int) -> float:
    """A window on the ``seconds`` grid of the epoch (Mastodon's Rack::Attack periods)."""
    return float((math.floor(now / seconds) + 1) * seconds)


def exact(now: float, seconds: int) -> float:
    """A window resetting exactly ``seconds`` from now (Reddit)."""
    return now + seconds


class RateLimiter:
    """Fixed-window limits by name; a request counts against one or more windows at once.

    ``limits`` maps a window's name to ``(limit, seconds)`` (``default`` for other names);
    ``reset`` says when a window opened at a time resets.  Thread-safe.
    """

    def __init__(
        self,
        limits: Mapping[str, tuple[int, int]],
        *,
        default: tuple[int, int] | None = None,
        reset: Callable[[float, int], float] = next_second,
    ) -> None:
        self.limits = dict(limits)
        self.default = default
        self._reset = reset
        self._windows: dict[str, RateWindow] = {}
        self._lock = threading.Lock()

    def limit(self, name: str) -> tuple[int, int]:
        """``(limit, seconds)`` of window ``name``."""
        found = self.limits.get(name, self.default)
        if found is None:
            raise KeyError(name)
        return found

    def _current(self, names: Iterable[str], now: float) -> list[RateWindow]:
        windows = []
        for name in names:
            window = self._windows.get(name)
            if window is None or now >= window.reset:
                limit, seconds = self.limit(name)
                window = RateWindow(limit, seconds, limit, self._reset(now, seconds))
                self._windows[name] = window
            windows.append(window)
        return windows

    def take(self, *names: str) -> tuple[bool, RateWindow]:
        """Count one request against ``names`` unless one is used up: whether it was allowed,
        and the window with the least left (a copy, as it stands after the count)."""
        with self._lock:
            windows = self._current(names, clock.timestamp())
            allowed = all(w.remaining > 0 for w in windows)
            for window in windows if allowed else ():
                window.remaining -= 1
            tightest = min(windows, key=lambda w: w.remaining)
            return allowed, RateWindow(**vars(tightest))

    def peek(self, *names: str) -> RateWindow:
        """The window of ``names`` with the least left, without counting (a copy)."""
        with self._lock:
            windows = self._current(names, clock.timestamp())
            return RateWindow(**vars(min(windows, key=lambda w: w.remaining)))

    def exhausted(self, name: str, reset_in: float) -> RateWindow:
        """Window ``name`` used up until ``reset_in`` seconds from now (a 429 fault's)."""
        limit, seconds = self.limit(name)
        return RateWindow(limit, seconds, 0, clock.timestamp() + reset_in)
