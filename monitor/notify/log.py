"""The log channel: one safe line per message through :mod:`logging`.

Every untrusted value is cleaned (:func:`~monitor.notify.text.clean_line`) and written as a
JSON string (``ensure_ascii``), so post text can neither break the line nor forge a record, even
without the project's log filter (CWE-117).
"""

from __future__ import annotations

import json
import logging

from monitor.notify.base import Channel
from monitor.notify.message import Message
from monitor.notify.text import clean_line

ALERT_LOGGER = "monitor.alerts"
_LEVELS = {"critical": logging.ERROR}


def _quoted(value: str, limit: int) -> str:
    """``value`` cleaned to one line and JSON-quoted (pure ASCII)."""
    return json.dumps(clean_line(value, limit), ensure_ascii=True)


def log_line(message: Message, *, max_items: int = 3, max_text: int = 120) -> str:
    """The line for ``message``: key=value pairs, untrusted values as JSON strings."""
    items = [_quoted(item.text, max_text) for item in message.items[:max_items]]
    fields = [
        f"brand={_quoted(message.brand, 80)}",
        f"kind={_quoted(message.kind, 40)}",
        f"severity={_quoted(message.severity, 20)}",
        f"key={_quoted(message.key, 200)}",
        f"title={_quoted(message.title, 200)}",
        f"items={len(message.items)}",
    ]
    if items:
        fields.append(f"first=[{', '.join(items)}]")
    return "alert " + " ".join(fields)


class LogChannel(Channel):
    """Writes each message as one line to the ``monitor.alerts`` logger (never fails).

    Critical alerts are logged at ERROR, the others at WARNING, so that they show at the CLI's
    default level.
    """

    kind = "log"

    def __init__(self, *, name: str = "log", logger: logging.Logger | None = None) -> None:
        """Log to ``logger`` (default: the ``monitor.alerts`` logger)."""
        self.name = name
        self._logger = logger or logging.getLogger(ALERT_LOGGER)

    def send(self, message: Message) -> None:
        """Log the message's line."""
        level = _LEVELS.get(message.severity, logging.WARNING)
        self._logger.log(level, "%s", log_line(message))
