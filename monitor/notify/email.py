"""Email over SMTP: a multipart/alternative message (text + HTML), one attempt per send.

* Every socket operation has a timeout (``smtplib`` blocks forever without one).
* ``security``: ``"starttls"`` (refuses a server that does not offer STARTTLS: no silent
  downgrade), ``"ssl"`` (implicit TLS) or ``"none"``; credentials are never sent in clear text to
  a host other than loopback.
* The envelope recipients are the configured ones, passed explicitly to ``send_message``; nothing
  in a header can add a recipient.  The subject comes from
  :func:`~monitor.notify.message.email_subject` (one line, controls removed, capped), and the
  ``email`` package (``policy=SMTP``) refuses CR/LF in any header value as a second line of
  defence.
* ``Message-ID`` is derived from the message key, so every retry of one delivery carries the same
  id and a receiver can drop a duplicate.
* Replies are classified: SMTP 4xx, timeouts, connection and TLS errors (a certificate that does
  not verify included: it may be renewed) are retryable; 5xx replies are permanent.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Literal

from monitor import clock
from monitor.logs import register_secret
from monitor.notify.base import Channel, DeliveryError
from monitor.notify.message import MAX_ITEMS, Message, email_subject, render_html, render_text
from monitor.notify.text import MAX_TEXT

logger = logging.getLogger(__name__)

Security = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "ssl": 465, "none": 25}
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_FALLBACK_DOMAIN = "touchpoint.local"
# What one attempt can fail with: SMTP replies, sockets/TLS/timeouts, unencodable addresses.
_FAILURES = (smtplib.SMTPException, OSError, ValueError)


def _address(value: str, what: str) -> str:
    """A plain ``local@domain`` address, or ``ValueError`` (no display names, no controls)."""
    if not value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value) or "@" not in value:
        raise ValueError(f"{what} must be a plain address like alerts@example.com")
    try:
        Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError(f"{what} must be a plain address like alerts@example.com") from None
    return value


def _valid_host(host: str) -> bool:
    """A host name or an IP literal (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(host) and _HOSTNAME.fullmatch(host) is not None
    return True


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def message_id(key: str, sender: str) -> str:
    """A ``Message-ID`` that depends only on the key and the sender's domain."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    domain = sender.rpartition("@")[2]
    if not _HOSTNAME.fullmatch(domain):
        domain = _FALLBACK_DOMAIN
    return f"<tp.{digest}@{domain}>"


def _local_hostname() -> str:
    """The EHLO name: this host's name when it is a plain hostname (no slow ``getfqdn``)."""
    name = socket.gethostname()
    return name if _HOSTNAME.fullmatch(name) else "localhost"


def _reply_text(raw: bytes | str) -> str:
    """An SMTP reply's text, decoded."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _is_temporary(code: int) -> bool:
    """SMTP 4xx: try again later."""
    return 400 <= code < 500


class EmailChannel(Channel):
    """Sends alert messages by SMTP to a fixed list of recipients."""

    kind = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        sender: str,
        recipients: Sequence[str],
        timeout: float = 10.0,
        name: str = "email",
        max_items: int = MAX_ITEMS,
        max_text: int = MAX_TEXT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Validate the settings (no network); ``port`` defaults to 587, 465 or 25."""
        if password:
            register_secret(password)
        if security not in DEFAULT_PORTS:
            raise ValueError("security must be 'starttls', 'ssl' or 'none'")
        if not _valid_host(host):
            raise ValueError("host must be a host name or an IP address")
        if isinstance(recipients, str) or not recipients:
            raise ValueError("recipients must be a non-empty list of addresses")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if username is not None and security == "none" and not _is_loopback(host):
            raise ValueError("refusing to send SMTP credentials without TLS; use starttls or ssl")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security: Security = security
        self.sender = _address(sender, "sender")
        self.recipients = tuple(_address(r, "recipient") for r in recipients)
        self.timeout = timeout
        self.max_items = max_items
        self.max_text = max_text
        self._username = username
        self._password = password
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r}, host={self.host!r}, port={self.port})"

    # --- building ----------------------------------------------------------------------------

    def build(self, message: Message, *, now: datetime | None = None) -> EmailMessage:
        """The email for ``message``: safe subject, stable Message-ID, text and HTML parts."""
        mail = EmailMessage(policy=email.policy.SMTP)
        mail["Subject"] = email_subject(message)
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = email.utils.format_datetime(now or clock.now())
        mail["Message-ID"] = message_id(message.key, self.sender)
        mail["Auto-Submitted"] = "auto-generated"
        mail["X-Auto-Response-Suppress"] = "All"
        mail.set_content(render_text(message, max_items=self.max_items, max_text=self.max_text))
        html = render_html(message, max_items=self.max_items, max_text=self.max_text)
        mail.add_alternative(html, subtype="html")
        return mail

    # --- sending -----------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        """The TLS context: the configured one, else the system's default (verifying)."""
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        """Open the connection (implicit TLS for ``ssl``), bounded by the timeout."""
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=_local_hostname(),
                timeout=self.timeout,
                context=self._context(),
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=_local_hostname(), timeout=self.timeout
        )

    def _prepare(self, smtp: smtplib.SMTP) -> None:
        """EHLO, STARTTLS when asked (never a silent downgrade), then login when configured."""
        smtp.ehlo()
        if self.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise DeliveryError(self._where("server does not offer STARTTLS"), retryable=False)
            smtp.starttls(context=self._context())
            smtp.ehlo()
        if self._username is not None and self._password is not None:
            smtp.login(self._username, self._password)

    def send(self, message: Message) -> None:
        """Deliver ``message`` to every recipient in one SMTP session."""
        self.send_mail(self.build(message), self.recipients)

    def send_mail(
        self, mail: EmailMessage, recipients: Sequence[str], *, sender: str | None = None
    ) -> None:
        """Deliver a ready ``mail`` to ``recipients`` (the envelope; its headers add none) in one
        SMTP session; return once the server accepted it, else raise :class:`DeliveryError`."""
        try:
            envelope = tuple(_address(r, "recipient") for r in recipients)
            from_addr = _address(sender, "sender") if sender else self.sender
        except ValueError as exc:
            raise DeliveryError(self._where(str(exc)), retryable=False) from None
        try:
            smtp = self._connect()
        except _FAILURES as exc:  # classified below; the original is not chained
            raise self._error(exc) from None
        try:
            self._prepare(smtp)
            refused = smtp.send_message(mail, from_addr=from_addr, to_addrs=envelope)
        except DeliveryError:
            smtp.close()
            raise
        except _FAILURES as exc:
            smtp.close()
            raise self._error(exc) from None
        _quit_quietly(smtp)
        self._check_partial(refused)

    def _check_partial(self, refused: Mapping[str, tuple[int, bytes]]) -> None:
        """Some recipients refused: retry if any refusal was temporary, else log and accept."""
        if not refused:
            return
        codes = sorted({code for code, _ in refused.values()})
        if any(_is_temporary(code) for code in codes):
            raise DeliveryError(
                self._where(f"{len(refused)} recipient(s) deferred ({codes})"), retryable=True
            )
        logger.warning("%s: %d recipient(s) refused permanently %s", self.name, len(refused), codes)

    def _where(self, what: str) -> str:
        """An error text naming the channel and the server, never a credential."""
        return f"{self.name}: smtp {self.host}:{self.port}: {what}"

    def _error(self, exc: BaseException) -> DeliveryError:
        """Classify an exception from smtplib, ssl or the socket layer."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            first = next(iter(exc.recipients.values()), (0, b""))
            text = f"recipients refused: {first[0]} {_reply_text(first[1])}"
            temporary = bool(codes) and all(_is_temporary(c) for c in codes)
            return DeliveryError(self._where(text), retryable=temporary)
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            text = f"{code} {_reply_text(exc.smtp_error)}"
            return DeliveryError(self._where(text), retryable=not 500 <= code < 600)
        if isinstance(exc, smtplib.SMTPServerDisconnected):  # smtplib reports read timeouts so
            timed_out = "timed out" in str(exc)
            what = f"timed out after {self.timeout:g} s" if timed_out else "server disconnected"
            return DeliveryError(self._where(what), retryable=True)
        if isinstance(exc, smtplib.SMTPException):
            return DeliveryError(self._where(type(exc).__name__), retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(self._where("certificate verification failed"), retryable=True)
        if isinstance(exc, TimeoutError):
            return DeliveryError(self._where(f"timed out after {self.timeout:g} s"), retryable=True)
        if isinstance(exc, OSError):
            return DeliveryError(self._where(type(exc).__name__), retryable=True)
        return DeliveryError(self._where(type(exc).__name__), retryable=False)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """End the session after a delivery; a failing QUIT must not turn success into a retry."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
