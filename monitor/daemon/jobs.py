"""What the scheduled jobs do: collect a stream, classify and alert, send digests, housekeep.

This module knows no platform: it drives :mod:`monitor.pipeline`. Each job runs in a thread of
the scheduler's pool with its own SQLite connection; one platform's client is used by one
thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlite_utils import Database

from monitor import clock, pipeline, store
from monitor.alerts.watchdog import Watchdog
from monitor.config import Settings
from monitor.daemon.child import classify_in_child
from monitor.daemon.housekeeping import Housekeeping, remember
from monitor.daemon.scheduling import PROCESS_JOB, Flight, Schedule, StreamJob
from monitor.digest import deliver_due
from monitor.platforms.base import Collector

logger = logging.getLogger(__name__)

PROCESS_PASSES = 3  # new items that arrive during a pass get more passes, boundedly


class Jobs:
    """The bodies of the scheduled jobs, and what they share: the settings (replaced on a
    reload), each thread's connection, the platforms' clients and their locks."""

    def __init__(
        self,
        settings: Settings,
        db_path: Path,
        flight: Flight,
        schedule: Schedule,
        watchdog: Watchdog,
    ) -> None:
        self.settings = settings
        self.db_path = db_path
        self.watchdog = watchdog
        self.housekeeping = Housekeeping()
        self._flight = flight
        self._schedule = schedule
        self._local = threading.local()
        self._collectors: dict[str, Collector] = {}
        self._platform_locks = {p: threading.Lock() for p in settings.platforms_in_use()}
        self._process_again = threading.Event()
        self._label_check_since: datetime | None = None

    def db(self) -> Database:
        """This thread's connection (a SQLite connection stays in the thread that opened it)."""
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = store.open_db(self.db_path)
            self._local.db = db
        return db

    def use(self, settings: Settings) -> None:
        """Run on ``settings`` from now on (a reload, once no job is in flight): the clients
        are made again from the new settings, as the next job needs them."""
        self.close_collectors()
        self._collectors = {}
        self.settings = settings
        self._platform_locks = {p: threading.Lock() for p in settings.platforms_in_use()}

    def close_collectors(self) -> None:
        for collector in self._collectors.values():
            collector.close()

    def stop_check(self) -> pipeline.StopCheck:
        """Why a job starting now should stop: the daemon stopping or reloading, or the job's
        deadline (``[daemon] job_deadline_seconds`` from now) passed."""
        limit = self.settings.daemon.job_deadline_seconds
        deadline = time.monotonic() + limit

        def check() -> pipeline.Stop | None:
            if self._flight.stop.is_set():
                return pipeline.Stop("touchpoint run is stopping", interrupted=True)
            if self._flight.pausing.is_set():
                return pipeline.Stop("touchpoint run is reloading its config", interrupted=True)
            if time.monotonic() > deadline:
                return pipeline.Stop(f"job deadline of {limit:.0f}s reached")
            return None

        return check

    # collection ---------------------------------------------------------------------------------

    def collect(self, job: StreamJob) -> None:
        stop = self.stop_check()
        lock = self._platform_locks[job.platform]  # one platform's client is used by one thread
        if not _acquire(lock, stop):
            logger.warning("%s: not run, %s", job.id, stop() or "platform busy")
            return
        try:
            results = pipeline.collect(
                self.db(),
                self.settings,
                pipeline.Selection(job.brand, job.platform, job.stream),
                collectors=self._collectors,
                stop=stop,
            )
        finally:
            lock.release()
        if any(r.items_new for r in results):
            self._process_again.set()
        self._wake_process(job.id)

    def _wake_process(self, finished: str) -> None:
        """Classify and alert soon after new items arrive, not one alerts interval later; but
        only once no other collection is in flight, so that mentions are judged together with
        the brand's replies collected in the same round (no alert for an answered mention)."""
        busy = self._flight.busy_besides(finished)
        # not while reloading either: the new scheduler will
        wanted = self._process_again.is_set() and not self._flight.halted()
        if wanted and not busy:
            self._schedule.wake(PROCESS_JOB)

    # classify and alert -------------------------------------------------------------------------

    def process(self) -> None:
        for _ in range(PROCESS_PASSES):
            self._process_again.clear()
            try:
                self.process_once()
            except Exception as exc:  # the watchdog gives the reason if it happens every time
                self.watchdog.failed(str(exc))
                raise
            self.watchdog.passed(clock.now())
            if not self._process_again.is_set() or self._flight.stop.is_set():
                return

    def process_once(self) -> None:
        """One pass: shrink an oversized WAL, label new brand posts, evaluate and send alerts."""
        db = self.db()
        started = clock.now()
        self.housekeeping.check_wal(db, self.settings.daemon.wal_alert_megabytes)
        if store.has_posts_to_label(db, collected_since=self._label_check_since):
            if self._classify(db):
                self._label_check_since = started - timedelta(minutes=1)
        else:
            self._label_check_since = started - timedelta(minutes=1)
        if self._flight.stop.is_set():
            return
        report = pipeline.run_alerts(db, self.settings)
        if report.eventful:
            logger.info("alerts: %s", report.summary())

    def _classify(self, db: Database) -> bool:
        """Label the new brand posts in a child; True if it labelled everything. A failure not
        caused by the daemon's own stop or reload is recorded for `touchpoint status`."""
        error = classify_in_child(self.settings.source, self.db_path, self.stop_check())
        if error is None:
            return True
        if not self._flight.halted():
            remember(partial(store.record_classification, db, error=error[:500]))
        return False

    # digest and housekeeping --------------------------------------------------------------------

    def send_digests(self) -> None:
        """Send yesterday's digest of each brand once its local send_time has passed (once per
        recipient: the store remembers what was sent)."""
        sent = deliver_due(self.db(), self.settings, clock.now())
        if sent:
            logger.info("digest: %d emails sent", sent)

    def checkpoint(self) -> None:
        """The daily job: old runs deleted, the WAL checkpointed."""
        self.housekeeping.checkpoint(self.db(), self.settings)


def _acquire(lock: threading.Lock, stop: pipeline.StopCheck) -> bool:
    while not lock.acquire(timeout=0.5):
        if stop() is not None:
            return False
    return True
