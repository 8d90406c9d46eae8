"""Fixtures of the digest tests: the hand-computed store of :mod:`tests.digest.fixture`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from monitor.digest import BrandDigest, day_period, read_digest
from tests.digest import fixture


@pytest.fixture
def digest(db: Database, tmp_path: Path) -> BrandDigest:
    """The digest of the fixture's brand and day, as of the fixture's build time."""
    fixture.fill(db)
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    period = day_period(fixture.DAY, fixture.TIMEZONE)
    return read_digest(db, settings.brands[0], period, as_of=fixture.AS_OF)
