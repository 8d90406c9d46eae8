"""The channel interface: one delivery attempt per call, failures classified for the outbox.

The outbox (not the channel) schedules retries.  A channel makes exactly one attempt in
:meth:`Channel.send` and either returns (delivered) or raises :class:`DeliveryError`, saying
whether a later attempt may succeed (``retryable``) and, for HTTP 429/503, how long to wait
(``retry_after``, seconds).

Classification:

* retryable: timeouts, connection and TLS errors (an unverifiable certificate included: it may be
  renewed), DNS failures, HTTP 5xx, 408, 425 and 429, SMTP 4xx replies;
* permanent: other HTTP 4xx, redirects (never followed), SMTP 5xx, refused URLs, bad config.

Error messages never contain secrets: no password, no webhook path or query (a Slack webhook URL
carries its secret in the path), no signature; original exceptions are not chained, because their
text may include the request URL.
"""

from __future__ import annotations

import email.utils
from abc import ABC, abstractmethod
from datetime import UTC, datetime

from monitor import clock
from monitor.logs import redact
from monitor.notify.message import Message
from monitor.notify.text import clean_line

MAX_RETRY_AFTER = 86400.0
MAX_ERROR_TEXT = 300


class DeliveryError(Exception):
    """One delivery attempt failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(clean_line(redact(message), MAX_ERROR_TEXT))
        self.retryable = retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"DeliveryError({str(self)!r}, retryable={self.retryable}, "
            f"retry_after={self.retry_after})"
        )


class Channel(ABC):
    """A destination for alert messages (email, Slack, a webhook, the log)."""

    name: str
    kind: str = ""
    min_interval_seconds: float = 0.0  # the receiver's rate limit: at most one send per this

    @abstractmethod
    def send(self, message: Message) -> None:
        """Make one delivery attempt; raise :class:`DeliveryError` if it did not succeed."""

    def validate(self) -> None:  # noqa: B027 - optional hook, nothing to check by default
        """Check the configuration without sending (raise ``ValueError`` when it is unusable)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped at a day.

    Returns ``None`` when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.fromtimestamp(clock.timestamp() if now is None else now, UTC)
        seconds = (when - current).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
