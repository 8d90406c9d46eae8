"""Fixtures of the digest tests: the hand-computed store of :mod:`tests.digest.fixture`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from monitor.digest import BrandDigest, day_period, read_digest
from tests.conftest import TestClock
from tests.digest import fixture


@pytest.fixture(autouse=True)
def after_the_day(fake_clock: TestClock) -> None:
    """The digest tests run when the fixture's day has ended (at its build time, AS_OF): a day
    still going on is not sent."""
    fake_clock.set(fixture.AS_OF)


@pytest.fixture
def digest(db: Database, tmp_path: Path) -> BrandDigest:
    """The digest of the fixture's brand and day, as of the fixture's build time."""
    fixture.fill(db)
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    period = day_period(fixture.DAY, fixture.TIMEZONE)
    return read_digest(db, settings.brands[0], period, as_of=fixture.AS_OF)
