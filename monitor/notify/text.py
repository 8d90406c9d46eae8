"""Untrusted text made safe to show: one clean line, a clean block, a URL fit to be a link.

Post texts, authors and URLs come from strangers. Whatever format shows them (an alert's plain
text, HTML, Slack or JSON, the digest's email), they first pass through here: control characters
and ANSI escape sequences are removed, so a post cannot recolour a terminal, forge a line in a log
or a mail body, or reorder text with bidi overrides; long texts are cut with :data:`TRUNCATED`;
a link is made only from an ``http`` or ``https`` URL (:func:`safe_url`). The alert messages
(:mod:`monitor.notify.message`) and the digest (:mod:`monitor.digest.render`) both use it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

TRUNCATED = "… [truncated]"
MAX_TEXT = 280
MAX_URL = 2048

# ANSI / VT100 escape sequences: CSI (ESC [ … or the one-byte C1 CSI), OSC (ESC ] … BEL or ST),
# DCS/SOS/PM/APC strings, and two-character escapes.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)
# Bidi embeddings, overrides and isolates ("Trojan Source") and lone UTF-16 surrogates.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters that break a line: CR, LF, VT, FF, FS/GS/RS, NEL, LINE and PARAGRAPH SEPARATOR.
_LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Every remaining C0/C1 control character and DEL (tab handled separately).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SAFE_URL_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no spaces, after IDNA/percent-encoding


def _strip_invisible(text: str) -> str:
    """Remove ANSI sequences, bidi controls and NUL-like controls; fix lone surrogates."""
    text = _ANSI.sub("", text)
    text = _BIDI.sub("", text)
    text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub("", text)


def _prefix(text: str, limit: int) -> str:
    """Bound the work on huge inputs: keep a prefix generous enough for ``limit`` clean chars."""
    return text[: limit * 4 + 64]


def _cut(cleaned: str, limit: int, was_cut: bool) -> str:
    """Truncate ``cleaned`` to ``limit`` characters (marker included) when it is too long."""
    if len(cleaned) <= limit and not was_cut:
        return cleaned
    keep = max(limit - len(TRUNCATED), 0)
    return cleaned[:keep].rstrip() + TRUNCATED


def clean_line(text: str, limit: int = MAX_TEXT) -> str:
    """One line of safe text: line breaks become spaces, controls and escapes are removed.

    The result has no character below U+0020 (nor DEL, C1, U+2028/2029, bidi overrides) and at
    most ``limit`` characters, ending with :data:`TRUNCATED` when the input was longer.
    """
    head = _prefix(text, limit)
    cleaned = _strip_invisible(_LINE_BREAKS.sub(" ", head).replace("\t", " "))
    cleaned = _SPACES.sub(" ", cleaned).strip()
    return _cut(cleaned, limit, len(head) < len(text))


def clean_block(text: str, limit: int = MAX_TEXT) -> str:
    """Safe multi-line text: like :func:`clean_line` but line breaks are kept as ``\\n``."""
    head = _prefix(text, limit)
    cleaned = _strip_invisible(_LINE_BREAKS.sub("\n", head).replace("\t", " "))
    lines = [_SPACES.sub(" ", line).strip() for line in cleaned.split("\n")]
    cleaned = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return _cut(cleaned, limit, len(head) < len(text))


def safe_url(url: str) -> str | None:
    """``url`` if it may become a link: ``http``/``https`` with a host, printable ASCII only."""
    if not url or len(url) > MAX_URL or not _SAFE_URL_CHARS.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url
