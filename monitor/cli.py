"""The ``touchpoint`` command line: thin commands that parse, call and echo."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
from sqlite_utils import Database

from monitor import __version__, pipeline, store
from monitor.alerts import outbox
from monitor.alerts.channels import build_channel
from monitor.alerts.channels.base import DeliveryError
from monitor.alerts.message import make_test_message
from monitor.collectors import collector_class
from monitor.config import (
    ENV_CONFIG,
    ENV_DB,
    STREAMS,
    ConfigError,
    Settings,
    default_config_path,
    load_settings,
    template_text,
)
from monitor.daemon import DaemonError, daemon_holder, run_daemon
from monitor.digest import (
    BrandDigest,
    day_period,
    digest_mailer,
    local_yesterday,
    read_digest,
    render_text,
    send_digest,
    window_period,
    write_digest,
)
from monitor.logs import clean, setup_logging
from monitor.models import KINDS, Post, RunResult, StreamKey, iso, parse_iso, utcnow
from monitor.sandbox import fleet

if TYPE_CHECKING:  # scikit-learn loads only for the commands that classify (the daemon stays lean)
    import classifiers

logger = logging.getLogger(__name__)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class AppContext:
    """What the group's options resolve to, shared by every command."""

    config_path: Path
    db_override: Path | None
    verbose: int = 0

    def settings(self) -> Settings:
        try:
            return load_settings(self.config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def db_path(self) -> Path:
        if self.db_override is not None:
            return self.db_override
        return self.settings().db_path

    def open(self, path: Path | None = None) -> Database:
        try:
            return store.open_db(path or self.db_path())
        except store.StoreError as exc:
            raise click.ClickException(str(exc)) from None


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file (default: ${ENV_CONFIG} or ./touchpoint.toml).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=ENV_DB,
    help=f"SQLite database, overriding the config's [store] path (also ${ENV_DB}).",
)
@click.option("-v", "--verbose", count=True, help="-v logs each run, -vv logs at DEBUG.")
@click.version_option(__version__, prog_name="touchpoint")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, db_path: Path | None, verbose: int) -> None:
    """touchpoint: watch a brand's social touchpoints and keep it honest.

    Engage and inspire, don't sell; answer people promptly; stay consistent on every channel.

    \b
    Example:
        touchpoint init && touchpoint check-config && touchpoint collect
    """
    levels = {0: logging.WARNING, 1: logging.INFO}
    setup_logging(levels.get(verbose, logging.DEBUG))
    ctx.obj = AppContext(
        config_path=config_path or default_config_path(), db_override=db_path, verbose=verbose
    )


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
    if target.exists() and not force:
        raise click.ClickException(f"{target} already exists. Fix: pass --force to overwrite it")
    target.write_text(template_text(), encoding="utf-8")
    click.echo(
        f"wrote {target}: edit the brand and its accounts, export the tokens it names, "
        "then run `touchpoint check-config`"
    )


@cli.command("check-config")
@pass_app
def check_config(app: AppContext) -> None:
    """Validate the config file and the secrets it names; exit 1 with the fix if wrong.

    \b
    Example:
        touchpoint --config touchpoint.toml check-config
    """
    settings = app.settings()
    try:
        settings.check_secrets()
        outbox.check_channels(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    brands = ", ".join(b.name for b in settings.brands)
    click.echo(
        f"{settings.source}: ok. Brands: {brands}; platforms: "
        f"{', '.join(settings.platforms_in_use())}; database: {settings.db_path}"
    )
    warning = store.sqlite_version_warning()
    if warning:
        click.echo(f"note: {warning}; do not run a backfill while the daemon writes", err=True)


def _selection_options(func: Any) -> Any:
    func = click.option("--stream", type=click.Choice(STREAMS), help="Only this stream.")(func)
    func = click.option("--platform", help="Only this platform (e.g. x).")(func)
    return click.option("--brand", help="Only this brand (its name in the config).")(func)


@cli.command()
@_selection_options
@pass_app
def collect(app: AppContext, brand: str | None, platform: str | None, stream: str | None) -> None:
    """Collect every configured stream once: brand posts, mentions and keyword hits.

    Incremental: each stream goes on from its stored cursor, so running it again stores nothing
    twice. Exits 1 when a stream failed (the others still ran).

    \b
    Example:
        touchpoint collect --brand acme --platform x
    """
    settings = app.settings()
    _check_selection(settings, brand, platform)
    db = app.open(app.db_override or settings.db_path)
    results = pipeline.collect(db, settings, pipeline.Selection(brand, platform, stream))
    _report_labels(pipeline.classify_new(db, settings))
    _report_alerts(pipeline.run_alerts(db, settings))
    _report(results)


def _report_labels(labelled: int | None) -> None:
    if labelled is None:
        click.echo(
            "error: posts not classified: the model cannot be loaded (see the log)", err=True
        )
    else:
        click.echo(f"classified {labelled} new brand posts")


def _report_alerts(report: pipeline.AlertsReport) -> None:
    click.echo(f"alerts: {report.summary()}")
    if report.error:
        click.echo(f"error: alerts not delivered: {report.error}", err=True)


def _check_selection(settings: Settings, brand: str | None, platform: str | None) -> None:
    try:
        if brand is not None:
            settings.brand(brand)
        settings.check_secrets()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if platform is not None and platform not in settings.platforms_in_use():
        raise click.ClickException(
            f"no brand has an account on {platform!r}. Fix: use one of: "
            f"{', '.join(settings.platforms_in_use())}"
        )


def _report(results: Sequence[RunResult]) -> None:
    for r in results:
        if r.outcome in ("ok", "deferred", "skipped"):
            note = f" ({r.error})" if r.error else ""
            click.echo(
                f"{r.key}: {r.outcome}, {r.items_new} new, {r.items_updated} updated, "
                f"{r.pages} pages{note}"
            )
    failed = pipeline.failures(results)
    by_error: dict[str, list[str]] = {}
    for r in failed:
        by_error.setdefault(r.error or "unknown error", []).append(str(r.key))
    for error, keys in by_error.items():
        click.echo(f"error: {', '.join(keys)}: {error}", err=True)
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--since", required=True, type=click.DateTime(), help="Start (UTC), e.g. 2026-11-01.")
@click.option("--until", type=click.DateTime(), help="End (UTC); default now.")
@_selection_options
@pass_app
def backfill(
    app: AppContext,
    since: datetime,
    until: datetime | None,
    brand: str | None,
    platform: str | None,
    stream: str | None,
) -> None:
    """Collect history between --since and --until, page by page, resumable.

    Killed half-way, the same command goes on where it stopped. X reaches back 7 days for keyword
    search and 3,200 posts for a timeline; older items cannot be had.

    \b
    Example:
        touchpoint backfill --since 2026-11-01 --until 2026-11-08 --platform x
    """
    start = since.replace(tzinfo=UTC)
    end = until.replace(tzinfo=UTC) if until else utcnow()
    if end <= start:
        raise click.ClickException("--until must be after --since")
    settings = app.settings()
    _check_selection(settings, brand, platform)
    db = app.open(app.db_override or settings.db_path)
    for name in settings.platforms_in_use():
        if platform in (None, name):
            for note in collector_class(name).backfill_reach(start, utcnow()):
                click.echo(f"note: {note}", err=True)
    with _progress(start, end) as on_page:
        results = pipeline.collect(
            db,
            settings,
            pipeline.Selection(brand, platform, stream),
            backfill=(start, end),
            on_page=on_page,
        )
    _report(results)


@contextmanager
def _progress(start: datetime, end: datetime) -> Iterator[pipeline.ProgressHook]:
    """Show one progress bar per stream: how far back in the window the walk has come."""
    total = int((end - start).total_seconds()) or 1
    bars: dict[StreamKey, Any] = {}

    def on_page(result: RunResult, posts: Sequence[Post]) -> None:
        bar = bars.get(result.key)
        if bar is None:
            for other in bars.values():
                other.render_finish()
            bar = click.progressbar(length=total, label=str(result.key), file=sys.stderr)
            bar.__enter__()
            bars[result.key] = bar
        if posts:
            oldest = min(parse_iso(p.created_at) for p in posts)
            covered = min(total, max(0, int((end - oldest).total_seconds())))
            bar.update(covered - bar.pos)

    try:
        yield on_page
    finally:
        for bar in bars.values():
            bar.update(total - bar.pos)
            bar.__exit__(None, None, None)


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


@cli.command()
@pass_app
def status(app: AppContext) -> None:
    """Show each stream: last run, outcome, new items, lag since its last success, consecutive
    failures, last error; and whether `touchpoint run` is running on this database.

    \b
    Example:
        touchpoint status
    """
    path = app.db_path()
    db = app.open(path)
    click.echo(render_status(store.get_stream_status(db), utcnow()))
    pid = daemon_holder(path)
    click.echo(f"\ndaemon: {f'running (pid {pid})' if pid else 'not running'} on {path}")


def render_status(rows: Sequence[store.StreamStatus], now: datetime) -> str:
    """Render the stream status table as text."""
    if not rows:
        return "no stream has run yet: run `touchpoint collect`"
    header = ("STREAM", "LAST RUN", "OUTCOME", "NEW", "LAG (LAST OK)", "FAILS", "LAST ERROR")
    lines = [header]
    for r in rows:
        lines.append(
            (
                str(r.key),
                _age(r.last_run_at, now) + " ago" if r.last_run_at else "never",
                r.outcome or "-",
                str(r.items_new),
                _age(r.last_success_at, now) if r.last_success_at else "never ok",
                str(r.consecutive_failures),
                (r.last_error or "-")[:70],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in lines
    )


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    seconds = max(0, int((now - parse_iso(stamp)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


EXPORT_COLUMNS = [c for c in store.POST_COLUMNS if c != "raw"]


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV with a header, or one JSON object per line.",
)
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File to write (default: standard output).",
)
@click.option("--brand", help="Only this brand.")
@click.option("--platform", help="Only this platform.")
@click.option(
    "--kind", type=click.Choice(KINDS), help="Only posts, replies, mentions or keyword hits."
)
@click.option("--since", type=click.DateTime(), help="Only items created at or after (UTC).")
@click.option("--raw", is_flag=True, help="Include the raw API JSON of each item.")
@pass_app
def export(
    app: AppContext,
    fmt: str,
    output: TextIO,
    brand: str | None,
    platform: str | None,
    kind: str | None,
    since: datetime | None,
    raw: bool,
) -> None:
    """Export collected posts as CSV or JSON lines, oldest first.

    \b
    Example:
        touchpoint export --format jsonl --kind mention -o mentions.jsonl
    """
    db = app.open()
    rows = store.iter_posts(
        db,
        brand=brand,
        platform=platform,
        kind=kind,
        since=since.replace(tzinfo=UTC) if since else None,
    )
    columns = EXPORT_COLUMNS + (["raw"] if raw else [])
    count = write_rows(rows, columns, fmt, output)
    click.echo(f"exported {count} posts", err=True)


def write_rows(rows: Iterator[dict[str, Any]], columns: list[str], fmt: str, output: TextIO) -> int:
    """Write post rows as CSV or JSON lines; return how many were written."""
    count = 0
    writer = (
        csv.DictWriter(output, fieldnames=columns, extrasaction="ignore") if fmt == "csv" else None
    )
    if writer is not None:
        writer.writeheader()
    for row in rows:
        count += 1
        row = {c: row.get(c) for c in columns}
        if writer is not None:
            writer.writerow(row)
            continue
        for column in ("metrics", "raw"):
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
        row["is_brand"] = bool(row["is_brand"])
        output.write(json.dumps(row, ensure_ascii=False) + "\n")
    return count


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
    folder.mkdir(parents=True, exist_ok=True)
    end = utcnow().replace(microsecond=0)
    os.environ.update(fleet.environment())
    with fleet.running(seed=seed, start=end - timedelta(days=days), end=end) as servers:
        config_path = folder / "touchpoint.toml"
        config_path.write_text(fleet.config_text({p: s.url for p, s in servers.items()}))
        settings = load_settings(config_path)
        db = store.open_db(settings.db_path)
        started = time.monotonic()
        results = pipeline.collect(db, settings)
        seconds = time.monotonic() - started
    _report_demo(db, settings, results, seconds)
    _report_labels(pipeline.classify_new(db, settings))
    _report_alerts(pipeline.run_alerts(db, settings))
    click.echo(f"alerts:   touchpoint --config {settings.source} alerts list --open")
    period = window_period(end - timedelta(days=min(days, 1.0)), end, settings.brands[0].timezone)
    page, _ = write_digest(
        read_digest(db, settings.brands[0], period, as_of=end), folder / "digest.html"
    )
    click.echo(f"digest:   {page}")
    if pipeline.failures(results):
        sys.exit(1)


def _report_demo(
    db: Database, settings: Settings, results: Sequence[RunResult], seconds: float
) -> None:
    click.echo(f"collected {len(results)} streams in {seconds:.1f}s\n")
    click.echo(render_status(store.get_stream_status(db), utcnow()))
    by_platform: dict[str, list[str]] = {}
    for (_, platform, kind), n in sorted(store.count_posts(db).items()):
        by_platform.setdefault(platform, []).append(f"{n} {kind}")
    click.echo("")
    for platform, counts in by_platform.items():
        click.echo(f"stored from {platform}: {', '.join(counts)}")
    click.echo(f"database: {settings.db_path}")
    click.echo(f"config:   {settings.source}")
    click.echo(f"try:      touchpoint --config {settings.source} export --kind mention | head")


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
        touchpoint sandbox --write-config sandbox.toml &
        touchpoint --config sandbox.toml collect
    """
    end = utcnow().replace(microsecond=0)
    with fleet.running(
        seed=seed, start=end - timedelta(days=days), end=end, first_port=port
    ) as servers:
        for platform, server in servers.items():
            click.echo(f"{platform:9} {server.url}")
        if write_config is not None:
            write_config.write_text(fleet.config_text({p: s.url for p, s in servers.items()}))
            click.echo(f"wrote {write_config}")
        for name, value in fleet.environment().items():
            click.echo(f"export {name}={value}")
        click.echo("Ctrl-C stops them")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _classifier(settings: Settings | None) -> classifiers.Classifier:
    import classifiers

    try:
        if settings is None:
            return classifiers.load_default()
        return pipeline.load_classifier(settings)
    except classifiers.ModelLoadError as exc:
        raise click.ClickException(
            f"the classifier model cannot be loaded: {exc}. Fix: check "
            "[classifier] model_path, or retrain with `touchpoint train`"
        ) from None


@cli.command()
@click.option("--since", type=click.DateTime(), help="Only posts created at or after (UTC).")
@click.option(
    "--relabel", is_flag=True, help="Also relabel posts labelled by another model version."
)
@pass_app
def classify(app: AppContext, since: datetime | None, relabel: bool) -> None:
    """Label the brand's posts engaging, inspiring or sales-pitch (collect does this too).

    \b
    Example:
        touchpoint classify --relabel
    """
    settings = app.settings()
    classifier = _classifier(settings)
    db = app.open(app.db_override or settings.db_path)
    done = pipeline.classify_pending(
        db, classifier, relabel=relabel, since=since.replace(tzinfo=UTC) if since else None
    )
    counts = ", ".join(f"{n} {label}" for label, n in sorted(store.count_labels(db).items()))
    click.echo(
        f"labelled {done} posts with model {classifier.version}; all labels: {counts or '-'}"
    )


@cli.command()
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns text and label (others ignored).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a report.")
@pass_app
def evaluate(app: AppContext, data: Path, as_json: bool) -> None:
    """Score the classifier on your own labelled posts: macro-F1, accuracy, per class.

    \b
    Example:
        touchpoint evaluate --data labelled.csv --json
    """
    from classifiers.evaluate import evaluate as score

    texts, labels = _read_labelled(data)
    settings = app.settings() if app.config_path.exists() else None
    model = _classifier(settings)
    try:
        report = score(model, texts, labels)
    except ValueError as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    if as_json:
        keys = ("macro_f1", "accuracy", "per_class", "n")
        click.echo(json.dumps({k: report[k] for k in keys}, indent=2))
        return
    click.echo(
        f"n={report['n']}  macro-F1 {report['macro_f1']:.3f}  accuracy {report['accuracy']:.3f}"
    )
    for label, row in report["per_class"].items():
        click.echo(
            f"  {label:12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"F1 {row['f1']:.3f}  n={row['support']}"
        )


def _read_labelled(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"text", "label"} <= set(reader.fieldnames or ()):
            raise click.ClickException(
                f"{path}: needs the columns text and label. Fix: add a header line text,label"
            )
        rows = [(r["text"], r["label"].strip()) for r in reader if (r["text"] or "").strip()]
    if not rows:
        raise click.ClickException(f"{path}: no labelled posts in it")
    return [t for t, _ in rows], [label for _, label in rows]


@cli.command()
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own labelled posts (CSV: text,label) added to the shipped corpus.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Model file to write (default: touchpoint-model.skops beside the config).",
)
def train(data: Path | None, output: Path | None) -> None:
    """Retrain the classifier on the shipped corpus plus your labelled posts.

    Writes the model and its sidecar; point [classifier] model_path at it to use it.

    \b
    Example:
        touchpoint train --data our_posts.csv -o touchpoint-model.skops
    """
    from classifiers.train import main as train_main

    target = output or Path("touchpoint-model.skops")
    args = ["--out", str(target), "--no-card"] + (["--data", str(data)] if data else [])
    if train_main(args) != 0:
        raise click.ClickException("training failed (see the log above)")
    click.echo(f'wrote {target}. Use it: [classifier] model_path = "{target}"')


@cli.group()
def alerts() -> None:
    """List, acknowledge and test alerts (collect evaluates and sends them).

    \b
    Example:
        touchpoint alerts list --open
    """


@alerts.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only alerts still open.")
@click.option("--brand", help="Only this brand.")
@pass_app
def alerts_list(app: AppContext, open_only: bool, brand: str | None) -> None:
    """Show alerts, newest first: id, state, severity, kind, brand, age and title.

    \b
    Example:
        touchpoint alerts list --open --brand acme
    """
    db = app.open()
    rows = store.get_alerts(db, states=["open"] if open_only else None, brand=brand)
    if not rows:
        click.echo("no alerts")
        return
    now = utcnow()
    for a in rows:
        click.echo(
            f"{a.id:>5}  {a.state:8}  {a.severity:8}  {a.kind:18}  {a.brand}/{a.platform}"
            f"  {_age(a.created_at, now):>5}  {clean(a.title)[:90]}"
        )


@alerts.command("ack")
@click.argument("alert_id", type=int)
@pass_app
def alerts_ack(app: AppContext, alert_id: int) -> None:
    """Acknowledge an open alert: it stays open until resolved but is not repeated.

    \b
    Example:
        touchpoint alerts ack 42
    """
    if not store.ack_alert(app.open(), alert_id):
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
    if channel not in settings.channels and channel != "log":
        known = ", ".join(settings.channels) or "(none configured)"
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


@cli.command()
@click.option("--brand", help="Only this brand (default: every brand).")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The day, in the brand's time zone (default: yesterday there).",
)
@click.option(
    "--send", is_flag=True, help="Email it to the [digest] recipients that have not had it."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML page to this file and the text version beside it (.txt).",
)
@pass_app
def digest(
    app: AppContext, brand: str | None, day: datetime | None, send: bool, out: Path | None
) -> None:
    """Show a brand's daily digest: content mix, answers, response times, touchpoints.

    Per channel: the mix of engaging, inspiring and sales-pitch posts against the self-promotion
    target, mentions received and answered, median and p90 response time, the oldest unanswered
    mentions, channels alive or silent, and the change against the day before. Prints the text
    version; --out writes the HTML page (and FILE.txt); --send emails both, once per recipient
    and day (a second --send for the same day sends nothing).

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
    db = app.open(app.db_override or settings.db_path)
    now = utcnow()
    for one in brands:
        when = day.date() if day else local_yesterday(now, one.timezone)
        report = read_digest(db, one, day_period(when, one.timezone), as_of=now)
        if send:
            _send_digest(db, settings, report, now)
        elif out:
            page, text = write_digest(report, out)
            click.echo(f"wrote {page} and {text}")
        else:
            click.echo(render_text(report))


def _send_digest(db: Database, settings: Settings, report: BrandDigest, now: datetime) -> None:
    if not settings.digest.enabled:
        raise click.ClickException(
            "no digest recipients. Fix: add a [digest] section (see config.example.toml)"
        )
    try:
        mailer = digest_mailer(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sender = settings.digest.sender or mailer.sender
    result = send_digest(
        db,
        report,
        mailer=mailer,
        recipients=settings.digest.recipients,
        sender=sender,
        now=now,
        retry_now=True,
    )
    where = f"{report.brand} {report.period.label}"
    for recipient in result.sent:
        click.echo(f"{where}: sent to {recipient}")
    for recipient in result.already:
        click.echo(f"{where}: already sent to {recipient}")
    for recipient, error in result.failed:
        click.echo(f"error: {where}: not sent to {recipient}: {error}", err=True)
    if result.failed:
        sys.exit(1)


def main() -> None:
    """Entry point for ``python -m monitor``."""
    cli(prog_name="touchpoint")


if __name__ == "__main__":  # pragma: no cover
    main()
