"""Render a :class:`~monitor.digest.build.BrandDigest` as an email-safe HTML page and plain text.

Jinja2 templates under ``templates/``; ``.html`` ones are autoescaped, and every untrusted string
(post text, author, URL) goes through a filter that removes control characters and bidi overrides
first (:func:`~monitor.notify.text.clean_line`); a link is made only from an http(s) URL.

The content-mix chart is a stacked bar made of table cells (width and background colour), so it
shows in every email client, with images blocked too, and in a browser; the text version draws
the same bars with letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import jinja2

from monitor.digest.build import LABELS, BrandDigest, Change, Mix
from monitor.notify.text import clean_line, safe_url

COLORS = {"engaging": "#2563eb", "inspiring": "#16a34a", "sales-pitch": "#dc2626"}
LETTERS = {"engaging": "E", "inspiring": "I", "sales-pitch": "S"}
TEXT_BAR = 30
MAX_MENTION_TEXT = 280


@dataclass(frozen=True)
class Segment:
    """One label's part of a chart bar."""

    label: str
    count: int
    share: float
    width: int  # percent of the bar, the widths of a bar adding up to 100
    color: str


def segments(mix: Mix) -> list[Segment]:
    """The bar of ``mix``: one segment per label present, widths by the largest remainder."""
    if not mix.labelled:
        return []
    shares = {label: mix.count(label) / mix.labelled for label in LABELS}
    widths = {label: int(shares[label] * 100) for label in LABELS}
    by_remainder = sorted(LABELS, key=lambda lb: shares[lb] * 100 - widths[lb], reverse=True)
    for label in by_remainder[: 100 - sum(widths.values())]:
        widths[label] += 1
    return [
        Segment(label, mix.count(label), shares[label], widths[label], COLORS[label])
        for label in LABELS
        if mix.count(label)
    ]


def text_bar(mix: Mix, width: int = TEXT_BAR) -> str:
    """The bar of ``mix`` in letters (E, I, S), ``width`` characters between brackets."""
    parts = segments(mix)
    if not parts:
        return "[" + "." * width + "]"
    bar, done, edge = "", 0, 0
    for part in parts:  # cumulative edges, so the cells add up to ``width`` exactly
        done += part.count
        end = int(done * width / mix.labelled + 0.5)
        bar += LETTERS[part.label] * (end - edge)
        edge = end
    return f"[{bar}]"


def percent(value: float | None) -> str:
    """``71%``, or ``–`` when unknown."""
    return "–" if value is None else f"{value:.0%}"


def duration(value: timedelta | float | None) -> str:
    """``45 s``, ``32 min``, ``6 h 12 min``, ``2 d 3 h``; ``–`` when unknown."""
    if value is None:
        return "–"
    seconds = int(round(value.total_seconds() if isinstance(value, timedelta) else value))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def change(item: Change) -> str:
    """How a figure moved: ``+4``, ``−5 pts``, ``+3 min``, ``±0``; ``new`` or ``–``."""
    delta = item.delta
    if delta is None:
        return "new" if item.current is not None and item.previous is None else "–"
    if abs(delta) < 1e-9:
        return "±0"
    sign = "+" if delta > 0 else "−"
    if item.metric.endswith("_share"):
        return f"{sign}{abs(delta) * 100:.0f} pts"
    if item.metric.endswith("_response"):
        return f"{sign}{duration(abs(delta))}"
    return f"{sign}{abs(delta):g}"


def untrusted(text: str | None, limit: int = MAX_MENTION_TEXT) -> str:
    """Untrusted text on one line: controls, escapes and bidi overrides removed, capped."""
    return clean_line(text or "", limit)


def link(url: str | None) -> str | None:
    """``url`` when it is a plain http(s) URL, else None (no ``javascript:`` link is ever made)."""
    return safe_url(url or "")


@cache
def environment() -> jinja2.Environment:
    """The template environment: autoescape for ``.html``, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.digest", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        percent=percent,
        duration=duration,
        change=change,
        untrusted=untrusted,
        link=link,
        text_bar=text_bar,
        segments=segments,
    )
    return env


def _local(digest: BrandDigest) -> object:
    zone = ZoneInfo(digest.timezone)

    def local(when: datetime) -> str:
        return when.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return local


def _context(digest: BrandDigest) -> dict[str, object]:
    changes = {c.metric: c for c in digest.changes}
    return {
        "d": digest,
        "c": changes,
        "labels": LABELS,
        "colors": COLORS,
        "local": _local(digest),
        "waited": lambda when: duration(digest.as_of - when),
        "now_label": digest.as_of.astimezone(ZoneInfo(digest.timezone)).strftime(
            "%Y-%m-%d %H:%M %Z"
        ),
    }


def render_html(digest: BrandDigest) -> str:
    """The digest as a self-contained, email-safe HTML document (inline styles, tables)."""
    return environment().get_template("digest.html").render(_context(digest))


def render_text(digest: BrandDigest) -> str:
    """The digest as plain text (the email's text part, and what the CLI prints)."""
    return environment().get_template("digest.txt").render(_context(digest))


def subject(digest: BrandDigest) -> str:
    """The email subject: one clean line."""
    missing = ", ".join(c.platform for c in digest.incomplete)
    incomplete = f", collection incomplete on {missing}" if missing else ""
    channels = "channel" if digest.alive == 1 else "channels"
    alive = f", only {digest.alive} {channels} alive" if digest.too_few_touchpoints else ""
    waiting = f", {digest.unanswered_total} unanswered" if digest.unanswered_total else ""
    return clean_line(
        f"[touchpoint] {digest.brand} digest for {digest.period.label}{incomplete}{waiting}{alive}",
        160,
    )
