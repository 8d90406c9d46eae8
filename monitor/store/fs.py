"""Where the store may live: on a local disk, never on a network filesystem.

SQLite's WAL mode, which touchpoint needs (the daemon writes while the CLI reads), keeps its index
in shared memory beside the database and relies on the locks of one machine: "WAL does not work
over a network filesystem" (sqlite.org/wal.html), and POSIX locks over NFS or SMB are unreliable
enough to corrupt a database (sqlite.org/howtocorrupt.html, section 2.1). ``open_db`` therefore
refuses a path whose filesystem, as the kernel lists it in ``/proc/mounts``, is a network one.
Where there is no ``/proc/mounts`` (macOS), nothing is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTS = Path("/proc/mounts")

# Filesystem types whose files live on another machine (or are shared between machines).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "coda",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.gcsfuse",
        "fuse.davfs2",
        "fuse.juicefs",
    }
)

_ESCAPE = re.compile(r"\\([0-7]{3})")  # /proc/mounts writes space, tab, newline, \ as \040 etc.


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/mounts``."""

    source: str
    point: str
    fstype: str


def parse_mounts(text: str) -> list[Mount]:
    """The mounts listed in ``text`` (the format of ``/proc/mounts``), in order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            source, point, fstype = (_unescape(f) for f in fields[:3])
            mounts.append(Mount(source, point, fstype))
    return mounts


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount ``path`` (absolute, symlinks resolved) is on: the longest mount point above it,
    the last one listed when two are stacked on the same point."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def network_mount(path: Path) -> Mount | None:
    """The network filesystem ``path`` (a file, or a folder to be) is on; None if it is local or
    the mounts cannot be read."""
    try:
        mounts = parse_mounts(MOUNTS.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    mount = mount_of(os.path.realpath(path), mounts)
    return mount if mount is not None and mount.fstype in NETWORK_FILESYSTEMS else None
