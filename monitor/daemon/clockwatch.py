"""Noticing the wall clock set back, and moving the scheduled runs back with it.

APScheduler 3 waits on wall-clock times: a clock set back an hour (NTP stepping, a hand-set
clock, a VM restored) would hold every job for that hour. The monotonic clock does not move
back, so the wall clock's offset from it tells how far the clock stepped.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from monitor import clock

logger = logging.getLogger(__name__)

# The wall clock set back by more than this moves every job's next run back as much (a smaller
# step is the clock's ordinary correction, not worth a word).
CLOCK_STEP_SECONDS = 30.0


class ClockWatch:
    """Notices the wall clock being set back: its offset from the monotonic clock drops."""

    def __init__(self) -> None:
        self._offset = clock.timestamp() - time.monotonic()

    def went_back(self) -> float:
        """Seconds the wall clock was set back since the last call (0 or less if it was not)."""
        offset = clock.timestamp() - time.monotonic()
        back, self._offset = self._offset - offset, offset
        return back


def move_jobs_back(scheduler: BackgroundScheduler, seconds: float) -> None:
    """Move every job's next run back by ``seconds``: each keeps its place in its interval on
    the new clock, instead of waiting until the old time comes round again."""
    logger.warning(
        "the clock was set back %.0f s: every job's next run moves back as much", seconds
    )
    for job in scheduler.get_jobs():
        if job.next_run_time is not None:
            scheduler.modify_job(
                job.id, next_run_time=job.next_run_time - timedelta(seconds=seconds)
            )
