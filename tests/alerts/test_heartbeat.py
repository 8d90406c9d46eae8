"""The heartbeat: the watchdog GETs an uptime monitor's ping URL while alerts go out, not while
they stall; a real HTTP receiver on 127.0.0.1 stands in for the monitor, the clock is passed in."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor import clock
from monitor.alerts import outbox
from monitor.alerts.heartbeat import Heartbeat, build_heartbeat, check_heartbeat
from monitor.alerts.watchdog import Watchdog
from monitor.config import ConfigError, load_settings
from tests.alerts.servers import Receiver, Reply
from tests.alerts.test_outbox import Rig, queue_messages, rig

__all__ = ["rig"]  # the fixture, shared with test_outbox

TOKEN = "5f1c9a4e-2b7d-4c1e-9a0f-3d2e6b8c7a91"  # a healthchecks.io-style ping token
EVERY = timedelta(minutes=5)
AFTER = timedelta(minutes=15)


@pytest.fixture
def monitor() -> Iterator[Receiver]:
    """The uptime monitor's ping endpoint."""
    receiver = Receiver()
    yield receiver
    receiver.close()


def heartbeat(monitor: Receiver) -> Heartbeat:
    return Heartbeat(monitor.url(f"/ping/{TOKEN}"), every=EVERY, allow_private=True)


def watchdog(r: Rig, monitor: Receiver, started: datetime) -> Watchdog:
    return Watchdog(
        outbox.build_channels(r.settings),
        after=AFTER,
        repeat=timedelta(hours=4),
        started=started,
        heartbeat=heartbeat(monitor),
    )


def test_the_heartbeat_beats_while_alerts_go_out_and_stops_while_they_stall(
    rig: Rig, monitor: Receiver
) -> None:
    t0 = clock.now()
    dog = watchdog(rig, monitor, started=t0)
    dog.check(rig.db, t0 + timedelta(seconds=30))  # a young daemon: alive, not judged yet
    assert [(q.method, q.path) for q in monitor.requests] == [("GET", f"/ping/{TOKEN}")]
    dog.passed(t0 + timedelta(minutes=1))
    dog.check(rig.db, t0 + timedelta(minutes=2))
    assert len(monitor.requests) == 1  # not again before heartbeat_seconds
    dog.check(rig.db, t0 + timedelta(minutes=6))
    assert len(monitor.requests) == 2

    queue_messages(rig.db, "hook", 1)  # due at t0; no alert pass finishes after minute 1
    dog.check(rig.db, t0 + timedelta(minutes=12))
    assert len(monitor.requests) == 3  # 11 min without a pass: not a stall yet
    for minute in range(16, 40, 3):
        assert dog.check(rig.db, t0 + timedelta(minutes=minute))
    assert len(monitor.requests) == 3  # silent through the stall: the monitor raises its alarm
    assert rig.hook.requests[0].json()["kind"] == "watchdog"  # the channels were told too

    at = t0 + timedelta(minutes=40)
    outbox.deliver(rig.db, outbox.build_channels(rig.settings), now=at, sleep=lambda s: 0)
    dog.passed(at)
    assert dog.check(rig.db, at + timedelta(seconds=30)) == []
    assert len(monitor.requests) == 4  # beating again, with the all-clear
    assert "going out again" in rig.hook.requests[-1].json()["title"]


def test_a_beat_not_taken_is_tried_at_the_next_look_and_never_logs_the_token(
    rig: Rig, monitor: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor")
    monitor.script(Reply(503), Reply(503))
    beat = heartbeat(monitor)
    t0 = clock.now()
    assert not beat.beat(t0) and not beat.beat(t0 + timedelta(minutes=1))
    assert beat.due(t0 + timedelta(minutes=2))  # nothing taken yet: due at every look
    assert beat.beat(t0 + timedelta(minutes=2))
    assert not beat.due(t0 + timedelta(minutes=3)) and beat.due(t0 + timedelta(minutes=7))
    assert len(monitor.requests) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "answered 503" in warnings[0]  # said once, not every minute
    assert f"127.0.0.1:{monitor.port}" in warnings[0]
    assert any("takes it again" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text and TOKEN not in repr(beat)


def write_config(tmp_path: Path, daemon: str, rig: Rig) -> Path:
    config = tmp_path / "beat.toml"
    config.write_text(rig.config.read_text() + f"\n[daemon]\n{daemon}\n")
    return config


def test_the_heartbeat_config_names_the_key_and_the_fix(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_heartbeat(rig.settings) is None  # off unless a variable is named

    config = write_config(tmp_path, 'heartbeat_url_env = "TEST_PING_URL"', rig)
    monkeypatch.delenv("TEST_PING_URL", raising=False)
    with pytest.raises(ConfigError) as unset:
        build_heartbeat(load_settings(config))
    assert "daemon.heartbeat_url_env" in str(unset.value)
    assert "export TEST_PING_URL=" in str(unset.value)

    monkeypatch.setenv("TEST_PING_URL", f"http://hc-ping.example/{TOKEN}")
    with pytest.raises(ConfigError) as http:
        build_heartbeat(load_settings(config))
    assert "must be https" in str(http.value) and "heartbeat_allow_private" in str(http.value)
    assert TOKEN not in str(http.value)

    monkeypatch.setenv("TEST_PING_URL", f"https://127.0.0.1/{TOKEN}")
    with pytest.raises(ConfigError) as private:
        check_heartbeat(load_settings(config))
    assert "non-public address" in str(private.value)
    assert "heartbeat_allow_private_addresses = true" in str(private.value)
    assert TOKEN not in str(private.value)

    allowed = write_config(
        tmp_path,
        'heartbeat_url_env = "TEST_PING_URL"\nheartbeat_allow_private_addresses = true\n'
        "heartbeat_seconds = 60",
        rig,
    )
    beat = check_heartbeat(load_settings(allowed))
    assert beat is not None and beat.every == timedelta(seconds=60)

    secret_itself = write_config(tmp_path, f'heartbeat_url_env = "https://x.example/{TOKEN}"', rig)
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        load_settings(secret_itself)
