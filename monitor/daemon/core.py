"""``touchpoint run``: the daemon that keeps every stream collected, classified and alerted.

:class:`Daemon` composes the parts, each in a module of its own: the lock that refuses a second
daemon on the same database (:mod:`~monitor.daemon.lock`), the APScheduler jobs and the runs in
flight (:mod:`~monitor.daemon.scheduling`), what each job does (:mod:`~monitor.daemon.jobs`),
signals and reload (:mod:`~monitor.daemon.signals`), the clock watch
(:mod:`~monitor.daemon.clockwatch`), the watchdog thread (:mod:`~monitor.daemon.watch`) and the
store's housekeeping (:mod:`~monitor.daemon.housekeeping`).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from functools import partial
from pathlib import Path

from sqlite_utils import Database

from monitor import clock, heap, store
from monitor.alerts.watchdog import Watchdog
from monitor.config import Settings
from monitor.daemon.clockwatch import CLOCK_STEP_SECONDS, ClockWatch
from monitor.daemon.housekeeping import check_writable, remember
from monitor.daemon.jobs import Jobs
from monitor.daemon.lock import database_lock
from monitor.daemon.scheduling import Flight, Schedule, plan_streams
from monitor.daemon.signals import Signals, reread
from monitor.daemon.watch import configure_watchdog, start_watching

logger = logging.getLogger(__name__)


class Daemon:
    """Schedules the jobs, runs until SIGTERM or SIGINT, then stops within the grace period;
    SIGHUP reloads the config file."""

    def __init__(self, settings: Settings, db_path: Path) -> None:
        self.db_path = db_path
        self.flight = Flight()
        self.signals = Signals(self.flight.stop, settings.source)
        self.schedule = Schedule(self.flight)
        self.watchdog = Watchdog({}, after=timedelta(0), repeat=timedelta(0), started=clock.now())
        self.jobs = Jobs(settings, db_path, self.flight, self.schedule, self.watchdog)

    @property
    def settings(self) -> Settings:
        """The settings running now (replaced by a reload)."""
        return self.jobs.settings

    def run(self) -> int:
        """Run until a signal; return the exit status (0 after a clean or bounded stop)."""
        store.check_local_disk(self.db_path)  # before the lock file is made beside it
        heap.keep_heap_small()  # an oversized answer refused leaves no memory behind
        with database_lock(self.db_path) as lock:
            db = self.jobs.db()  # applies migrations before any job starts
            check_writable(db)
            self._start(db, lock)
            watch = ClockWatch()
            while not self.flight.stop.wait(1.0):
                if self.signals.reload.is_set():
                    self._reload(db)
                back = watch.went_back()
                if back > CLOCK_STEP_SECONDS:
                    self.schedule.move_back(back)
            self.schedule.shutdown()  # a SIGTERM during a reload finds it shut down already
            if not self.flight.wait_idle(self.settings.daemon.shutdown_grace_seconds):
                self._abandon()
            self.jobs.close_collectors()
            remember(partial(store.record_daemon_stop, db, pid=os.getpid()))
        logger.info("touchpoint run stopped")
        return 0

    def stop(self) -> None:
        """Ask the daemon to stop (what SIGTERM and SIGINT do)."""
        self.flight.stop.set()

    def _start(self, db: Database, lock: Path) -> None:
        """Schedule the plan, install the signal handlers, start the watchdog and the jobs."""
        jobs = plan_streams(self.settings)
        self.schedule.build(self.jobs, self.settings, jobs, store.last_run_starts(db))
        self.signals.install()
        logger.info(
            "touchpoint run started: pid %d, %d streams, database %s, lock %s",
            os.getpid(),
            len(jobs),
            self.db_path,
            lock,
        )
        warning = store.sqlite_version_warning()
        if warning:
            logger.warning("%s; avoid writing from another process meanwhile", warning)
        remember(partial(store.record_daemon_start, db, pid=os.getpid()))
        configure_watchdog(self.watchdog, self.settings)
        start_watching(self.watchdog, self.flight.stop, self.jobs.db)
        self.schedule.start()

    def _reload(self, db: Database) -> None:
        """Read the config again; if it is valid, let the jobs in flight stop after their page
        and schedule the new plan (streams resume from their cursors); if not, say why and go on
        with the old one. Nothing collected is lost either way."""
        self.signals.reload.clear()
        new = reread(self.settings, self.db_path)
        if new is None:
            return
        self.flight.pausing.set()
        self.schedule.shutdown()
        while not self.flight.wait_idle(1.0):
            if self.flight.stop.is_set():  # SIGTERM meanwhile: the normal shutdown takes over
                return
        self.jobs.use(new)
        configure_watchdog(self.watchdog, new)
        jobs = plan_streams(new)
        self.schedule.build(self.jobs, new, jobs, store.last_run_starts(db))
        self.flight.pausing.clear()
        self.schedule.start()
        logger.info("config reloaded: %d streams", len(jobs))

    def _abandon(self) -> None:
        """Exit with jobs still in flight: their open transactions die with the process, and
        SQLite rolls them back, exactly as after a crash; the next start does the work again."""
        logger.warning(
            "still running after %.0fs: %s; exiting, uncommitted work is rolled back",
            self.settings.daemon.shutdown_grace_seconds,
            ", ".join(self.flight.names()),
        )
        logging.shutdown()
        os._exit(0)


def run_daemon(settings: Settings, db_path: Path) -> int:
    """Start the daemon for ``settings`` on ``db_path``; return its exit status."""
    return Daemon(settings, db_path).run()
