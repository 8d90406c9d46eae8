"""``touchpoint digest``: show, write or email a brand's daily digest."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import click
from sqlite_utils import Database

from monitor import clock
from monitor.cli.app import AppContext, cli, pass_app
from monitor.cli.common import Day, file_errors, refuse_store_target
from monitor.config import ConfigError, Settings
from monitor.digest import (
    BrandDigest,
    Period,
    day_period,
    digest_mailer,
    local_yesterday,
    read_digest,
    render_text,
    send_digest,
    write_digest,
)


@cli.command()
@click.option("--brand", help="Only this brand (default: every brand).")
@click.option(
    "--date",
    "day",
    type=Day(),
    help="The day, in the brand's time zone (default: yesterday there).",
)
@click.option(
    "--send",
    is_flag=True,
    help="Email it to the brand's recipients (its digest_recipients, else the [digest] "
    "recipients) that have not had it. Only for a day that has ended.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML page to this file, and the text version beside it with the suffix "
    ".txt (digest.html: digest.txt).",
)
@pass_app
def digest(
    app: AppContext, brand: str | None, day: date | None, send: bool, out: Path | None
) -> None:
    """Show a brand's daily digest: content mix, answers, response times, touchpoints.

    Per channel: the mix of engaging, inspiring and sales-pitch posts against the self-promotion
    target, mentions received and answered, median and p90 response time, the oldest unanswered
    mentions, channels alive or silent, and the change against the day before. Prints the text
    version; --out writes the HTML page and the text beside it (digest.html: digest.txt); --send
    emails both, once per recipient and day (a second --send for the same day sends nothing); a
    brand with no recipients is skipped.

    \b
    Example:
        touchpoint digest --brand acme --date 2026-11-22 --out digest.html
    """
    if send and out:
        raise click.UsageError("use --send or --out, not both")
    if out and out.suffix.lower() == ".txt":
        raise click.UsageError("--out names the HTML file, e.g. digest.html (the text goes beside)")
    settings = app.settings()
    try:
        brands = [settings.brand(brand)] if brand else list(settings.brands)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if out and len(brands) > 1:
        raise click.UsageError("--out writes one brand's digest: add --brand NAME")
    now = clock.now()
    days = {b.name: day or local_yesterday(now, b.timezone) for b in brands}
    periods = {b.name: day_period(days[b.name], b.timezone) for b in brands}
    if send:
        _refuse_unfinished_days(periods, now)
    db_path = app.db_override or settings.db_path
    if out:
        for target in (out, out.with_suffix(".txt")):
            refuse_store_target(db_path, target, "--out")
    db = app.open_existing(db_path)
    failed = False
    for one in brands:
        report = read_digest(
            db, one, periods[one.name], as_of=now, streams=settings.platform_streams
        )
        if send:
            failed |= not _send_digest(db, settings, report, now)  # the next brand still goes
        elif out:
            with file_errors(out, "--out"):
                page, text = write_digest(report, out)
            click.echo(f"wrote {page} and {text}")
        else:
            click.echo(render_text(report))
    if failed:
        sys.exit(1)


def _refuse_unfinished_days(periods: dict[str, Period], now: datetime) -> None:
    """--send is for days that have ended: a day sent early would go out incomplete, and be
    recorded as sent, so the daemon would send no digest until that day had passed."""
    for brand, period in periods.items():
        if period.end > now:
            raise click.ClickException(
                f"{brand}: {period.label} has not ended yet in {period.timezone}, so its digest "
                "would be incomplete and no later one would be sent until then. Fix: leave out "
                "--send to look at it now, or send a past day"
            )


def _send_digest(db: Database, settings: Settings, report: BrandDigest, now: datetime) -> bool:
    """Email one brand's digest to those who have not had it; False if a recipient failed."""
    if not settings.digest.enabled:
        raise click.ClickException(
            "no digest recipients. Fix: add a [digest] section, or digest_recipients to a "
            "[[brands]] table (see config.example.toml)"
        )
    where = f"{report.brand} {report.period.label}"
    recipients = settings.digest.recipients_for(report.brand)
    if not recipients:
        click.echo(f"{where}: not sent: the brand has no digest recipients")
        return True
    try:
        mailer = digest_mailer(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sender = settings.digest.sender or mailer.sender
    result = send_digest(
        db,
        report,
        mailer=mailer,
        recipients=recipients,
        sender=sender,
        now=now,
        retry_now=True,
    )
    for recipient in result.sent:
        click.echo(f"{where}: sent to {recipient}")
    for recipient in result.already:
        click.echo(f"{where}: already sent to {recipient}")
    for recipient, error in result.failed:
        click.echo(f"error: {where}: not sent to {recipient}: {error}", err=True)
    return not result.failed
