"""Registering a platform the way an installed distribution does: a ``*.dist-info`` folder
with METADATA and ``entry_points.txt`` on sys.path, read by importlib.metadata."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import GROUP, platforms

FAKEPLAT = Path(__file__).resolve().parent / "fakeplat"  # the folder holding package fakeplat


def install(site: Path, monkeypatch: pytest.MonkeyPatch, name: str, entry_points: str) -> None:
    """Write distribution ``name``'s metadata, declaring ``entry_points`` (lines of the
    ``touchpoint.platforms`` group), into ``site`` and put ``site`` on sys.path."""
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(site))
    platforms.cache_clear()


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """The registry read anew in the test and again after it (its distributions gone)."""
    platforms.cache_clear()
    yield
    platforms.cache_clear()
    for module in [m for m in sys.modules if m == "fakeplat" or m.startswith("fakeplat.")]:
        del sys.modules[module]
