"""Reporting helpers shared by the command modules."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click
from sqlite_utils import Database

from monitor import files, pipeline, store
from monitor.alerts import rules
from monitor.alerts.outbox import stream_health
from monitor.cli.app import OUTPUT_FULL
from monitor.config import Settings
from monitor.models import StreamKey, iso, parse_iso


def program() -> str:
    """How to run touchpoint again, as a shell would take it: ``touchpoint`` when that name on
    PATH is the program running now, else the path it was started by (``.venv/bin/touchpoint``
    when the environment is not activated), or ``python -m monitor``."""
    started = sys.argv[0]
    if started.endswith("__main__.py"):
        return f"{shlex.quote(sys.executable)} -m monitor"
    found = shutil.which("touchpoint")
    if found and Path(found).resolve() == Path(started).resolve():
        return "touchpoint"
    return shlex.quote(started)


def refuse_store_target(db_path: Path | None, target: Path, option: str) -> None:
    """One clear error, before anything is written, when ``option`` names the database at
    ``db_path`` (None: no config says where it is) or one of its files, or any SQLite database:
    a typo or tab completion would otherwise overwrite it."""
    what = f"{option} writing there"
    try:
        if db_path is not None:
            store.refuse_store_file(db_path, target, what)
        store.refuse_database_file(target, what)
    except store.StoreError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def file_errors(target: Path, option: str) -> Iterator[None]:
    """A file that cannot be written (no such folder, no right) is one clear error naming
    ``target`` and ``option``; a full or read-only disk is the group's error."""
    try:
        yield
    except OSError as exc:
        if exc.errno in OUTPUT_FULL:
            raise
        raise click.ClickException(
            f"cannot write {target} ({exc.strerror or exc}). Fix: give {option} a file in a "
            "folder you may write"
        ) from None


@contextlib.contextmanager
def writing_file(target: Path, option: str, *, mode: int = files.PRIVATE) -> Iterator[TextIO]:
    """A handle that writes ``target`` whole (:func:`monitor.files.replacing`), so the old file
    stays as it was if anything fails; errors as :func:`file_errors` gives them."""
    with file_errors(target, option), files.replacing(target, mode=mode) as handle:
        yield handle


def write_file(target: Path, text: str, option: str, *, mode: int = files.PRIVATE) -> None:
    """Write ``text`` to ``target`` whole, as :func:`writing_file` does."""
    with writing_file(target, option, mode=mode) as handle:
        handle.write(text)


class UtcTime(click.DateTime):
    """A date or an ISO-8601 time, read as UTC unless it carries an offset: 2026-11-01,
    2026-11-01T12:00, 2026-11-01 12:00:00, 2026-11-01T12:00:00Z (as export writes it) or
    2026-11-01T13:00+01:00. The value is an aware UTC datetime."""

    name = "time"

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:  # click.DateTime lists formats
        return "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return parse_iso(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not a date or time. Fix: write it as 2026-11-01, "
                "2026-11-01T12:00 or 2026-11-01T12:00:00Z (UTC unless an offset is given)",
                param,
                ctx,
            )


class Day(click.ParamType[date, Any]):
    """A calendar day, 2026-11-22; the value is a :class:`datetime.date` from 1970 to 9998 (a
    day further out has no day before or after it that Python can hold)."""

    name = "day"
    first, last = date(1970, 1, 1), date(9998, 12, 31)

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, date):
            return value
        try:
            day = date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a day. Fix: write it as 2026-11-22", param, ctx)
        if not self.first <= day <= self.last:
            self.fail(
                f"{day} is out of range. Fix: give a day from {self.first} to {self.last}",
                param,
                ctx,
            )
        return day


class RowId(click.IntRange):
    """A positive whole number that SQLite can hold as an id (an alert's, say)."""

    name = "id"

    def __init__(self, what: str, listed_by: str) -> None:
        super().__init__(1, 2**63 - 1)
        self.what, self.listed_by = what, listed_by

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(
                f"{value!r} is not {self.what} id. Fix: use a number that `{self.listed_by}` shows",
                param,
                ctx,
            )


def check_brand_filter(brand: str | None, settings: Settings | None, stored: set[str]) -> None:
    """Refuse a --brand that neither the config nor the store knows (a typo would otherwise
    read as "nothing there"), naming the known ones."""
    known = stored | {b.name for b in settings.brands} if settings else stored
    if brand is not None and brand not in known:
        names = ", ".join(sorted(known)) or "(none yet)"
        raise click.ClickException(
            f"no brand {brand!r} in the config or the database. Fix: use one of: {names}"
        )


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


def render_status(
    rows: Sequence[store.StreamStatus], now: datetime, health: Mapping[StreamKey, str] | None = None
) -> str:
    """Render the stream status table as text; ``health`` from :func:`health_cells`."""
    if not rows:
        return "no stream has run yet: run `touchpoint collect`"
    header = ("STREAM", "LAST RUN", "OUTCOME", "NEW", "LAG (LAST OK)", "FAILS", "HEALTH")
    lines = [(*header, "LAST ERROR")]
    for r in rows:
        lines.append(
            (
                str(r.key),
                _age(r.last_run_at, now) + " ago" if r.last_run_at else "never",
                r.outcome or "-",
                str(r.items_new),
                _age(r.last_success_at, now) if r.last_success_at else "never ok",
                str(r.consecutive_failures),
                (health or {}).get(r.key, "-"),
                (r.last_error or "-")[:70],
            )
        )
    return render_table(lines)


def render_table(lines: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """Lines of cells as columns two spaces apart, each as wide as its widest cell (the last
    column is not padded); the columns numbered in ``right`` are aligned right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return "\n".join(
        "  ".join(
            [
                *(
                    c.rjust(w) if i in right else c.ljust(w)
                    for i, (c, w) in enumerate(zip(line, widths, strict=False))
                ),
                line[-1],
            ]
        )
        for line in lines
    )


def render_service(db: Database, now: datetime, *, wal_alert_megabytes: float) -> str:
    """touchpoint itself, as the service rule and the watchdog see it: the classifier's last
    passes, the daemon's restarts after unclean stops, the WAL's size, and the alert outbox
    (messages due and not sent: is `touchpoint run` delivering?)."""
    classifier = store.get_classifier_status(db)
    if classifier is None:
        state = "no pass recorded yet"
    elif classifier.failures == 0:
        state = f"ok (last pass {_age(iso(classifier.at), now)} ago)"
    else:
        since = classifier.failing_since or classifier.at
        state = (
            f"FAILING, {classifier.failures} passes in a row since "
            f"{_age(iso(since), now)} ago: {(classifier.error or '-')[:200]}"
        )
    lines = [f"classifier: {state}"]
    recent = [t for t in store.restarts_after_crash(db) if now - t <= timedelta(days=1)]
    if recent:
        lines.append(
            f"restarts after an unclean stop: {len(recent)} in the last day, the latest "
            f"{_age(iso(recent[-1]), now)} ago"
        )
    wal = store.wal_bytes(db) / 2**20
    over = " (over the alert limit)" if wal > wal_alert_megabytes else ""
    lines.append(f"write-ahead log: {wal:.1f} MB{over}")
    counts = store.count_deliveries(db)
    due = store.overdue_deliveries(db, due_before=now)
    late = ""
    if due.oldest_due is not None:  # due and not sent: is a `touchpoint run` delivering?
        late = f" ({due.count} due, the oldest for {_age(iso(due.oldest_due), now)})"
    lines.append(
        f"alert outbox: {counts.get('pending', 0)} waiting{late}, "
        f"{counts.get('sent', 0)} sent, {counts.get('dead', 0)} given up"
    )
    return "\n".join(lines)


def health_cells(
    rows: Sequence[store.StreamStatus],
    settings: Settings,
    now: datetime,
    planned: Collection[StreamKey],
) -> dict[StreamKey, str]:
    """Each configured stream's health by the alert rules (refused, failing, stale), else "not
    collected" when the collector leaves it out (its last error says why), else "overdue" when
    no run started for two intervals (is `touchpoint run` running?), else "ok". ``planned``:
    :func:`monitor.platforms.streams.planned_streams`; a stream not in it gets no cell."""
    policies = {b.name: b.alerts for b in settings.brands}
    slack = settings.daemon.max_jitter_seconds
    cells: dict[StreamKey, str] = {}
    for r in rows:
        h = stream_health(r, settings, planned)
        if h is None:
            continue
        problem = rules.health_problem(h, now=now, policy=policies[h.brand])
        waiting = r.retry_at is not None and parse_iso(r.retry_at) > now  # deferred on purpose
        last = h.last_run_at
        late = last is not None and (now - last).total_seconds() > 2 * h.interval_seconds + slack
        if problem:
            cells[r.key] = f"{problem[0]}: {problem[1]}"
        elif r.outcome == "skipped":  # only a stream the collector leaves out has no other run
            cells[r.key] = "not collected"
        elif late and not waiting:
            cells[r.key] = f"overdue (runs every {_age_seconds(h.interval_seconds)})"
        else:
            cells[r.key] = "ok"
    return cells


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    return _age_seconds(int((now - parse_iso(stamp)).total_seconds()))


def _age_seconds(seconds: int) -> str:
    seconds = max(0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
