"""The daemon's heap given back after a large buffer is freed (glibc's allocator, tuned).

glibc's malloc serves an allocation of 128 KiB or more with a mapping of its own, unmapped when it
is freed; but once such a buffer is freed it raises that threshold to the buffer's size (up to
32 MiB) and the size it trims its heaps at to twice that. From then on buffers of up to that size
come from the heaps of the threads' arenas, and each arena keeps as much again free: after four
answers refused at 16 MiB a daemon resting at 84 MB stayed at 180 MB, 17 MB in each of eight
arenas (``malloc_trim`` does not shrink the arenas of threads). Setting the thresholds once keeps
them where they are.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt's parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
LARGE_BYTES = 128 * 1024  # glibc's defaults for both thresholds, kept from now on


def keep_heap_small() -> bool:
    """Fix glibc's mmap and trim thresholds at :data:`LARGE_BYTES`, so that every large buffer is
    returned to the system when it is freed; False (nothing done) with another C library."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(mallopt(p, LARGE_BYTES) == 1 for p in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
    if not done:  # pragma: no cover - glibc accepts both
        logger.warning("glibc refused its malloc thresholds; memory may stay high after a fault")
    return done


def _glibc() -> ctypes.CDLL | None:
    """The C library this process runs on when it is glibc, else None."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
        return ctypes.CDLL(None) if (version or "").startswith("glibc") else None
    except (AttributeError, OSError, ValueError):  # no confstr, or no such name here
        return None
