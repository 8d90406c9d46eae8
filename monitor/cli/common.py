"""Reporting helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import click

from monitor import pipeline, store
from monitor.models import parse_iso


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
