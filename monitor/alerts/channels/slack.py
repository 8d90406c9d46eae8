"""Slack incoming webhook: a Block Kit message with every untrusted text field escaped.

The payload comes from :func:`~monitor.alerts.message.render_slack` (``&``, ``<``, ``>`` escaped
in the ``text`` fallback and in every block; no ``link_names``, no ``parse``; no unfurling).  The
webhook URL's path is its secret: it is registered with the log filter and never appears in an
error message.  Slack has no idempotency key; the ``Idempotency-Key`` header is sent anyway (Slack
ignores it; Slack-compatible receivers may use it).
"""

from __future__ import annotations

import ssl

from monitor.alerts.channels.base import Channel
from monitor.alerts.channels.http import (
    Target,
    header_key,
    json_body,
    post_json,
    register_url_secrets,
)
from monitor.alerts.channels.urlguard import Resolver, parse_url
from monitor.alerts.message import MAX_ITEMS, MAX_TEXT, Message, render_slack


class SlackChannel(Channel):
    """Posts alert messages to a Slack incoming webhook (one attempt per :meth:`send`)."""

    kind = "slack"

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
        register_url_secrets(webhook_url, whole_path=True)
        http_ok = allow_private if allow_http is None else allow_http
        parse_url(webhook_url, allow_http=http_ok)
        self.name = name
        self.max_items = max_items
        self.max_text = max_text
        self._target = Target(
            name=name,
            url=webhook_url,
            timeout=timeout,
            allow_private=allow_private,
            allow_http=http_ok,
            resolver=resolver,
            ssl_context=ssl_context,
        )

    def validate(self) -> None:
        """Resolve and check the webhook URL (refuses private destinations unless allowed)."""
        self._target.check()

    def send(self, message: Message) -> None:
        """POST the rendered message once."""
        payload = render_slack(message, max_items=self.max_items, max_text=self.max_text)
        post_json(self._target, json_body(payload), {"Idempotency-Key": header_key(message.key)})
