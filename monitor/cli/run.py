"""``touchpoint run``: the daemon."""

from __future__ import annotations

import logging
import sys

import click

from monitor import store
from monitor.cli.app import AppContext, cli, pass_app
from monitor.config import ConfigError
from monitor.daemon import DaemonError, check_for_daemon, run_daemon
from monitor.logs import setup_logging


@cli.command()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line (for a log collector).",
)
@pass_app
def run(app: AppContext, log_format: str) -> None:
    """Run as a daemon: collect every stream on its interval, classify, alert; stop on SIGTERM.

    One job per (brand, platform, stream) at the platform's interval_seconds, with jitter;
    anything overdue at start (by the runs table) runs at once. New brand posts are classified
    and the alert rules evaluated and delivered every [daemon] alerts_interval_seconds, and
    right after a collection stores something new. Logs one line per run (stream, outcome, new
    items, duration) at INFO. One daemon per database: a second one exits 1 naming the first's
    pid. SIGTERM or SIGINT: jobs in flight get [daemon] shutdown_grace_seconds, then exit 0.
    SIGHUP reads the config file again: if it is valid, the jobs in flight stop after their page
    and the new streams, intervals, channels and rules take over; if not, the error is logged and
    the old config keeps running. [store] path and the environment (secrets) are read at start
    only. See contrib/touchpoint.service for systemd (`systemctl reload touchpoint`).

    \b
    Example:
        touchpoint --config /etc/touchpoint/touchpoint.toml run --log-format json
    """
    level = logging.INFO if app.verbose < 2 else logging.DEBUG
    setup_logging(level, fmt="json" if log_format == "json" else "text")
    settings = app.settings()
    try:
        check_for_daemon(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        code = run_daemon(settings, app.db_override or settings.db_path)
    except (DaemonError, store.StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)
