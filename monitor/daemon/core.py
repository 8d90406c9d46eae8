"""``touchpoint run``: the scheduler that keeps every stream collected, classified and alerted.

APScheduler 3 in one process, in-memory job store. The store's ``runs`` table is the memory: at
start each stream's first run is due one interval after its last one, so anything overdue runs at
once. One job per (brand, platform, stream) at its platform's interval with jitter; one job that
classifies new brand posts and evaluates and delivers alerts; one that sends each brand's daily
digest after its local send time; a daily job that deletes runs older than 90 days and
checkpoints the WAL. A lock file beside the database refuses a second daemon. This module knows
no platform: it drives :mod:`monitor.pipeline`.

Classification runs in a short-lived child process (``touchpoint classify``): scikit-learn and the
model need about 290 MB for a few seconds of work per pass, and the daemon stays small at rest.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlite_utils import Database

from monitor import clock, heap, pipeline, store
from monitor.alerts import outbox
from monitor.alerts.heartbeat import build_heartbeat
from monitor.alerts.watchdog import Watchdog
from monitor.collectors import brand_streams, collector_class
from monitor.collectors.base import Collector
from monitor.config import ConfigError, Settings, load_settings
from monitor.digest import deliver_due
from monitor.logs import clean
from monitor.models import Stream

logger = logging.getLogger(__name__)

PROCESS_JOB = "classify-and-alert"
CHECKPOINT_JOB = "checkpoint"
DIGEST_JOB = "digest"
DIGEST_CHECK_SECONDS = 300  # how often due digests are looked for (each brand's send_time)
WATCHDOG_TICK_SECONDS = 60.0  # how often the watchdog looks (more often for a short watchdog_after)
PROCESS_FIRST_DELAY_SECONDS = 5  # the first classify-and-alert pass, after start
# The wall clock set back by more than this (NTP stepping, a hand-set clock, a VM restored) moves
# every job's next run back as much: APScheduler 3 waits on wall-clock times and would stall.
CLOCK_STEP_SECONDS = 30.0


class DaemonError(Exception):
    """The daemon cannot start (e.g. another one holds the database's lock)."""


def check_for_daemon(settings: Settings) -> Settings:
    """Check now what the daemon would otherwise find at 3 am: every secret the config names is
    set, every alert channel can be built. Raises :class:`ConfigError`."""
    settings.check_secrets()
    outbox.build_channels(settings)
    build_heartbeat(settings)
    return settings


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
        return f"collect:{self.brand}:{self.platform}:{self.stream}"


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


# -- lock file ------------------------------------------------------------------------------------


def lock_path(db_path: Path) -> Path:
    """The lock file beside the database file itself: a symlink, ``..`` or ``//`` in the path
    given leads to the same lock, so a second daemon cannot start on the same file."""
    real = db_path.resolve()
    return real.with_name(real.name + store.LOCK_SUFFIX)


@contextmanager
def database_lock(db_path: Path) -> Iterator[Path]:
    """Hold an exclusive lock beside ``db_path`` and one on the database file's inode (released by
    the kernel if the process dies): the file beside it names the holder's pid, the inode's lock
    also holds when a hard link gives the same file another name (and so another lock file)."""
    path = lock_path(db_path)
    fd = _open_for_lock(path, os.O_RDWR, 0o644)
    try:
        if not _try_lock(fd):
            pid = _read_pid(fd)
            raise DaemonError(
                f"another `touchpoint run` (pid {pid}) is using {db_path} (lock file {path}). "
                f"Fix: stop it first (kill -TERM {pid}), or run this one with another --db"
            ) from None
        with _inode_lock(db_path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield path
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock; the file stays (unlinking it would race)


@contextmanager
def _inode_lock(db_path: Path) -> Iterator[None]:
    # flock is kept apart from SQLite's POSIX byte-range locks on local filesystems (and the
    # daemon refuses network ones). The descriptor is closed only once the daemon is done.
    fd = _open_for_lock(db_path.resolve(), os.O_RDONLY, 0o600)
    try:
        if not _try_lock(fd):
            raise DaemonError(
                f"another `touchpoint run` is using the database file {db_path} under another "
                "name (a hard link to it). Fix: stop that daemon first, or run this one with "
                "another --db"
            ) from None
        yield
    finally:
        os.close(fd)


def _open_for_lock(path: Path, flags: int, mode: int) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise DaemonError(
            f"cannot open {path} to lock it ({exc.strerror}). Fix: run touchpoint as a user "
            "who may write the database's folder, or choose another [store] path"
        ) from None


def _try_lock(fd: int, attempts: int = 5) -> bool:
    # a `touchpoint status` may hold a shared lock for an instant: try a few times
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.1)
    return False


def _read_pid(fd: int) -> str:
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"


def daemon_holder(db_path: Path) -> str | None:
    """The pid of the daemon holding ``db_path``'s lock ("unknown" if unreadable, or when it
    holds the file under another name), or None."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _inode_holder(db_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    finally:
        os.close(fd)  # also drops the shared lock if it was granted
    return _inode_holder(db_path)


def _inode_holder(db_path: Path) -> str | None:
    try:
        fd = os.open(db_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "unknown"
    finally:
        os.close(fd)
    return None


# -- the daemon -----------------------------------------------------------------------------------


class Daemon:
    """Schedules the jobs, runs until SIGTERM or SIGINT, then stops within the grace period;
    SIGHUP reloads the config file."""

    def __init__(self, settings: Settings, db_path: Path) -> None:
        self.settings = settings
        self.db_path = db_path
        self.options = settings.daemon
        self._stop = threading.Event()
        self._reload = threading.Event()  # SIGHUP: read the config file again
        self._pausing = threading.Event()  # jobs in flight stop after their page (a reload)
        self._local = threading.local()
        self._collectors: dict[str, Collector] = {}
        self._platform_locks = {p: threading.Lock() for p in settings.platforms_in_use()}
        self._busy = threading.Condition()
        self._in_flight: set[str] = set()
        self._process_again = threading.Event()
        self._label_check_since: datetime | None = None
        self._wal_held = False  # a reader keeps the WAL from being shrunk (said once)
        self._scheduler: BackgroundScheduler | None = None
        self._watchdog = Watchdog({}, after=timedelta(0), repeat=timedelta(0), started=clock.now())

    # lifecycle --------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until a signal; return the exit status (0 after a clean or bounded stop)."""
        store.check_local_disk(self.db_path)  # before the lock file is made beside it
        heap.keep_heap_small()  # an oversized answer refused leaves no memory behind
        with database_lock(self.db_path) as lock:
            db = self._db()  # applies migrations before any job starts
            self._check_writable(db)
            jobs = plan_streams(self.settings)
            scheduler = self._build_scheduler(jobs, store.last_run_starts(db), clock.now())
            self._install_signal_handlers()
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
            self._remember(partial(store.record_daemon_start, db, pid=os.getpid()))
            self._configure_watchdog()
            threading.Thread(target=self._watch, name="watchdog", daemon=True).start()
            scheduler.start()
            watch = ClockWatch()
            while not self._stop.wait(1.0):
                if self._reload.is_set():
                    scheduler = self._reloaded(scheduler, db)
                back = watch.went_back()
                if back > CLOCK_STEP_SECONDS:
                    self._clock_went_back(scheduler, back)
            if scheduler.running:  # a SIGTERM during a reload finds it shut down already
                scheduler.shutdown(wait=False)
            if not self._wait_idle(self.options.shutdown_grace_seconds):
                self._abandon()
            self._close_collectors()
            self._remember(partial(store.record_daemon_stop, db, pid=os.getpid()))
        logger.info("touchpoint run stopped")
        return 0

    @staticmethod
    def _check_writable(db: Database) -> None:
        """Refuse to start on a store that cannot be written (every job would fail); a store busy
        with another program's write is only worth a warning: the jobs wait their turn."""
        try:
            store.check_writable(db)
        except store.StoreBusy as exc:
            logger.warning("%s", exc)

    @staticmethod
    def _remember(write: Callable[[], None]) -> None:
        """Record the daemon's own state (a start, a clean stop, a classification): a store that
        is busy or full just now costs that record, not the daemon (it says so)."""
        try:
            write()
        except store.StoreError as exc:
            logger.warning("service state not recorded: %s", exc)

    def stop(self) -> None:
        """Ask the daemon to stop (what SIGTERM and SIGINT do)."""
        self._stop.set()

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self._stop.set()

        def hangup(signum: int, frame: FrameType | None) -> None:
            logger.info("SIGHUP received: reloading %s", self.settings.source)
            self._reload.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGHUP, hangup)

    def _reloaded(self, scheduler: BackgroundScheduler, db: Database) -> BackgroundScheduler:
        """Read the config again; if it is valid, let the jobs in flight stop after their page
        and schedule the new plan (streams resume from their cursors); if not, say why and go on
        with the old one. Nothing collected is lost either way."""
        self._reload.clear()
        try:
            new = check_for_daemon(load_settings(self.settings.source))
        except ConfigError as exc:
            logger.error("config not reloaded, still running the previous one: %s", exc)
            return scheduler
        self._pausing.set()
        scheduler.shutdown(wait=False)
        while not self._wait_idle(1.0):
            if self._stop.is_set():  # SIGTERM meanwhile: the normal shutdown takes over
                return scheduler
        self._close_collectors()
        self._collectors = {}
        if new.db_path != self.settings.db_path:
            logger.warning(
                "store.path changed to %s: restart `touchpoint run` to use it; still on %s",
                new.db_path,
                self.db_path,
            )
        self.settings, self.options = new, new.daemon
        self._configure_watchdog()
        self._platform_locks = {p: threading.Lock() for p in new.platforms_in_use()}
        jobs = plan_streams(new)
        scheduler = self._build_scheduler(jobs, store.last_run_starts(db), clock.now())
        self._pausing.clear()
        scheduler.start()
        logger.info("config reloaded: %d streams", len(jobs))
        return scheduler

    @staticmethod
    def _clock_went_back(scheduler: BackgroundScheduler, seconds: float) -> None:
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

    def _wait_idle(self, timeout: float) -> bool:
        with self._busy:
            return self._busy.wait_for(lambda: not self._in_flight, timeout=timeout)

    def _abandon(self) -> None:
        """Exit with jobs still in flight: their open transactions die with the process, and
        SQLite rolls them back, exactly as after a crash; the next start does the work again."""
        with self._busy:
            names = ", ".join(sorted(self._in_flight))
        logger.warning(
            "still running after %.0fs: %s; exiting, uncommitted work is rolled back",
            self.options.shutdown_grace_seconds,
            names,
        )
        logging.shutdown()
        os._exit(0)

    def _close_collectors(self) -> None:
        for collector in self._collectors.values():
            collector.close()

    # scheduling -------------------------------------------------------------------------------

    def _build_scheduler(
        self,
        jobs: Sequence[StreamJob],
        last_starts: dict[tuple[str, str, str], datetime],
        now: datetime,
    ) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(jobs) + 4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        shift = scheduler_shift()
        for job in jobs:
            first = first_run_at(job, last_starts, now) + shift
            scheduler.add_job(
                self._guarded(job.id, partial(self._collect, job)),
                IntervalTrigger(
                    seconds=job.interval_seconds,
                    start_date=first,
                    jitter=jitter_seconds(job.interval_seconds, self.options.max_jitter_seconds),
                    timezone=UTC,
                ),
                id=job.id,
                name=job.id,
                next_run_time=first,
                misfire_grace_time=max(60, job.interval_seconds),
            )
            logger.debug("%s: every %ds, first run %s", job.id, job.interval_seconds, first)
        every = self.options.alerts_interval_seconds
        at = now + shift  # now, on the scheduler's clock
        scheduler.add_job(
            self._guarded(PROCESS_JOB, self._process),
            IntervalTrigger(seconds=every, timezone=UTC),
            id=PROCESS_JOB,
            name=PROCESS_JOB,
            # soon after start, not one interval on: what a killed daemon left in the outbox goes
            # out even if it is restarted faster than that (a crash loop); a collection round
            # started at once makes it wait for its end; new items wake it up sooner later
            next_run_time=at + timedelta(seconds=min(every, PROCESS_FIRST_DELAY_SECONDS)),
            misfire_grace_time=max(60, every),
        )
        if self.settings.digest.enabled:
            scheduler.add_job(
                self._guarded(DIGEST_JOB, self._send_digests),
                IntervalTrigger(seconds=DIGEST_CHECK_SECONDS, timezone=UTC),
                id=DIGEST_JOB,
                name=DIGEST_JOB,
                next_run_time=at,
                misfire_grace_time=DIGEST_CHECK_SECONDS,
            )
        scheduler.add_job(
            self._guarded(CHECKPOINT_JOB, self._checkpoint),
            IntervalTrigger(hours=24, timezone=UTC),
            id=CHECKPOINT_JOB,
            name=CHECKPOINT_JOB,
            next_run_time=at + timedelta(hours=1),
            misfire_grace_time=3600,
        )
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler = scheduler
        return scheduler

    def _on_skipped(self, event: JobExecutionEvent) -> None:
        # APScheduler's own warnings are held back (see setup_logging): say it once, plainly
        if event.code == EVENT_JOB_MISSED:
            logger.warning("%s: a run was missed (the process was busy or asleep)", event.job_id)
        else:
            logger.debug("%s: run skipped, the previous one is still going", event.job_id)

    def _guarded(self, name: str, work: Callable[[], None]) -> Callable[[], None]:
        """Wrap a job: count it in flight, never let an exception reach the scheduler."""

        def job() -> None:
            if self._stop.is_set() or self._pausing.is_set():
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

    # jobs ---------------------------------------------------------------------------------------

    def _db(self) -> Database:
        """This thread's connection (a SQLite connection stays in the thread that opened it)."""
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = store.open_db(self.db_path)
            self._local.db = db
        return db

    def _stop_check(self, deadline: float) -> pipeline.StopCheck:
        def check() -> pipeline.Stop | None:
            if self._stop.is_set():
                return pipeline.Stop("touchpoint run is stopping", interrupted=True)
            if self._pausing.is_set():
                return pipeline.Stop("touchpoint run is reloading its config", interrupted=True)
            if time.monotonic() > deadline:
                limit = self.options.job_deadline_seconds
                return pipeline.Stop(f"job deadline of {limit:.0f}s reached")
            return None

        return check

    def _collect(self, job: StreamJob) -> None:
        deadline = time.monotonic() + self.options.job_deadline_seconds
        stop = self._stop_check(deadline)
        lock = self._platform_locks[job.platform]  # one platform's client is used by one thread
        if not _acquire(lock, stop):
            logger.warning("%s: not run, %s", job.id, stop() or "platform busy")
            return
        try:
            results = pipeline.collect(
                self._db(),
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
        with self._busy:
            busy = PROCESS_JOB in self._in_flight or any(
                name.startswith("collect:") and name != finished for name in self._in_flight
            )
        wanted = self._process_again.is_set() and not self._stop.is_set()
        wanted = wanted and not self._pausing.is_set()  # a reload: the new scheduler will
        if wanted and not busy and self._scheduler is not None:
            self._scheduler.modify_job(PROCESS_JOB, next_run_time=clock.now() + scheduler_shift())

    def _process(self) -> None:
        for _ in range(3):  # new items that arrive meanwhile get one more pass, boundedly
            self._process_again.clear()
            try:
                self._process_once()
            except Exception as exc:  # the watchdog gives the reason if it happens every time
                self._watchdog.failed(str(exc))
                raise
            self._watchdog.passed(clock.now())
            if not self._process_again.is_set() or self._stop.is_set():
                return

    def _process_once(self) -> None:
        db = self._db()
        started = clock.now()
        wal = store.wal_bytes(db)
        if wal > self.options.wal_alert_megabytes * 2**20:
            self._shrink_wal(db, wal)
        if store.has_posts_to_label(db, collected_since=self._label_check_since):
            deadline = time.monotonic() + self.options.job_deadline_seconds
            if self._classify_in_child(self._stop_check(deadline)):
                self._label_check_since = started - timedelta(minutes=1)
        else:
            self._label_check_since = started - timedelta(minutes=1)
        if self._stop.is_set():
            return
        report = pipeline.run_alerts(db, self.settings)
        if report.eventful:
            logger.info("alerts: %s", report.summary())

    def _configure_watchdog(self) -> None:
        """Tell the watchdog which channels to use and how long a pass may take: at least one
        alerts interval plus a job deadline (the classify child's), however short the setting."""
        names = self.options.watchdog_channels
        channels = outbox.build_channels(self.settings)
        chosen = {n: c for n, c in channels.items() if not names or n in names}
        bound = self.options.alerts_interval_seconds + self.options.job_deadline_seconds
        after = max(self.options.watchdog_after_seconds, bound)
        hours = min((b.alerts.repeat_hours for b in self.settings.brands), default=4.0)
        heartbeat = build_heartbeat(self.settings)  # checked before start and reload
        self._watchdog.configure(
            chosen,
            after=timedelta(seconds=after),
            repeat=timedelta(hours=hours),
            heartbeat=heartbeat,
        )
        logger.info(
            "watchdog: alerts not going out for %.0fs are told to %s", after, ", ".join(chosen)
        )
        if heartbeat is not None:
            logger.info(
                "heartbeat: %s every %.0fs while alerts go out",
                heartbeat.where,
                heartbeat.every.total_seconds(),
            )

    def _watch(self) -> None:
        """The watchdog thread: judge the alert passes (and beat the heartbeat) until the daemon
        stops; never raise."""
        while not self._stop.wait(self._watch_tick()):
            try:
                self._watchdog.check(self._db(), clock.now())
            except Exception:
                logger.exception("watchdog: check failed")

    def _watch_tick(self) -> float:
        """Seconds between the watchdog's looks: often enough for its limit and the heartbeat."""
        spans = [WATCHDOG_TICK_SECONDS, self._watchdog.after.total_seconds() / 5]
        if self._watchdog.heartbeat is not None:
            spans.append(self._watchdog.heartbeat.every.total_seconds() / 5)
        return min(spans)

    def _send_digests(self) -> None:
        """Send yesterday's digest of each brand once its local send_time has passed (once per
        recipient: the store remembers what was sent)."""
        sent = deliver_due(self._db(), self.settings, clock.now())
        if sent:
            logger.info("digest: %d emails sent", sent)

    def _shrink_wal(self, db: Database, before: int) -> None:
        """The WAL (``before`` bytes) grew past its alert limit: shrink it now if no reader holds
        it (the alert then resolves); else the service alert says what holds it, and the log says
        so once, not at every pass while the reader stays."""
        if store.shrink_wal(db):
            self._wal_held = False
            logger.info("checkpoint: the WAL of %d MB was copied back and truncated", before >> 20)
            return
        log = logger.debug if self._wal_held else logger.warning
        self._wal_held = True
        log(
            "checkpoint: the WAL is %d MB and a reader keeps it from being copied back",
            before >> 20,
        )

    def _checkpoint(self) -> None:
        """Keep the store small: delete runs older than ``[store] runs_keep_days`` (a row per
        stream and interval, millions a year with many brands), then checkpoint the WAL, which a
        long reader can hold automatic checkpoints back from."""
        db = self._db()
        pipeline.prune_runs(db, self.settings)
        busy, pages, done = store.checkpoint(db)
        logger.info(
            "checkpoint: %d of %d WAL pages copied%s", done, pages, ", busy" if busy else ""
        )

    def _classify_in_child(self, stop: pipeline.StopCheck) -> bool:
        """Run ``touchpoint classify`` in a child process; True if it labelled everything."""
        command = [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(self.settings.source),
            "--db",
            str(self.db_path),
            "classify",
        ]
        started = time.monotonic()
        # the child exits when this pipe's write end closes: when the daemon dies (SIGKILL too)
        watched, held = os.pipe()
        try:
            try:
                child = subprocess.Popen(
                    [*command, "--parent-fd", str(watched)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    pass_fds=(watched,),
                )
            finally:
                os.close(watched)  # the child has its own copy
            output = _wait_child(child, stop)
        finally:
            os.close(held)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        if child.returncode == 0:  # the child recorded its success (pipeline.classify_pending)
            logger.info("classify: %s (%.1fs)", last, time.monotonic() - started)
            return True
        logger.error("classify failed (exit %s): %s", child.returncode, last or "no output")
        if not (self._stop.is_set() or self._pausing.is_set()):  # not the daemon's own stop
            error = clean(last.removeprefix("Error: ") or f"exit status {child.returncode}")
            record = partial(store.record_classification, self._db(), error=error[:500])
            self._remember(record)
        return False


def scheduler_shift() -> timedelta:
    """What to add to a time on touchpoint's clock to have it on APScheduler's, which runs on
    the machine's clock (zero unless touchpoint's clock is shifted, as in tests)."""
    return datetime.now(UTC) - clock.now()  # wall clock: APScheduler 3 times jobs by the machine's


class ClockWatch:
    """Notices the wall clock being set back: its offset from the monotonic clock drops."""

    def __init__(self) -> None:
        self._offset = clock.timestamp() - time.monotonic()

    def went_back(self) -> float:
        """Seconds the wall clock was set back since the last call (0 or less if it was not)."""
        offset = clock.timestamp() - time.monotonic()
        back, self._offset = self._offset - offset, offset
        return back


def _acquire(lock: threading.Lock, stop: pipeline.StopCheck) -> bool:
    while not lock.acquire(timeout=0.5):
        if stop() is not None:
            return False
    return True


def _wait_child(child: subprocess.Popen[str], stop: pipeline.StopCheck) -> str:
    """Wait for a child, terminating it if ``stop`` gives a reason; return its output."""
    chunks: list[str] = []
    while True:
        try:
            out, _ = child.communicate(timeout=0.5)
            chunks.append(out or "")
            return "".join(chunks)
        except subprocess.TimeoutExpired:
            reason = stop()
            if reason is None:
                continue
            logger.warning("classify stopped: %s", reason)
            child.terminate()
            try:
                out, _ = child.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                out, _ = child.communicate()
            chunks.append(out or "")
            return "".join(chunks)


def run_daemon(settings: Settings, db_path: Path) -> int:
    """Start the daemon for ``settings`` on ``db_path``; return its exit status."""
    return Daemon(settings, db_path).run()
