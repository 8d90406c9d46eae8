"""The alert message model and its safe renderings: plain text, HTML, Slack, webhook JSON, subject.

Every string in a :class:`Message` is treated as untrusted, not only the post text: an item's text,
URL and author come from strangers, and titles are built from them.  Each renderer therefore
neutralises what its output format would interpret:

* **plain text**: control characters and ANSI escape sequences are removed, so a post cannot
  recolour a terminal, forge a line in a log or a mail body, or reorder text with bidi overrides;
* **HTML**: everything is escaped with :func:`html.escape`; a link is made only from an ``http``
  or ``https`` URL; styles are inline (email clients drop ``<style>``);
* **Slack**: ``&``, ``<`` and ``>`` in every text field become ``&amp;``, ``&lt;``, ``&gt;``, so
  no ``<!channel>``, ``<@U123>`` or ``<https://evil|click>`` survives; ``link_names`` and
  ``parse`` are never set;
* **webhook**: a structured JSON document in which untrusted text only appears as JSON strings;
* **email subject**: one line, with CR, LF, U+2028/2029/0085 and every other control removed.

The cleaning itself (``clean_line``, ``clean_block``, ``safe_url``) lives in
:mod:`monitor.notify.text`, which the digest uses too.  Long texts are truncated with
``TRUNCATED``; at most ``max_items`` items are listed, followed by "and K more".  All renderers
are pure functions of the message.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.notify.text import MAX_TEXT, TRUNCATED, clean_block, clean_line, safe_url

SEVERITIES = ("info", "warning", "critical")

MAX_ITEMS = 20
MAX_TITLE = 200
MAX_SUMMARY = 1000
MAX_AUTHOR = 80
MAX_DETAIL = 120
MAX_SUBJECT = 160

_SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")
_SLACK_UNESCAPE = {"amp": "&", "lt": "<", "gt": ">"}


@dataclass(frozen=True)
class AlertItem:
    """One mention, post or stream listed in a message; every field except platform is untrusted.

    ``text`` may contain anything (HTML, Slack markup, CRLF, ANSI escapes, NUL, RTL overrides,
    a megabyte of it); ``url`` becomes a link only when it is ``http`` or ``https``.
    """

    text: str
    url: str
    author: str
    platform: str
    created_at: str
    detail: str = ""


@dataclass(frozen=True)
class Message:
    """One alert message (a group of alerts of one kind for one brand) as a channel delivers it.

    ``key`` is the idempotency key, stable across retries of the same delivery: it becomes the
    webhook ``Idempotency-Key`` and the email ``Message-ID``.
    """

    key: str
    brand: str
    kind: str
    severity: str
    title: str
    summary: str
    items: tuple[AlertItem, ...] = ()
    created_at: str = ""


def _visible_items(message: Message, max_items: int) -> tuple[tuple[AlertItem, ...], int]:
    """The items to list and how many are left out."""
    shown = message.items[: max(max_items, 0)]
    return shown, len(message.items) - len(shown)


def _more(count: int) -> str:
    """The "and K more" line."""
    return f"and {count} more"


def _meta(item: AlertItem) -> str:
    """An item's one-line header: author, platform, time and detail, cleaned."""
    parts = [
        clean_line(item.author, MAX_AUTHOR) or "(unknown)",
        f"on {clean_line(item.platform, 40)}",
    ]
    if item.created_at:
        parts.append(clean_line(item.created_at, 40))
    if item.detail:
        parts.append(clean_line(item.detail, MAX_DETAIL))
    return " · ".join(parts)


def _headline(message: Message) -> str:
    """``[SEVERITY] brand: title`` on one clean line; a title that starts with the brand (as
    the outbox's do, for Slack's header, which shows the title alone) does not get it twice."""
    severity = clean_line(message.severity, 20).upper()
    brand = clean_line(message.brand, 80)
    title = clean_line(message.title, MAX_TITLE)
    return f"[{severity}] {title if title.startswith(f'{brand}: ') else f'{brand}: {title}'}"


# --- plain text ----------------------------------------------------------------------------------


def render_text(message: Message, *, max_items: int = MAX_ITEMS, max_text: int = MAX_TEXT) -> str:
    """The plain-text body: headline, summary, numbered items, then "and K more"."""
    lines = [_headline(message)]
    summary = clean_block(message.summary, MAX_SUMMARY)
    if summary:
        lines += ["", summary]
    shown, more = _visible_items(message, max_items)
    for number, item in enumerate(shown, 1):
        lines += ["", f"{number}. {_meta(item)}"]
        lines += [f"   {line}" for line in clean_block(item.text, max_text).split("\n") if line]
        url = safe_url(item.url)
        if url:
            lines.append(f"   {url}")
    if more:
        lines += ["", _more(more)]
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

_COLORS = {"info": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}
_BODY = "margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#111827;"
_BOX = "max-width:640px;margin:0 auto;"
_ITEM = "margin:12px 0;padding:8px 12px;border-left:3px solid #d1d5db;background:#f9fafb;"
_META = "font-size:12px;color:#4b5563;margin:0 0 4px 0;"
_TEXT = "font-size:14px;margin:0;white-space:normal;word-wrap:break-word;"
_LINK = "font-size:12px;color:#2563eb;"


def _esc(text: str) -> str:
    """HTML-escape text (quotes included) and keep its line breaks as ``<br>``."""
    return html.escape(text, quote=True).replace("\n", "<br>\n")


def _html_item(item: AlertItem, max_text: int) -> str:
    """One item as an inline-styled ``<div>``; a link only for an http(s) URL."""
    parts = [
        f'<div style="{_ITEM}">',
        f'<p style="{_META}">{_esc(_meta(item))}</p>',
        f'<p style="{_TEXT}">{_esc(clean_block(item.text, max_text))}</p>',
    ]
    url = safe_url(item.url)
    if url:
        href = html.escape(url, quote=True)
        parts.append(f'<p style="{_META}"><a href="{href}" style="{_LINK}">open</a></p>')
    parts.append("</div>")
    return "\n".join(parts)


def render_html(message: Message, *, max_items: int = MAX_ITEMS, max_text: int = MAX_TEXT) -> str:
    """An email-safe HTML document: every value escaped, inline styles only, no scripts."""
    color = _COLORS.get(message.severity, "#4b5563")
    shown, more = _visible_items(message, max_items)
    parts = [
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>',
        f'<body style="{_BODY}"><div style="{_BOX}">',
        f'<h2 style="margin:0 0 8px 0;font-size:18px;border-left:4px solid {color};'
        f'padding-left:8px;">{_esc(_headline(message))}</h2>',
    ]
    summary = clean_block(message.summary, MAX_SUMMARY)
    if summary:
        parts.append(f'<p style="{_TEXT}">{_esc(summary)}</p>')
    parts += [_html_item(item, max_text) for item in shown]
    if more:
        parts.append(f'<p style="{_META}">{_esc(_more(more))}</p>')
    parts.append("</div></body></html>\n")
    return "\n".join(parts)


# --- Slack ---------------------------------------------------------------------------------------

SLACK_MAX_ITEMS = 40  # Slack allows 50 blocks per message
SLACK_HEADER = 150  # a header block's plain_text limit
SLACK_SECTION = 3000  # a section's text limit
SLACK_FALLBACK = 300
SLACK_ITEM_TEXT = 2000  # escaped characters of one item's text (its meta line and link fit too)


def slack_escape(text: str) -> str:
    """Escape Slack's control characters: ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``.

    Only these three are encoded, as Slack's formatting reference asks; the output contains no
    ``<`` or ``>``, so no mention, broadcast or ``<url|label>`` link can be formed from it.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_unescape(text: str) -> str:
    """The inverse of :func:`slack_escape` (single pass, so ``&amp;lt;`` gives ``&lt;``)."""
    return _SLACK_ENTITY.sub(lambda m: _SLACK_UNESCAPE[m.group(1)], text)


def _fit(
    text: str,
    limit: int,
    clean: Callable[[str, int], str] = clean_line,
    budget: int | None = None,
) -> str:
    """Clean ``text`` to ``budget`` characters (default ``limit``) and Slack-escape it.

    Cuts further when needed, so that the escaped form has at most ``limit`` characters.
    """
    budget = min(budget or limit, limit)
    while budget > len(TRUNCATED):
        escaped = slack_escape(clean(text, budget))
        if len(escaped) <= limit:
            return escaped
        budget = min(budget - 1, budget * limit // len(escaped))
    return TRUNCATED[:limit]


def _slack_link(url: str) -> str | None:
    """A ``<url|open>`` link for an http(s) URL whose characters cannot break the link syntax."""
    safe = safe_url(url)
    if safe is None:
        return None
    encoded = safe.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{slack_escape(encoded)}|open>"


def _mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object that Slack takes verbatim: no automatic parsing, so a bare URL, a
    channel name or an @here/@channel in post text stays text (only our own <url|open> links)."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _slack_item(item: AlertItem, max_text: int) -> dict[str, Any]:
    """One item as a mrkdwn section: escaped meta line, escaped text, optional safe link."""
    body = _fit(item.text, SLACK_ITEM_TEXT, clean_block, budget=max_text)
    text = f"*{_fit(_meta(item), 600)}*\n{body}"
    link = _slack_link(item.url)
    if link and len(text) + len(link) + 1 <= SLACK_SECTION:
        text = f"{text}\n{link}"
    return {"type": "section", "text": _mrkdwn(text[:SLACK_SECTION])}


def render_slack(
    message: Message, *, max_items: int = MAX_ITEMS, max_text: int = MAX_TEXT
) -> dict[str, Any]:
    """A Slack incoming-webhook payload: an escaped ``text`` fallback and Block Kit ``blocks``.

    ``link_names`` and ``parse`` are never set; link unfurling is off so that Slack does not
    fetch previews of attacker-chosen URLs.
    """
    shown, more = _visible_items(message, min(max_items, SLACK_MAX_ITEMS))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _fit(message.title, SLACK_HEADER) or "alert",
                "emoji": False,
            },
        },
        {
            "type": "context",
            "elements": [_mrkdwn(_fit(_headline(message), 300))],
        },
    ]
    summary = _fit(message.summary, SLACK_SECTION, clean_block)
    if summary:
        blocks.append({"type": "section", "text": _mrkdwn(summary)})
    if shown:
        blocks.append({"type": "divider"})
    blocks += [_slack_item(item, max_text) for item in shown]
    if more:
        blocks.append({"type": "context", "elements": [_mrkdwn(_more(more))]})
    fallback = _fit(_headline(message), SLACK_FALLBACK)
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


# --- webhook JSON --------------------------------------------------------------------------------

WEBHOOK_MAX_ITEMS = 100
WEBHOOK_MAX_TEXT = 2000
WEBHOOK_VERSION = 1


def _webhook_item(item: AlertItem, max_text: int) -> dict[str, Any]:
    """One item as a JSON object; ``url`` is null unless it is http(s)."""
    return {
        "text": clean_block(item.text, max_text),
        "url": safe_url(item.url),
        "author": clean_line(item.author, MAX_AUTHOR),
        "platform": clean_line(item.platform, 40),
        "created_at": clean_line(item.created_at, 40),
        "detail": clean_line(item.detail, MAX_DETAIL),
    }


def render_webhook(
    message: Message,
    *,
    max_items: int = WEBHOOK_MAX_ITEMS,
    max_text: int = WEBHOOK_MAX_TEXT,
) -> dict[str, Any]:
    """A structured JSON document for a generic webhook; untrusted text only as JSON strings.

    Control characters and ANSI escapes are removed from the strings (line breaks kept in item
    texts), so a receiver that logs a field cannot be tricked into forging log lines.
    """
    shown, more = _visible_items(message, max_items)
    return {
        "version": WEBHOOK_VERSION,
        "key": clean_line(message.key, 200),
        "brand": clean_line(message.brand, 80),
        "kind": clean_line(message.kind, 40),
        "severity": clean_line(message.severity, 20),
        "title": clean_line(message.title, MAX_TITLE),
        "summary": clean_block(message.summary, MAX_SUMMARY),
        "created_at": clean_line(message.created_at, 40),
        "items": [_webhook_item(item, max_text) for item in shown],
        "items_total": len(message.items),
        "items_omitted": more,
    }


# --- email subject -------------------------------------------------------------------------------


def email_subject(message: Message, *, limit: int = MAX_SUBJECT) -> str:
    """A one-line subject: ``[touchpoint] [SEVERITY] brand: title``, no controls, capped."""
    return clean_line(f"[touchpoint] {_headline(message)}", limit)


def make_test_message(channel: str, *, now: str, brand: str = "touchpoint") -> Message:
    """The message ``touchpoint alerts test --channel NAME`` sends (``now``: ISO-8601 UTC)."""
    return Message(
        key=f"test:{clean_line(channel, 80)}:{clean_line(now, 40)}",
        brand=brand,
        kind="test",
        severity="info",
        title=f"Test message for channel {channel}",
        summary="If you can read this, touchpoint can deliver alerts through this channel.",
        created_at=now,
    )
