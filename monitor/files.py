"""Files touchpoint writes for a user: written whole or not at all, and private by default.

Each is written to a temporary name beside it and renamed over it only when the writing ended
without an error, so a full disk, a kill or a bad row half-way leaves the old file whole. Digests
and exports carry customers' words, so they are made 0600 like the database.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

PRIVATE = 0o600  # the owner only: the database's own mode
SHARED = 0o644  # a config file, which holds no secret (those come from the environment)


@contextlib.contextmanager
def replacing(path: Path, *, mode: int = PRIVATE, newline: str | None = None) -> Iterator[TextIO]:
    """A text handle (UTF-8) on a temporary file beside ``path``, renamed to ``path`` with
    ``mode`` when the block ends without an error, removed when it does not. A symlink keeps
    pointing where it did (its target is replaced); a device or a pipe (``/dev/stdout``) is
    written as it is, there is nothing to rename over it."""
    real = path.resolve()
    if real.exists() and not stat.S_ISREG(real.stat().st_mode):
        with real.open("w", encoding="utf-8", newline=newline) as handle:
            yield handle
        return
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_text(path: Path, text: str, *, mode: int = PRIVATE) -> None:
    """Write ``text`` to ``path`` whole, through :func:`replacing`."""
    with replacing(path, mode=mode) as handle:
        handle.write(text)
