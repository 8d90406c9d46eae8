"""Slack incoming webhook: a Block Kit message with every untrusted text field escaped.

The payload comes from :func:`~monitor.notify.message.render_slack` (``&``, ``<``, ``>`` escaped
in the ``text`` fallback and in every block; no ``link_names``, no ``parse``; no unfurling).  The
webhook URL's path is its secret: it is registered with the log filter and never appears in an
error message.  Slack has no idempotency key; the ``Idempotency-Key`` header is sent anyway (Slack
ignores it; Slack-compatible receivers may use it).
"""

from __future__ import annotations

import ssl

from monitor.notify.http import (
    HttpChannel,
    header_key,
    json_body,
    post_json,
)
from monitor.notify.message import MAX_ITEMS, Message, render_slack
from monitor.notify.text import MAX_TEXT
from monitor.notify.urlguard import Resolver


class SlackChannel(HttpChannel):
    """Posts alert messages to a Slack incoming webhook (one attempt per :meth:`send`)."""

    kind = "slack"
    min_interval_seconds = 1.0  # Slack's incoming webhooks: one message a second

    def __init__(
        self,
        *,
        webhook_url: str,
        timeout: float = 10.0,
        allow_private: bool = False,
        allow_http: bool | None = None,
        name: str = "slack",
        max_items: int = MAX_ITEMS,
        max_text: int = MAX_TEXT,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Check the URL's form now (no DNS); ``allow_http`` defaults to ``allow_private``."""
        self._configure(
            name=name,
            url=webhook_url,
            timeout=timeout,
            allow_private=allow_private,
            allow_http=allow_http,
            max_items=max_items,
            max_text=max_text,
            resolver=resolver,
            ssl_context=ssl_context,
            secret_path=True,
        )

    def send(self, message: Message) -> None:
        """POST the rendered message once."""
        payload = render_slack(message, max_items=self.max_items, max_text=self.max_text)
        post_json(self._target, json_body(payload), {"Idempotency-Key": header_key(message.key)})
