"""``touchpoint init`` and ``touchpoint check-config``: write and validate the config."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from monitor import files, store
from monitor.alerts import outbox
from monitor.alerts.heartbeat import Heartbeat, check_heartbeat
from monitor.cli.app import AppContext, cli, pass_app
from monitor.cli.common import refuse_store_target, write_file
from monitor.config import STREAMS, ConfigError, Settings, default_config_path, template_text


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@pass_app
def init(app: AppContext, path: Path | None, force: bool) -> None:
    """Write a starter config file, every key documented.

    \b
    Example:
        touchpoint init touchpoint.toml
    """
    target = path or app.config_path
    refuse_store_target(app.db_path_if_known(), target, "init")
    if target.exists() and not force:
        raise click.ClickException(f"{target} already exists. Fix: pass --force to overwrite it")
    write_file(target, template_text(), "init", mode=files.SHARED)
    check = "touchpoint check-config"
    if target.resolve() != default_config_path().resolve():
        check = f"touchpoint --config {shlex.quote(str(target))} check-config"
    click.echo(
        f"wrote {target}: edit the brand and its accounts, export the tokens it names, "
        f"then run `{check}`"
    )


@cli.command("check-config")
@pass_app
def check_config(app: AppContext) -> None:
    """Validate the config file, the secrets it names and the retrained model it points at (a
    [classifier] model_path: there, unchanged, no pickle); exit 1 with the fix if wrong.

    Prints the brands, the platforms in use, the database, who gets which brand's daily digest
    (a brand's own digest_recipients, else [digest] recipients) and where the daemon's
    heartbeat goes (its ping URL is checked, DNS included).

    \b
    Example:
        touchpoint --config touchpoint.toml check-config
    """
    settings = app.settings()
    try:
        settings.check_secrets()
        outbox.check_channels(settings)
        heartbeat = check_heartbeat(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _check_model(settings)
    brands = ", ".join(b.name for b in settings.brands)
    click.echo(
        f"{settings.source}: ok. Brands: {brands}; platforms: {_platforms(settings)}; "
        f"database: {settings.db_path}"
    )
    click.echo(_digest_line(settings))
    click.echo(_heartbeat_line(heartbeat))
    warning = store.sqlite_version_warning()
    if warning:
        click.echo(f"note: {warning}; do not run a backfill while the daemon writes", err=True)


def _platforms(settings: Settings) -> str:
    """The platforms in use, each with its streams when ``[platforms.NAME] streams`` narrows
    them, e.g. "x, reddit (posts and keywords only)"."""
    return ", ".join(
        name if streams == STREAMS else f"{name} ({' and '.join(streams)} only)"
        for name in settings.platforms_in_use()
        for streams in [settings.platforms[name].streams]
    )


def _check_model(settings: Settings) -> None:
    """A retrained model the config names is there, unchanged and no pickle (not loaded)."""
    if settings.model_path is None:
        return
    import classifiers

    try:
        classifiers.check(settings.model_path)
    except classifiers.ModelLoadError as exc:
        raise click.ClickException(
            f"{settings.source}: classifier.model_path: {exc}. Fix: point it at a model "
            "`touchpoint train` wrote, or remove the line to use the shipped model"
        ) from None


def _heartbeat_line(heartbeat: Heartbeat | None) -> str:
    """Where ``touchpoint run`` reports that it is alive, if anywhere."""
    if heartbeat is None:
        return (
            "heartbeat: off (set [daemon] heartbeat_url_env so an uptime monitor notices a "
            "daemon that stops)"
        )
    every = heartbeat.every.total_seconds()
    return f"heartbeat: GET {heartbeat.where} every {every:.0f} s while alerts go out"


def _digest_line(settings: Settings) -> str:
    """Who gets which brand's daily digest, as the config says (a brand's own
    ``digest_recipients`` before ``[digest] recipients``)."""
    digest = settings.digest
    if not digest.enabled:
        return "digest: not emailed (no [digest] recipients and no brand's digest_recipients)"
    brands = "; ".join(
        f"{b.name} -> {', '.join(digest.recipients_for(b.name)) or 'nobody'}"
        for b in settings.brands
    )
    return f"digest: daily at {digest.send_time} local time through {digest.channel!r}: {brands}"
