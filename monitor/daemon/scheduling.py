"""The APScheduler side of the daemon: what to run when, and which runs are in flight.

APScheduler 3 in one process, in-memory job store. The store's ``runs`` table is the memory: at
start each stream's first run is due one interval after its last one, so anything overdue runs
at once. One job per (brand, platform, stream) at its platform's interval with jitter; one job
that classifies new brand posts and evaluates and delivers alerts; one that sends each brand's
daily digest after its local send time; a daily housekeeping job. What each job does lives in
:mod:`monitor.daemon.jobs`; this module only times them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import clock, store
from monitor.config import DaemonSettings, Settings
from monitor.daemon.clockwatch import move_jobs_back
from monitor.models import Stream
from monitor.platforms.streams import brand_streams, collector_class

logger = logging.getLogger(__name__)

PROCESS_JOB = "classify-and-alert"
CHECKPOINT_JOB = "checkpoint"
DIGEST_JOB = "digest"
COLLECT_PREFIX = "collect:"
DIGEST_CHECK_SECONDS = 300  # how often due digests are looked for (each brand's send_time)
PROCESS_FIRST_DELAY_SECONDS = 5  # the first classify-and-alert pass, after start


# -- plan (pure) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamJob:
    """One scheduled stream: a brand's posts, mentions or keyword search on one platform."""

    brand: str
    platform: str
    stream: Stream
    interval_seconds: int

    @property
    def id(self) -> str:
        return f"{COLLECT_PREFIX}{self.brand}:{self.platform}:{self.stream}"


def plan_streams(settings: Settings) -> list[StreamJob]:
    """Every stream the config asks for (keyword search only for brands with keywords)."""
    jobs = []
    for brand in settings.brands:
        for platform in settings.platforms_in_use():
            if platform not in brand.accounts:
                continue
            interval = settings.platforms[platform].interval_seconds
            for stream, _ in brand_streams(collector_class(platform), settings, brand, platform):
                jobs.append(StreamJob(brand.name, platform, stream, interval))
    return jobs


def first_run_at(
    job: StreamJob, last_starts: dict[tuple[str, str, str], datetime], now: datetime
) -> datetime:
    """One interval after the stream's last run, or now if that is past (or it never ran)."""
    last = last_starts.get((job.brand, job.platform, job.stream))
    if last is None:
        return now
    return max(now, last + timedelta(seconds=job.interval_seconds))


def jitter_seconds(interval_seconds: float, max_jitter_seconds: float) -> float:
    """Random delay bound of a stream's runs: at most a tenth of its interval."""
    return min(max_jitter_seconds, interval_seconds / 10)


def scheduler_shift() -> timedelta:
    """What to add to a time on touchpoint's clock to have it on APScheduler's, which runs on
    the machine's clock (zero unless touchpoint's clock is shifted, as in tests)."""
    return datetime.now(UTC) - clock.now()  # wall clock: APScheduler 3 times jobs by the machine's


# -- jobs in flight -------------------------------------------------------------------------------


class Flight:
    """The jobs running now, and whether they should stop: a stop (SIGTERM) ends the daemon, a
    pause (a reload) lets the jobs in flight stop after their page. Shared by every job thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.pausing = threading.Event()  # jobs in flight stop after their page (a reload)
        self._busy = threading.Condition()
        self._in_flight: set[str] = set()

    def halted(self) -> bool:
        """Stopping or pausing: no new work should start."""
        return self.stop.is_set() or self.pausing.is_set()

    def guarded(self, name: str, work: Callable[[], None]) -> Callable[[], None]:
        """Wrap a job: count it in flight, never let an exception reach the scheduler."""

        def job() -> None:
            if self.halted():
                return
            with self._busy:
                self._in_flight.add(name)
            try:
                work()
            except store.StoreError as exc:  # full, busy, read-only: the message says it all
                logger.error("%s: job failed: %s", name, exc)
            except Exception:
                logger.exception("%s: job failed", name)
            finally:
                with self._busy:
                    self._in_flight.discard(name)
                    self._busy.notify_all()

        return job

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no job to be in flight; True once none is."""
        with self._busy:
            return self._busy.wait_for(lambda: not self._in_flight, timeout=timeout)

    def names(self) -> list[str]:
        """The jobs in flight now, sorted."""
        with self._busy:
            return sorted(self._in_flight)

    def busy_besides(self, finished: str) -> bool:
        """A classify-and-alert pass or a collection other than ``finished`` is in flight."""
        with self._busy:
            return PROCESS_JOB in self._in_flight or any(
                name.startswith(COLLECT_PREFIX) and name != finished for name in self._in_flight
            )


# -- the scheduler --------------------------------------------------------------------------------


class JobBodies(Protocol):
    """What the scheduled jobs do (:class:`monitor.daemon.jobs.Jobs`)."""

    def collect(self, job: StreamJob) -> None: ...

    def process(self) -> None: ...

    def send_digests(self) -> None: ...

    def checkpoint(self) -> None: ...


class Schedule:
    """The current APScheduler instance: built at start and again after each reload."""

    def __init__(self, flight: Flight) -> None:
        self._flight = flight
        self._scheduler: BackgroundScheduler | None = None

    def build(
        self,
        bodies: JobBodies,
        settings: Settings,
        jobs: Sequence[StreamJob],
        last_starts: dict[tuple[str, str, str], datetime],
    ) -> None:
        """Make a new (not yet started) scheduler holding every job of the plan ``jobs``."""
        options = settings.daemon
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(jobs) + 4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        now = clock.now()
        shift = scheduler_shift()
        for job in jobs:
            self._add_stream(
                scheduler, bodies, job, first_run_at(job, last_starts, now) + shift, options
            )
        at = now + shift  # now, on the scheduler's clock
        self._add_periodic(scheduler, bodies, options, settings.digest.enabled, at)
        scheduler.add_listener(_on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler = scheduler

    def _add_stream(
        self,
        scheduler: BackgroundScheduler,
        bodies: JobBodies,
        job: StreamJob,
        first: datetime,
        options: DaemonSettings,
    ) -> None:
        scheduler.add_job(
            self._flight.guarded(job.id, partial(bodies.collect, job)),
            IntervalTrigger(
                seconds=job.interval_seconds,
                start_date=first,
                jitter=jitter_seconds(job.interval_seconds, options.max_jitter_seconds),
                timezone=UTC,
            ),
            id=job.id,
            name=job.id,
            next_run_time=first,
            misfire_grace_time=max(60, job.interval_seconds),
        )
        logger.debug("%s: every %ds, first run %s", job.id, job.interval_seconds, first)

    def _add_periodic(
        self,
        scheduler: BackgroundScheduler,
        bodies: JobBodies,
        options: DaemonSettings,
        digest: bool,
        at: datetime,
    ) -> None:
        every = options.alerts_interval_seconds
        scheduler.add_job(
            self._flight.guarded(PROCESS_JOB, bodies.process),
            IntervalTrigger(seconds=every, timezone=UTC),
            id=PROCESS_JOB,
            name=PROCESS_JOB,
            # soon after start, not one interval on: what a killed daemon left in the outbox goes
            # out even if it is restarted faster than that (a crash loop); a collection round
            # started at once makes it wait for its end; new items wake it up sooner later
            next_run_time=at + timedelta(seconds=min(every, PROCESS_FIRST_DELAY_SECONDS)),
            misfire_grace_time=max(60, every),
        )
        if digest:
            scheduler.add_job(
                self._flight.guarded(DIGEST_JOB, bodies.send_digests),
                IntervalTrigger(seconds=DIGEST_CHECK_SECONDS, timezone=UTC),
                id=DIGEST_JOB,
                name=DIGEST_JOB,
                next_run_time=at,
                misfire_grace_time=DIGEST_CHECK_SECONDS,
            )
        scheduler.add_job(
            self._flight.guarded(CHECKPOINT_JOB, bodies.checkpoint),
            IntervalTrigger(hours=24, timezone=UTC),
            id=CHECKPOINT_JOB,
            name=CHECKPOINT_JOB,
            next_run_time=at + timedelta(hours=1),
            misfire_grace_time=3600,
        )

    def start(self) -> None:
        if self._scheduler is not None:
            self._scheduler.start()

    def shutdown(self) -> None:
        """Stop timing jobs (those in flight go on); a scheduler shut down already is left be."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def wake(self, job_id: str) -> None:
        """Run ``job_id`` now instead of at its next interval."""
        if self._scheduler is not None:
            self._scheduler.modify_job(job_id, next_run_time=clock.now() + scheduler_shift())

    def move_back(self, seconds: float) -> None:
        """The wall clock was set back ``seconds``: move every next run back as much."""
        if self._scheduler is not None:
            move_jobs_back(self._scheduler, seconds)


def _on_skipped(event: JobExecutionEvent) -> None:
    # APScheduler's own warnings are held back (see setup_logging): say it once, plainly
    if event.code == EVENT_JOB_MISSED:
        logger.warning("%s: a run was missed (the process was busy or asleep)", event.job_id)
    else:
        logger.debug("%s: run skipped, the previous one is still going", event.job_id)
