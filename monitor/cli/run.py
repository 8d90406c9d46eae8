"""``touchpoint run``: the daemon."""

from __future__ import annotations

import logging
import sys

import click

from monitor import store
from monitor.alerts import outbox
from monitor.cli.app import AppContext, cli, pass_app
from monitor.config import ConfigError
from monitor.daemon import DaemonError, run_daemon
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
    See contrib/touchpoint.service for systemd.

    \b
    Example:
        touchpoint --config /etc/touchpoint/touchpoint.toml run --log-format json
    """
    level = logging.INFO if app.verbose < 2 else logging.DEBUG
    setup_logging(level, fmt="json" if log_format == "json" else "text")
    settings = app.settings()
    try:
        settings.check_secrets()
        outbox.build_channels(settings)  # a channel's missing secret is found now, not at 3 am
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        code = run_daemon(settings, app.db_override or settings.db_path)
    except (DaemonError, store.StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)
