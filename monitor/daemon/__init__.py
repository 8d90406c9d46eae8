"""``touchpoint run``: the scheduler that keeps every stream collected, classified and alerted.

APScheduler 3 in one process: one job per (brand, platform, stream), one that classifies new
brand posts and evaluates and delivers alerts, one for the daily digests and a daily
housekeeping job. A lock beside the database refuses a second daemon. Classification runs in a
short-lived child process (``touchpoint classify``) so the daemon stays small at rest.

The package's public API is what the CLI uses: :func:`run_daemon`, :func:`check_for_daemon`
(before start and on reload), :func:`daemon_holder` (who holds a database) and
:class:`DaemonError`; :class:`Daemon` for callers that drive it themselves.
"""

from monitor.daemon.core import Daemon, run_daemon
from monitor.daemon.lock import DaemonError, daemon_holder
from monitor.daemon.signals import check_for_daemon

__all__ = ["Daemon", "DaemonError", "check_for_daemon", "daemon_holder", "run_daemon"]
