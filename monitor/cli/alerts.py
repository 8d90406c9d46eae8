"""``touchpoint alerts``: list, acknowledge and test alerts."""

from __future__ import annotations

import json

import click

from monitor import clock, store
from monitor.alerts.outbox import LOG_CHANNEL
from monitor.cli.app import AppContext, cli, pass_app
from monitor.cli.common import RowId, _age, check_brand_filter, render_table
from monitor.config import ConfigError
from monitor.logs import clean, redact, visible
from monitor.models import iso
from monitor.notify import build_channel
from monitor.notify.base import DeliveryError
from monitor.notify.message import make_test_message
from monitor.store.alerts import StoredAlert


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
    """Show alerts, newest first: id, state, severity, kind, brand/platform, age and what each
    is about (an unanswered mention: its author, how long it waited and its text). `alerts show
    ID` shows one whole.

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
    now = clock.now()
    lines = [("ID", "STATE", "SEVERITY", "KIND", "STREAM", "AGE", "ABOUT")]
    for a in rows:
        stream = clean(f"{a.brand}/{a.platform}")
        age = _age(a.created_at, now)
        lines.append((str(a.id), a.state, a.severity, a.kind, stream, age, _about(a)))
    click.echo(render_table(lines, right=(0,)))


ABOUT_WIDTH = 100


def _about(alert: StoredAlert) -> str:
    """One line on what the alert is about: an unanswered mention by its author, wait and text
    (alerts of one kind and stream differ by nothing else); other kinds by their title."""
    p = alert.payload
    if alert.kind == "unanswered_mention" and isinstance(p.get("text"), str):
        line = f"{p.get('author') or '?'} ({p.get('detail') or 'unanswered'}): {p['text']}"
    else:
        line = alert.title
    line = clean(" ".join(line.split()))
    return line if len(line) <= ABOUT_WIDTH else line[: ABOUT_WIDTH - 1] + "…"


@alerts.command("show")
@click.argument("alert_id", type=RowId("an alert", "touchpoint alerts list"))
@pass_app
def alerts_show(app: AppContext, alert_id: int) -> None:
    """Show one alert whole: its state, when it was raised and last sent, and what it is about
    (an unanswered mention's author, link and full text; a self-promotion alert's share and
    example posts; a collection problem's detail and last error).

    \b
    Example:
        touchpoint alerts show 42
    """
    alert = store.get_alert(app.open_existing(), alert_id)
    if alert is None:
        raise click.ClickException(f"no alert {alert_id}. Fix: see `touchpoint alerts list`")
    click.echo("\n".join(_details(alert)))


def _details(alert: StoredAlert) -> list[str]:
    now = clock.now()
    lines = [
        f"alert {alert.id}: {alert.state}, {alert.severity}, {alert.kind}",
        f"title: {clean(alert.title)}",
        f"stream: {clean(f'{alert.brand}/{alert.platform}')}",
        f"raised: {alert.created_at} ({_age(alert.created_at, now)} ago)",
        f"last sent: {alert.last_notified_at or 'not yet'}",
    ]
    return [*lines, *_fields(alert.payload, "")]


def _fields(table: dict[str, object], indent: str) -> list[str]:
    """A table's fields as lines: the short ones first, then a post's text and lists."""
    ordered = sorted(table.items(), key=lambda kv: (kv[0] == "text" or _nested(kv[1]), kv[0]))
    return [line for name, value in ordered for line in _field(name, value, indent)]


def _nested(value: object) -> bool:
    return isinstance(value, dict | list)


def _field(name: str, value: object, indent: str) -> list[str]:
    """A payload field as lines; text is untrusted: secrets redacted, control characters shown
    escaped, a multi-line text indented under its name."""
    label = f"{indent}{clean(name)}:"
    if isinstance(value, dict):
        return [label, *_fields(value, indent + "  ")]
    if isinstance(value, list):
        lines = [label]
        for i, item in enumerate(value, 1):
            if isinstance(item, dict):
                lines.extend(_field(str(i), item, indent + "  "))
            else:
                lines.append(f"{indent}  - {clean(str(item))}")
        return lines
    text = value if isinstance(value, str) else json.dumps(value)
    if "\n" not in text and name != "text":
        return [f"{label} {clean(text)}"]
    body = visible(redact(text.replace("\r", ""))).replace("\t", " ")
    return [label, *(f"{indent}  {ln}" for ln in body.split("\n"))]


@alerts.command("ack")
@click.argument("alert_id", type=RowId("an alert", "touchpoint alerts list"))
@pass_app
def alerts_ack(app: AppContext, alert_id: int) -> None:
    """Acknowledge an open alert: it is not repeated any more and leaves `alerts list --open`.
    It still resolves by itself when its cause goes away; if the cause comes back after that,
    it is alerted again.

    \b
    Example:
        touchpoint alerts ack 42
    """
    db = app.open_existing()
    if store.ack_alert(db, alert_id):
        click.echo(f"alert {alert_id} acknowledged")
        return
    alert = store.get_alert(db, alert_id)
    if alert is None:
        raise click.ClickException(f"no alert {alert_id}. Fix: see `touchpoint alerts list --open`")
    if alert.state == "acked":
        click.echo(f"alert {alert_id} was already acknowledged")
        return
    raise click.ClickException(
        f"alert {alert_id} is {alert.state}, not open: there is nothing to acknowledge. "
        "Fix: see `touchpoint alerts list --open`"
    )


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
        target.send(make_test_message(channel, now=iso(clock.now())))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except DeliveryError as exc:
        raise click.ClickException(
            f"{channel}: the test message was not delivered: {exc}"
        ) from None
    click.echo(f"{channel}: test message delivered")
