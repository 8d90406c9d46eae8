"""Keeping the store small and the daemon's own records written, without ever stopping it.

The daily job deletes old runs and checkpoints the WAL; each classify-and-alert pass shrinks a
WAL grown past its alert limit. A store that is busy or full costs a record, never the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlite_utils import Database

from monitor import pipeline, store
from monitor.config import Settings

logger = logging.getLogger(__name__)


def check_writable(db: Database) -> None:
    """Refuse to start on a store that cannot be written (every job would fail); a store busy
    with another program's write is only worth a warning: the jobs wait their turn."""
    try:
        store.check_writable(db)
    except store.StoreBusy as exc:
        logger.warning("%s", exc)


def remember(write: Callable[[], None]) -> None:
    """Record the daemon's own state (a start, a clean stop, a classification): a store that
    is busy or full just now costs that record, not the daemon (it says so)."""
    try:
        write()
    except store.StoreError as exc:
        logger.warning("service state not recorded: %s", exc)


class Housekeeping:
    """The WAL and the runs table; remembers whether a reader holds the WAL (said once)."""

    def __init__(self) -> None:
        self._wal_held = False

    def check_wal(self, db: Database, alert_megabytes: float) -> None:
        """Shrink the WAL if it grew past ``alert_megabytes`` (the service alert's limit)."""
        wal = store.wal_bytes(db)
        if wal > alert_megabytes * 2**20:
            self._shrink_wal(db, wal)

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

    @staticmethod
    def checkpoint(db: Database, settings: Settings) -> None:
        """Keep the store small: delete runs older than ``[store] runs_keep_days`` (a row per
        stream and interval, millions a year with many brands), then checkpoint the WAL, which a
        long reader can hold automatic checkpoints back from."""
        pipeline.prune_runs(db, settings)
        busy, pages, done = store.checkpoint(db)
        logger.info(
            "checkpoint: %d of %d WAL pages copied%s", done, pages, ", busy" if busy else ""
        )
