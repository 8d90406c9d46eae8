"""One daemon per database: a lock file beside it naming the holder, and a lock on its inode.

``touchpoint run`` takes both before it opens the store; ``touchpoint status`` and ``collect``
ask :func:`daemon_holder` who holds them. Both are ``flock`` locks, released by the kernel when
the process dies, so a killed daemon never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor import store


class DaemonError(Exception):
    """The daemon cannot start (e.g. another one holds the database's lock)."""


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
