"""``touchpoint collect``, ``backfill``, ``status`` and ``export``: collect, then look at it."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO

import click

from monitor import clock, pipeline, store
from monitor.cli.app import AppContext, cli, missing_db, pass_app
from monitor.cli.common import (
    UtcTime,
    _report_alerts,
    _report_labels,
    check_brand_filter,
    health_cells,
    refuse_store_target,
    render_service,
    render_status,
    writing_file,
)
from monitor.config import STREAMS, ConfigError, DaemonSettings, Settings, platforms
from monitor.daemon import daemon_holder
from monitor.logs import CONTROL, visible
from monitor.models import (
    ACCOUNT_STREAM,
    KINDS,
    Post,
    RunResult,
    StreamKey,
    iso,
    parse_iso,
)
from monitor.platforms.streams import collector_class, planned_streams


class PlatformName(click.ParamType[str]):
    """A registered platform's name: checked against the registry when given, not at import."""

    name = "platform"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return click.Choice(sorted(platforms())).convert(value, param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        """The registered names, as a choice shows them; PLATFORM while the registry is broken
        (--help still works then, and the error comes when the option is used)."""
        try:
            return "[" + "|".join(sorted(platforms())) + "]"
        except ConfigError:
            return "PLATFORM"


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
    _check_selection(settings, brand, platform, stream)
    db = app.open(app.db_override or settings.db_path)
    results = pipeline.collect(db, settings, pipeline.Selection(brand, platform, stream))
    _report_labels(pipeline.classify_new(db, settings))
    _report_alerts(pipeline.run_alerts(db, settings))
    pruned = pipeline.prune_runs(db, settings)  # as the daemon does daily: cron users need it too
    if pruned:
        click.echo(f"runs: {pruned} older than {settings.runs_keep_days} days deleted")
    _report(results)


def _check_selection(
    settings: Settings, brand: str | None, platform: str | None, stream: str | None
) -> None:
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
    chosen = [platform] if platform else settings.platforms_in_use()
    if stream is not None and not any(stream in settings.platforms[p].streams for p in chosen):
        names = " and ".join(f"platforms.{p}.streams" for p in chosen)
        raise click.ClickException(
            f"no {stream} are collected: {names} leave{'s' if len(chosen) == 1 else ''} them "
            f'out. Fix: add "{stream}" there, or choose another --stream'
        )


def _report(results: Sequence[RunResult]) -> None:
    for r in results:
        if r.outcome in ("ok", "deferred", "skipped", "interrupted"):
            note = f" ({r.error})" if r.error else ""
            click.echo(
                f"{r.key}: {r.outcome}, {r.items_new} new, {r.items_updated} updated, "
                f"{r.pages} {'page' if r.pages == 1 else 'pages'}{note}"
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
@click.option(
    "--since",
    required=True,
    type=UtcTime(),
    help="Start (UTC), e.g. 2026-11-01 or 2026-11-01T12:00.",
)
@click.option("--until", type=UtcTime(), help="End (UTC), the same forms; default now.")
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

    Killed half-way, the same command goes on where it stopped: without --until, it takes back
    the end of the unfinished window that starts at the same --since (give --until for a new
    window). X reaches back 7 days for keyword search and 3,200 posts for a timeline; older
    items cannot be had.

    \b
    Example:
        touchpoint backfill --since 2026-11-01 --until 2026-11-08 --platform x
    """
    start, now = since, clock.now()
    end = until or now
    if until is None and start >= now:
        raise click.ClickException(
            f"--since {iso(start)} is in the future (it is {iso(now)} UTC). Fix: give a past time"
        )
    if end <= start:
        raise click.ClickException("--until must be after --since")
    settings = app.settings()
    _check_selection(settings, brand, platform, stream)
    db = app.open(app.db_override or settings.db_path)
    selection = pipeline.Selection(brand, platform, stream)
    if until is None:
        unfinished = pipeline.unfinished_backfill_end(db, start, selection)
        if unfinished is not None:
            end = unfinished
            click.echo(
                f"note: resuming the unfinished window {iso(start)} .. {iso(end)}; give --until "
                "for a new one",
                err=True,
            )
    for name in settings.platforms_in_use():
        if platform in (None, name):
            for note in collector_class(name).backfill_reach(start, clock.now()):
                click.echo(f"note: {note}", err=True)
    with _progress(start, end) as on_page:
        results = pipeline.collect(
            db,
            settings,
            selection,
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
    "--all",
    "show_all",
    is_flag=True,
    help="Also list the backfill windows that finished (hidden by default).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when a stream's HEALTH is not ok (refused, failing, stale, overdue or not "
    "collected), a configured stream never ran, or nothing was collected yet; for cron or a "
    "monitoring system. 0 when all are ok.",
)
@pass_app
def status(app: AppContext, show_all: bool, check: bool) -> None:
    """Show each stream: last run, outcome, new items, lag since its last success, consecutive
    failures, health, last error; whether `touchpoint run` is running on this database; and
    touchpoint itself: the classifier's last passes, restarts after unclean stops, the size of
    the write-ahead log, and the alert outbox (messages waiting, how long the oldest one due has
    waited, sent, given up).

    HEALTH applies the alert rules' health checks (refused credentials, failing runs in a row, no
    success for `stale_after_intervals`) and says "overdue" when a stream has not run for two of
    its intervals: the daemon is probably not running. A backfill window walked to its end is
    left out (--all lists it); one that stopped half-way stays, to be resumed.

    A stream the config asks for that has no run at all (a brand, account or keywords added
    since) is listed under "never collected"; when its platform's runs all stopped at the brand's
    account (a refused login, an unknown handle), under "not collected" with that error.

    With --check the exit status says it too: 1 when a stream is refused, failing, stale,
    overdue, not collected or never collected (each named on standard error; [platforms.NAME]
    streams leaves a stream out on purpose), or when there is no database yet; 0 otherwise.
    --check needs the config, whose intervals and alert rules the health is judged by.

    \b
    Example:
        touchpoint status --check || echo "touchpoint needs a look"
    """
    # None: --db without a config, no intervals to judge by (--check needs them: its error)
    settings = app.settings() if check else app.settings_if_any()
    path = app.db_path() if settings is None else app.db_override or settings.db_path
    if not path.exists():  # before the first collect (or a mistyped --db): make nothing
        click.echo(missing_db(path, joined=": "))
        if check:
            sys.exit(1)
        return
    db = app.open(path)
    rows, now = store.get_stream_status(db), clock.now()
    planned = planned_streams(settings) if settings else frozenset()
    never = _never_collected(planned, rows)
    stopped = _stopped_at_account(never, rows)
    never = [k for k in never if k not in stopped]
    finished = [] if show_all else [r for r in rows if _finished_backfill(r)]
    rows = [r for r in rows if r not in finished]
    health = health_cells(rows, settings, now, planned) if settings else {}
    if rows or not finished:
        click.echo(render_status(rows, now, health))
    if finished:
        windows = "window" if len(finished) == 1 else "windows"
        click.echo(f"({len(finished)} finished backfill {windows} not shown: `status --all`)")
    for account, keys in _by_account(stopped).items():
        click.echo(
            f"not collected: {', '.join(map(str, keys))} (every run stopped at the account: "
            f"{account.outcome}: {account.last_error or 'no detail'})"
        )
    if never:
        click.echo(
            f"never collected: {', '.join(map(str, never))} (new in the config? `touchpoint "
            "collect`, or reload a running daemon: kill -HUP its pid)"
        )
    pid = daemon_holder(path)
    click.echo(f"\ndaemon: {f'running (pid {pid})' if pid else 'not running'} on {path}")
    limit = (settings.daemon if settings else DaemonSettings()).wal_alert_megabytes
    click.echo(render_service(db, now, wal_alert_megabytes=limit))
    if check:
        unreached = {k: f"not collected: {a.key} {a.outcome}" for k, a in stopped.items()}
        _exit_on_problems(health | dict.fromkeys(never, "never collected") | unreached)


def _never_collected(
    planned: Collection[StreamKey], rows: Sequence[store.StreamStatus]
) -> list[StreamKey]:
    """The streams the config asks for (``planned``) that have no run at all (a brand, account
    or keywords added since the last collection)."""
    seen = {r.key for r in rows}
    return sorted((k for k in planned if k.stream != ACCOUNT_STREAM and k not in seen), key=str)


def _stopped_at_account(
    never: Sequence[StreamKey], rows: Sequence[store.StreamStatus]
) -> dict[StreamKey, store.StreamStatus]:
    """The streams of ``never`` that did not run because every run of their brand's platform
    stopped at its account (a refused login, an unknown handle), each with that account's row:
    runs were tried, so "new in the config" would mislead."""
    accounts = {(r.key.brand, r.key.platform): r for r in rows if r.key.stream == ACCOUNT_STREAM}
    ran = {(r.key.brand, r.key.platform) for r in rows if r.key.stream != ACCOUNT_STREAM}
    return {
        key: accounts[(key.brand, key.platform)]
        for key in never
        if (key.brand, key.platform) in accounts and (key.brand, key.platform) not in ran
    }


def _by_account(
    stopped: dict[StreamKey, store.StreamStatus],
) -> dict[store.StreamStatus, list[StreamKey]]:
    """``stopped`` grouped by the account row that stopped them."""
    grouped: dict[store.StreamStatus, list[StreamKey]] = {}
    for key, account in stopped.items():
        grouped.setdefault(account, []).append(key)
    return grouped


def _exit_on_problems(health: dict[StreamKey, str]) -> None:
    """``status --check``: name each stream whose health is not ok on stderr and exit 1."""
    bad = {key: cell for key, cell in health.items() if cell != "ok"}
    for key, cell in sorted(bad.items(), key=lambda item: str(item[0])):
        click.echo(f"check: {key}: {cell}", err=True)
    if bad:
        streams = "stream" if len(bad) == 1 else "streams"
        click.echo(f"check: {len(bad)} {streams} need a look", err=True)
        sys.exit(1)


def _finished_backfill(row: store.StreamStatus) -> bool:
    """A backfill window walked to its end: its cursor is gone and its last run went ok."""
    return (
        row.key.stream.startswith(pipeline.BACKFILL)
        and row.cursor_updated_at is None
        and row.outcome == "ok"
    )


STDOUT = Path("-")
EXPORT_COLUMNS = [c for c in store.POST_COLUMNS if c != "raw"] + ["label", "confidence"]


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
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=STDOUT,
    help="File to write (default: standard output).",
)
@click.option("--brand", help="Only this brand (its name in the config).")
@click.option("--platform", type=PlatformName(), help="Only this platform.")
@click.option(
    "--kind", type=click.Choice(KINDS), help="Only posts, replies, mentions or keyword hits."
)
@click.option(
    "--since",
    type=UtcTime(),
    help="Only items created at or after this time (UTC), e.g. 2026-11-01.",
)
@click.option("--raw", is_flag=True, help="Include the raw API JSON of each item.")
@click.option(
    "--formula-guard/--no-formula-guard",
    default=True,
    show_default=True,
    help="CSV only: a cell starting with = + - @, a tab or a carriage return gets a ' in front, "
    "so a spreadsheet shows it as text instead of running it as a formula (post text is "
    "anyone's). --no-formula-guard writes every cell exactly as stored.",
)
@pass_app
def export(
    app: AppContext,
    fmt: str,
    output: Path,
    brand: str | None,
    platform: str | None,
    kind: str | None,
    since: datetime | None,
    raw: bool,
    formula_guard: bool,
) -> None:
    """Export collected posts as CSV or JSON lines, oldest first, each brand post with the
    classifier's label and confidence (empty when not labelled).

    A post that concerns several brands (brand A's post tagging brand B) is a row for each, with
    that brand's kind: A's post, B's mention. In CSV, a cell a spreadsheet would take for a
    formula ("=HYPERLINK(...)", "@acme hi", "-1 for this") starts with a ' (see
    --no-formula-guard). Post text is anyone's: CSV written to a terminal shows control
    characters (escape sequences, bidi overrides) as \\x1b or \\u202e, like ls does; to a file
    or a pipe it is exact. JSON lines always write them as \\u escapes, which any JSON reader
    turns back into the stored text.

    \b
    Example:
        touchpoint export --format jsonl --kind mention -o mentions.jsonl
    """
    if output != STDOUT:
        refuse_store_target(app.db_path(), output, "-o")
    db = app.open_existing()
    check_brand_filter(brand, app.settings_if_any(), store.stored_brands(db))
    rows = store.iter_posts(
        db,
        brand=brand,
        platform=platform,
        kind=kind,
        since=since,
    )
    columns = EXPORT_COLUMNS + (["raw"] if raw else [])
    with _export_stream(output) as stream:
        count = write_rows(rows, columns, fmt, stream, formula_guard=formula_guard)
    click.echo(f"exported {count} posts", err=True)


@contextmanager
def _export_stream(output: Path) -> Iterator[TextIO]:
    """Standard output, or ``output`` written whole (0600: it holds customers' words)."""
    if output == STDOUT:
        yield sys.stdout
        sys.stdout.flush()  # a full disk or a closed pipe is reported here, not lost at exit
        return
    with writing_file(output, "-o") as stream:
        yield stream


def json_line(row: dict[str, Any]) -> str:
    """``row`` as one JSON line: text readable, each terminal control as a ``\\uXXXX`` escape.

    json.dumps escapes C0 itself; DEL, C1 (\\x9b is ESC [), the line separators and the bidi
    controls it leaves raw, and they can only stand inside strings, where \\u keeps it exact."""
    text = json.dumps(row, ensure_ascii=False)
    return CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula: OWASP's
# "CSV injection" list. A leading ' makes the cell text in all three, and is not shown.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_text_cell(value: object) -> object:
    """``value`` with a ' in front if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_cell(value: object, formula_guard: bool, on_terminal: bool) -> object:
    """One CSV cell: made text for a spreadsheet if asked, its controls shown on a terminal."""
    if formula_guard:
        value = as_text_cell(value)
    return visible(value) if on_terminal and isinstance(value, str) else value


def write_rows(
    rows: Iterator[dict[str, Any]],
    columns: list[str],
    fmt: str,
    output: IO[str],
    *,
    formula_guard: bool = True,
) -> int:
    """Write post rows as CSV or JSON lines; return how many were written.

    With ``formula_guard`` (CSV only), cells that would start a spreadsheet formula are made text;
    CSV for a terminal has its control characters escaped (JSON lines always do).
    """
    count = 0
    on_terminal = output.isatty()
    writer = (
        csv.DictWriter(output, fieldnames=columns, extrasaction="ignore") if fmt == "csv" else None
    )
    if writer is not None:
        writer.writeheader()
    for row in rows:
        count += 1
        row = {c: row.get(c) for c in columns}
        if writer is not None:
            writer.writerow({c: csv_cell(v, formula_guard, on_terminal) for c, v in row.items()})
            continue
        for column in ("metrics", "raw"):
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
        row["is_brand"] = bool(row["is_brand"])
        output.write(json_line(row))
    return count
