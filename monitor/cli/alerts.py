"""``touchpoint alerts``: list, acknowledge and test alerts."""

from __future__ import annotations

import click

from monitor import store
from monitor.alerts.channels import build_channel
from monitor.alerts.channels.base import DeliveryError
from monitor.alerts.message import make_test_message
from monitor.alerts.outbox import LOG_CHANNEL
from monitor.cli.app import AppContext, cli, pass_app
from monitor.cli.common import _age, check_brand_filter, render_table
from monitor.config import ConfigError
from monitor.logs import clean
from monitor.models import iso, utcnow


@cli.group()
def alerts() -> None:
    """List, acknowledge and test alerts (collect evaluates and sends them).

    \b
    Example:
        touchpoint alerts list --open
    """


@alerts.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only alerts still open.")
@click.option("--brand", help="Only this brand (its name in the config).")
@pass_app
def alerts_list(app: AppContext, open_only: bool, brand: str | None) -> None:
    """Show alerts, newest first: id, state, severity, kind, brand, age and title.

    \b
    Example:
        touchpoint alerts list --open --brand acme
    """
    db = app.open_existing()
    check_brand_filter(brand, app.settings_if_any(), store.stored_brands(db))
    rows = store.get_alerts(db, states=["open"] if open_only else None, brand=brand)
    if not rows:
        click.echo("no alerts")
        return
    now = utcnow()
    lines = [("ID", "STATE", "SEVERITY", "KIND", "STREAM", "AGE", "TITLE")]
    for a in rows:
        stream = clean(f"{a.brand}/{a.platform}")
        age = _age(a.created_at, now)
        lines.append((str(a.id), a.state, a.severity, a.kind, stream, age, clean(a.title)[:90]))
    click.echo(render_table(lines, right=(0,)))


@alerts.command("ack")
@click.argument("alert_id", type=click.IntRange(1, 2**63 - 1))  # SQLite's id range
@pass_app
def alerts_ack(app: AppContext, alert_id: int) -> None:
    """Acknowledge an open alert: it is not repeated any more and leaves `alerts list --open`.
    It still resolves by itself when its cause goes away; if the cause comes back after that,
    it is alerted again.

    \b
    Example:
        touchpoint alerts ack 42
    """
    if not store.ack_alert(app.open_existing(), alert_id):
        raise click.ClickException(
            f"no open alert {alert_id}. Fix: see `touchpoint alerts list --open`"
        )
    click.echo(f"alert {alert_id} acknowledged")


@alerts.command("test")
@click.option("--channel", required=True, help="The channel's name in [alerts.channels].")
@pass_app
def alerts_test(app: AppContext, channel: str) -> None:
    """Send a test message through one channel and say whether it arrived.

    \b
    Example:
        touchpoint alerts test --channel slack
    """
    settings = app.settings()
    if channel not in settings.channels and channel != LOG_CHANNEL:
        known = ", ".join([*settings.channels, LOG_CHANNEL])
        raise click.ClickException(f"no channel named {channel!r}. Fix: use one of: {known}")
    try:
        target = build_channel(settings, channel)
        target.send(make_test_message(channel, now=iso(utcnow())))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except DeliveryError as exc:
        raise click.ClickException(
            f"{channel}: the test message was not delivered: {exc}"
        ) from None
    click.echo(f"{channel}: test message delivered")
