"""touchpoint's one clock: what tests set, processes inherit, and the machine's clock moves."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from monitor import clock
from tests.conftest import TEST_NOW, TestClock


def test_tests_run_on_touchpoint_clock_not_the_real_date(fake_clock: TestClock) -> None:
    assert abs(clock.now() - TEST_NOW) < timedelta(seconds=30)
    fake_clock.set(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC))
    assert clock.now().date().isoformat() == "2028-02-29"
    fake_clock.advance(timedelta(seconds=2))
    assert clock.now().date().isoformat() == "2028-03-01"
    assert clock.timestamp() == pytest.approx(clock.now().timestamp(), abs=1)


def test_a_shifted_clock_runs_on_as_the_machine_does() -> None:
    shifted = clock.Shifted()
    shifted.set(TEST_NOW)
    first = shifted()
    time.sleep(0.05)
    assert timedelta(seconds=0.04) < shifted() - first < timedelta(seconds=5)
    with pytest.raises(ValueError, match="naive"):
        shifted.set(datetime(2026, 1, 1))


def test_use_installs_a_source_and_restores_the_previous_one() -> None:
    before = clock.now()
    fixed = datetime(2030, 6, 1, tzinfo=UTC)
    with clock.use(lambda: fixed):
        assert clock.now() == fixed
    assert abs(clock.now() - before) < timedelta(seconds=30)


def test_processes_started_by_a_test_share_its_clock(fake_clock: TestClock) -> None:
    fake_clock.set(datetime(2031, 7, 4, 12, 0, tzinfo=UTC))
    code = "from monitor import clock; print(clock.now().isoformat())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    child = datetime.fromisoformat(out.strip())
    assert abs(child - clock.now()) < timedelta(seconds=30)


def test_a_bad_offset_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ValueError, match=clock.OFFSET_ENV):
        clock.from_env({clock.OFFSET_ENV: "yesterday"})
    assert clock.from_env({}).offset == timedelta(0)
    assert clock.from_env({clock.OFFSET_ENV: "-86400"}).offset == timedelta(days=-1)
