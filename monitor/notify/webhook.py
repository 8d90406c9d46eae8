"""Generic JSON webhook: a structured body, an idempotency key and an HMAC signature.

Headers on every attempt:

* ``Idempotency-Key``: the message key (stable across retries of one delivery);
* ``X-Touchpoint-Timestamp``: Unix seconds at the attempt;
* ``X-Touchpoint-Signature``: ``sha256=<hex>``, the HMAC-SHA256 with the shared secret of
  ``<timestamp>.<raw body>``; so the timestamp is signed too, and a receiver should refuse
  a timestamp too far from its clock (replay).  :func:`verify_signature` shows the check.

The body (:func:`~monitor.notify.message.render_webhook`) is the same bytes on every retry.
"""

from __future__ import annotations

import hmac
import ssl

from monitor import clock
from monitor.logs import register_secret
from monitor.notify.http import (
    HttpChannel,
    header_key,
    json_body,
    post_json,
)
from monitor.notify.message import WEBHOOK_MAX_ITEMS, WEBHOOK_MAX_TEXT, Message, render_webhook
from monitor.notify.urlguard import Resolver

SIGNATURE_HEADER = "X-Touchpoint-Signature"
TIMESTAMP_HEADER = "X-Touchpoint-Timestamp"
SIGNATURE_TOLERANCE = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Receiver-side check: the signature matches and the timestamp is within ``tolerance``."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    current = clock.timestamp() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel(HttpChannel):
    """Posts alert messages as signed JSON to a generic webhook (one attempt per :meth:`send`)."""

    kind = "webhook"

    def __init__(
        self,
        *,
        url: str,
        secret: str | None = None,
        secret_url: bool = False,
        timeout: float = 10.0,
        allow_private: bool = False,
        allow_http: bool | None = None,
        name: str = "webhook",
        max_items: int = WEBHOOK_MAX_ITEMS,
        max_text: int = WEBHOOK_MAX_TEXT,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Check the URL's form now (no DNS); ``allow_http`` defaults to ``allow_private``.

        ``secret_url``: the URL itself is a secret (a token in its path, as Discord's and Teams'
        have), so the logs mask its whole path as they do Slack's."""
        if secret is not None:
            if not secret:
                raise ValueError("webhook secret is empty")
            register_secret(secret)
        self._secret = secret
        self._configure(
            name=name,
            url=url,
            timeout=timeout,
            allow_private=allow_private,
            allow_http=allow_http,
            max_items=max_items,
            max_text=max_text,
            resolver=resolver,
            ssl_context=ssl_context,
            secret_path=secret_url,
        )

    def send(self, message: Message) -> None:
        """POST the signed JSON body once."""
        payload = render_webhook(message, max_items=self.max_items, max_text=self.max_text)
        body = json_body(payload)
        timestamp = str(int(clock.timestamp()))
        headers = {"Idempotency-Key": header_key(message.key), TIMESTAMP_HEADER: timestamp}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        post_json(self._target, body, headers)
