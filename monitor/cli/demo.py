"""``touchpoint demo`` and ``touchpoint sandbox``: run against local sandbox APIs."""

from __future__ import annotations

import errno
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from monitor import clock, files, pipeline, store
from monitor.cli.app import cli
from monitor.cli.common import (
    _report_alerts,
    _report_labels,
    program,
    refuse_store_target,
    render_status,
    write_file,
)
from monitor.config import Settings, load_settings
from monitor.digest import read_digest, window_period, write_digest
from monitor.models import RunResult
from monitor.sandbox import fleet
from monitor.sandbox.traffic import TrafficSandbox


def _traffic_options(func: Any) -> Any:
    func = click.option(
        "--days",
        type=click.FloatRange(0.1, 30),
        default=1.0,
        show_default=True,
        help="Days of simulated traffic, ending now.",
    )(func)
    return click.option(
        "--seed", type=int, default=7, show_default=True, help="Seed of the simulated traffic."
    )(func)


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the config and database (default: a new temporary folder).",
)
@_traffic_options
def demo(directory: Path | None, seed: int, days: float) -> None:
    """Run touchpoint end to end against local sandboxes: no API key, no network.

    Starts sandbox X, Reddit, Mastodon and Bluesky servers on 127.0.0.1, writes a config for a
    brand on all four, collects a simulated day of brand posts, mentions and replies into a SQLite
    file, shows the status of every stream, and writes the digest of the simulated day
    (digest.html and digest.txt in the folder).

    \b
    Example:
        touchpoint demo --dir ./touchpoint-demo
    """
    folder = directory or Path(tempfile.mkdtemp(prefix="touchpoint-demo-"))
    config_path = folder / "touchpoint.toml"
    _refuse_to_overwrite(config_path, folder / "touchpoint.db", "--dir")
    folder.mkdir(parents=True, exist_ok=True)
    end = clock.now().replace(microsecond=0)
    os.environ.update(fleet.environment())
    with fleet.running(seed=seed, start=end - timedelta(days=days), end=end) as servers:
        config_path.write_text(fleet.config_text({p: s.url for p, s in servers.items()}))
        settings = load_settings(config_path)
        db = store.open_db(settings.db_path)
        started = time.monotonic()
        results = pipeline.collect(db, settings)
        seconds = time.monotonic() - started
    _report_demo(db, settings, results, seconds)
    _report_labels(pipeline.classify_new(db, settings))
    _report_alerts(pipeline.run_alerts(db, settings))
    config = shlex.quote(str(settings.source))
    click.echo(f"alerts:   {program()} --config {config} alerts list --open")
    period = window_period(end - timedelta(days=min(days, 1.0)), end, settings.brands[0].timezone)
    page, _ = write_digest(
        read_digest(db, settings.brands[0], period, as_of=end, streams=settings.platform_streams),
        folder / "digest.html",
    )
    click.echo(f"digest:   {page}")
    if pipeline.failures(results):
        sys.exit(1)


def _refuse_to_overwrite(config: Path, database: Path, option: str) -> None:
    """Refuse a config that is not a sandbox's, or a database that no sandbox config names:
    writing there would replace a real config or mix simulated posts into real ones."""
    ours = fleet.is_sandbox_config(config)
    if config.exists() and not ours:
        raise click.ClickException(
            f"{config} exists and is not a sandbox config; it is left as it is. Fix: give "
            f"{option} a new name"
        )
    if database.exists() and not ours:
        raise click.ClickException(
            f"{database} exists, and simulated posts would go into it. Fix: give {option} a "
            "new name"
        )


@contextmanager
def _sandboxes(
    seed: int, start: datetime, end: datetime, port: int
) -> Iterator[dict[str, TrafficSandbox]]:
    """The four sandboxes on ports ``port`` to ``port + 3``; a port in use is a clear error."""
    try:
        with fleet.running(seed=seed, start=start, end=end, first_port=port) as servers:
            yield servers
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(
            f"a port from {port} to {port + 3} on 127.0.0.1 is in use (another sandbox?). Fix: "
            "stop what uses it, or pass --port with another first port"
        ) from None


def _report_demo(
    db: Database, settings: Settings, results: Sequence[RunResult], seconds: float
) -> None:
    click.echo(f"collected {len(results)} streams in {seconds:.1f}s\n")
    click.echo(render_status(store.get_stream_status(db), clock.now()))
    by_platform: dict[str, list[str]] = {}
    for (_, platform, kind), n in sorted(store.count_posts(db).items()):
        by_platform.setdefault(platform, []).append(f"{n} {kind}")
    click.echo("")
    for platform, counts in by_platform.items():
        click.echo(f"stored from {platform}: {', '.join(counts)}")
    click.echo(f"database: {settings.db_path}")
    click.echo(f"config:   {settings.source}")
    hint = "export --kind mention --format jsonl | head -3"
    click.echo(f"try:      {program()} --config {shlex.quote(str(settings.source))} {hint}")


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(1024, 65530),
    default=8400,
    show_default=True,
    help="First port on 127.0.0.1: X, Reddit, Mastodon and Bluesky take it and the next 3.",
)
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a config that points touchpoint at the sandboxes.",
)
@_traffic_options
def sandbox(port: int, write_config: Path | None, seed: int, days: float) -> None:
    """Serve sandbox X, Reddit, Mastodon and Bluesky APIs on 127.0.0.1 until interrupted.

    Each speaks its platform's wire format with simulated traffic for the brand "acme". The
    credentials they accept are printed as environment variables to export.

    \b
    Example:
        touchpoint sandbox --write-config sandbox.toml > sandbox.txt &
        sleep 3; eval "$(grep ^export sandbox.txt)"
        touchpoint --config sandbox.toml collect
    """
    database = write_config.with_suffix(".db") if write_config else None
    if write_config is not None and database is not None:
        refuse_store_target(database, write_config, "--write-config")
        _refuse_to_overwrite(write_config, database, "--write-config")
    end = clock.now().replace(microsecond=0)
    with _sandboxes(seed, end - timedelta(days=days), end, port) as servers:
        for platform, server in servers.items():
            click.echo(f"{platform:9} {server.url}")
        if write_config is not None and database is not None:
            urls = {p: s.url for p, s in servers.items()}
            text = fleet.config_text(urls, db_path=database.name)
            write_file(write_config, text, "--write-config", mode=files.SHARED)
            click.echo(f"wrote {write_config} (its database: {database})")
        for name, value in fleet.environment().items():
            click.echo(f"export {name}={value}")
        click.echo("Ctrl-C stops them")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
