"""The daily digest: per brand and day, per channel, what the social team needs to know.

:func:`read_digest` builds the figures (:mod:`.build` is pure, :mod:`.read` queries the store),
:func:`render_html` and :func:`render_text` render them, :func:`send_digest` emails them once per
recipient, and :func:`deliver_due` is what the daemon calls.
"""

from __future__ import annotations

from monitor.digest.build import (
    BrandDigest,
    Period,
    day_period,
    local_yesterday,
    window_period,
)
from monitor.digest.read import read_digest
from monitor.digest.render import render_html, render_text, subject
from monitor.digest.send import (
    SendReport,
    deliver_due,
    digest_mailer,
    send_digest,
    write_digest,
)

__all__ = [
    "BrandDigest",
    "Period",
    "SendReport",
    "day_period",
    "deliver_due",
    "digest_mailer",
    "local_yesterday",
    "read_digest",
    "render_html",
    "render_text",
    "send_digest",
    "subject",
    "window_period",
    "write_digest",
]
