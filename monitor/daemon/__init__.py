"""``touchpoint run``: the daemon, a package split by concern (see :mod:`monitor.daemon.core`)."""

from monitor.daemon.core import (
    Daemon,
    DaemonError,
    check_for_daemon,
    daemon_holder,
    database_lock,
    first_run_at,
    jitter_seconds,
    plan_streams,
    run_daemon,
)

__all__ = [
    "Daemon",
    "DaemonError",
    "check_for_daemon",
    "daemon_holder",
    "database_lock",
    "first_run_at",
    "jitter_seconds",
    "plan_streams",
    "run_daemon",
]
