"""A copy of the store to keep: ``backup()`` writes a consistent snapshot of a live database.

SQLite's ``VACUUM INTO`` reads the store in one read transaction (in WAL mode the daemon's writes
go on meanwhile) and writes a compact copy, in rollback-journal mode, that opens on its own. The
copy is written under a hidden partial name beside the target (``.NAME.touchpoint-partial``),
checked with ``PRAGMA integrity_check``, flushed to disk (SQLite does not fsync it), and only
then renamed to its name: a backup killed half-way never leaves a file under the final name, and
never touches an earlier backup. The partial files such a kill leaves are removed by the next
backup into that folder; one still being written (its process holds a lock on it) is left alone.

A copy is made readable by its owner only (0600), as the store is: it keeps the Bluesky session.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from monitor.store.db import StoreError, _file_of

PARTIAL_SUFFIX = ".touchpoint-partial"
_STAMP = "%Y%m%dT%H%M%SZ"
_STAMPED = re.compile(r"-\d{8}T\d{6}Z\.db")  # after the store's stem: a name backup_name() gives


@dataclass(frozen=True)
class Backup:
    """What a backup wrote and removed."""

    path: Path
    size: int  # bytes
    posts: int  # posts in the copy
    partials_removed: tuple[Path, ...] = ()  # left by backups that were killed half-way


def backup_name(db_path: Path, at: datetime) -> str:
    """The file name of a backup of ``db_path`` made at ``at`` (UTC): ``touchpoint-20261124T
    031500Z.db``. Such names sort by time, which is how ``keep`` finds the oldest."""
    return f"{db_path.stem}-{at.strftime(_STAMP)}.db"


def stamped_backups(folder: Path, db_path: Path) -> list[Path]:
    """The backups of ``db_path`` in ``folder`` named by :func:`backup_name`, oldest first."""
    stem = db_path.stem
    try:
        names = sorted(
            p.name
            for p in folder.iterdir()
            if p.name.startswith(stem) and _STAMPED.fullmatch(p.name[len(stem) :])
        )
    except FileNotFoundError:
        return []
    return [folder / name for name in names]


def backup(db: Database, dest: Path, *, overwrite: bool = False) -> Backup:
    """Write a checked copy of the store ``db`` to ``dest`` (see the module's docstring).

    Raises :class:`StoreError` (with the fix) when ``dest`` exists and ``overwrite`` is false,
    or when the copy cannot be written (a folder not writable, a full disk) or fails its check;
    no partial file is left then; also when ``dest`` is the store itself or one of its files."""
    _refuse_the_store_itself(db, dest)
    if dest.exists() and not overwrite:
        raise StoreError(
            f"{dest}: a file is already there; nothing was written. Fix: name another file, "
            "or add --overwrite to replace it"
        )
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"{folder}: cannot create the backup folder ({exc.strerror}). Fix: choose a "
            "writable place"
        ) from None
    removed = remove_partials(folder)
    partial = folder / f".{dest.name}{PARTIAL_SUFFIX}"
    with _claimed(partial) as fd:
        try:
            db.conn.execute("VACUUM INTO ?", (str(partial),))
            posts = check_copy(partial)
            os.fsync(fd)  # the same file SQLite wrote: SQLite does not sync it
            os.replace(partial, dest)
        except BaseException as exc:
            _unlink_partial(partial)
            if isinstance(exc, sqlite3.Error | OSError):
                raise _error(dest, exc) from None
            raise
    with contextlib.suppress(OSError):  # some filesystems cannot sync a folder
        _flush(folder)  # the rename itself
    return Backup(dest, dest.stat().st_size, posts, partials_removed=removed)


def _refuse_the_store_itself(db: Database, dest: Path) -> None:
    """A copy renamed over the live store (or its -wal, -shm or -journal) would destroy it
    under every process that has it open."""
    file = _file_of(db.conn)
    if file in (":memory:", "the store"):
        return  # an in-memory store
    fix = "name another file, or a folder such as backups/"
    refuse_store_file(Path(file), dest, "a backup over it", fix)


LOCK_SUFFIX = ".lock"  # the daemon's lock file beside the database
STORE_SUFFIXES = ("-wal", "-shm", "-journal", LOCK_SUFFIX)  # SQLite's files and the lock


def refuse_store_file(db_path: Path, dest: Path, what: str, fix: str = "name another file") -> None:
    """Raise :class:`StoreError` when ``dest`` is the database at ``db_path`` or one of its
    files (``-wal``, ``-shm``, ``-journal``, the daemon's ``.lock``), by any path, symlink or
    hard link: ``what`` (written there) would destroy it."""
    live = db_path.resolve()
    own = [live, *(live.with_name(live.name + s) for s in STORE_SUFFIXES)]
    same = dest.exists() and any(p.exists() and os.path.samefile(dest, p) for p in own)
    if dest.resolve() in own or same:
        raise StoreError(
            f"{dest}: that is the database itself (or one of its files); {what} would destroy "
            f"it. Fix: {fix}"
        )


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def refuse_database_file(dest: Path, what: str, fix: str = "name another file") -> None:
    """Raise :class:`StoreError` when ``dest`` is a SQLite database already (any touchpoint
    store, whatever config names it): ``what`` (written there) would destroy it."""
    try:
        with dest.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError:
        return  # not there (or not readable): the write itself says what is wrong
    if head == SQLITE_HEADER:
        raise StoreError(f"{dest} is a SQLite database; {what} would destroy it. Fix: {fix}")


def prune(folder: Path, db_path: Path, keep: int) -> tuple[Path, ...]:
    """Remove the oldest stamped backups of ``db_path`` in ``folder`` beyond the ``keep`` newest;
    the paths removed. Files named otherwise are never touched."""
    backups = stamped_backups(folder, db_path)
    old = backups[: max(0, len(backups) - keep)]
    for path in old:
        path.unlink(missing_ok=True)
    return tuple(old)


def remove_partials(folder: Path) -> tuple[Path, ...]:
    """Remove the partial files killed backups left in ``folder`` (and the journals SQLite kept
    beside them); the paths removed. A partial whose backup is still running (its lock is
    held) stays."""
    removed = []
    for path in sorted(folder.glob(f".*{PARTIAL_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another backup is writing it
            os.close(fd)
            continue
        try:
            removed += _unlink_partial(path)
        finally:
            os.close(fd)  # the lock goes with it
    for path in sorted(folder.glob(f".*{PARTIAL_SUFFIX}-*")):  # a journal whose partial is gone
        main = path.with_name(path.name[: path.name.rindex(PARTIAL_SUFFIX) + len(PARTIAL_SUFFIX)])
        if not main.exists():
            removed += _unlink_partial(path)
    return tuple(removed)


def _unlink_partial(partial: Path) -> list[Path]:
    """Remove a partial copy and the journal files SQLite may have left beside it."""
    removed = []
    for path in (partial, *(Path(f"{partial}{end}") for end in _SIDE_FILES)):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


_SIDE_FILES = ("-journal", "-wal", "-shm")


@contextlib.contextmanager
def _claimed(partial: Path) -> Iterator[int]:
    """Create ``partial`` empty, owner-only, and hold a lock on it while the backup writes it (so
    that a backup started meanwhile does not take it for a killed one's); yields its descriptor."""
    try:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(
            f"{partial.parent}: cannot write the backup there ({exc.strerror}). Fix: choose a "
            "writable place"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"{partial}: another backup to the same file is running. Fix: wait for it to end"
        ) from None
    try:
        os.ftruncate(fd, 0)  # VACUUM INTO takes an empty file only
        yield fd
    finally:
        os.close(fd)


def check_copy(path: Path) -> int:
    """Open a copy on its own and check it whole (raise sqlite3.DatabaseError if it is not
    sound); the number of posts it holds."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("integrity_check: " + "; ".join(problems[:3]))
        return int(conn.execute("SELECT count(*) FROM posts").fetchone()[0])
    finally:
        conn.close()


def _flush(path: Path) -> None:
    """fsync a folder, so that a rename in it survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error(dest: Path, exc: sqlite3.Error | OSError) -> StoreError:
    """What to tell of a backup that failed with ``exc`` (its partial file is gone already)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreError(
        f"{dest}: the backup failed ({reason}); nothing was kept. Fix: check that the folder "
        "is writable and its disk has room, then run it again"
    )
