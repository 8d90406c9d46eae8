"""Email a brand's daily digest through the configured SMTP channel, once per recipient.

Each (brand, day, recipient) is one SMTP transaction. A send is recorded in ``digest_sends`` only
after the server accepted the message, so a crash in between means it is sent again (at least
once), and then with the same ``Message-ID`` (derived from brand, day and recipient) for the
receiver to drop the duplicate; once recorded, the same digest is never sent to that recipient
again. A refused attempt is recorded with its error: a temporary one is tried again after a
growing wait, a permanent one (or the ``MAX_ATTEMPTS``-th) gives up.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from monitor import files, store
from monitor.config import BrandSettings, ConfigError, Settings
from monitor.digest.build import BrandDigest, day_period, local_yesterday
from monitor.digest.read import read_digest
from monitor.digest.render import render_html, render_text, subject
from monitor.logs import clean
from monitor.notify import build_channel
from monitor.notify.base import DeliveryError
from monitor.notify.email import EmailChannel, message_id

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=5)
LONGEST_RETRY = timedelta(hours=6)
SEND_LEASE = timedelta(minutes=10)  # a claimed send no other process may take meanwhile
CATCH_UP_DAYS = 7  # after downtime, the days missed since the last digest: this many at most


@dataclass(frozen=True)
class SendReport:
    """What one send of one brand's digest did, per recipient."""

    sent: tuple[str, ...] = ()
    already: tuple[str, ...] = ()  # sent before: nothing done
    failed: tuple[tuple[str, str], ...] = ()  # (recipient, error)
    waiting: tuple[str, ...] = ()  # not due again yet, or given up


def digest_mailer(settings: Settings) -> EmailChannel:
    """The email channel ``[digest] channel`` names, with its secrets; ConfigError if unusable."""
    name = settings.digest.channel
    try:
        channel = build_channel(settings, name)
    except ValueError as exc:
        raise ConfigError(
            str(settings.source), f"alerts.channels.{name}", clean(str(exc)), "correct that key"
        ) from None
    if not isinstance(channel, EmailChannel):
        raise ConfigError(
            str(settings.source),
            "digest.channel",
            f"{name!r} is not an email channel",
            'name an [alerts.channels.NAME] with type = "email"',
        )
    return channel


def mail_key(brand: str, day: str, recipient: str) -> str:
    """The idempotency key of one digest to one recipient (its Message-ID derives from it)."""
    return f"digest\n{brand}\n{day}\n{recipient.lower()}"


def build_mail(
    digest: BrandDigest,
    *,
    sender: str,
    recipient: str,
    now: datetime,
    text: str | None = None,
    html: str | None = None,
) -> EmailMessage:
    """The digest email to one recipient: text and HTML alternatives, a stable Message-ID."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["Subject"] = subject(digest)
    mail["From"] = sender
    mail["To"] = recipient
    mail["Date"] = email.utils.format_datetime(now)
    mail["Message-ID"] = message_id(mail_key(digest.brand, digest.period.label, recipient), sender)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail.set_content(text if text is not None else render_text(digest))
    mail.add_alternative(html if html is not None else render_html(digest), subtype="html")
    return mail


def _due(record: store.DigestSend | None, now: datetime) -> bool:
    return record is None or store.send_is_due(record.state, record.next_attempt_at, now)


def _retry_at(attempts: int, error: DeliveryError, now: datetime) -> datetime | None:
    if not error.retryable or attempts >= MAX_ATTEMPTS:
        return None
    wait: timedelta = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)
    return now + wait


def send_digest(
    db: Database,
    digest: BrandDigest,
    *,
    mailer: EmailChannel,
    recipients: Sequence[str],
    sender: str,
    now: datetime,
    retry_now: bool = False,
) -> SendReport:
    """Send ``digest`` to each recipient that has not had it; record each accepted send.

    ``retry_now`` also tries recipients that failed before and are waiting (a person asked).
    """
    day = digest.period.label
    records = store.get_digest_sends(db, digest.brand, day)
    text, html = render_text(digest), render_html(digest)
    sent: list[str] = []
    already: list[str] = []
    failed: list[tuple[str, str]] = []
    waiting: list[str] = []
    for recipient in dict.fromkeys(recipients):
        record = records.get(store.recipient_key(recipient))
        if record is not None and record.state == "sent":
            already.append(recipient)
            continue
        claimed = store.claim_digest_send(
            db,
            digest.brand,
            day,
            recipient,
            now=now,
            lease_until=now + SEND_LEASE,
            retry_now=retry_now,
        )
        if not claimed:  # waits for its next attempt, or another process is sending it
            waiting.append(recipient)
            continue
        mail = build_mail(digest, sender=sender, recipient=recipient, now=now, text=text, html=html)
        try:
            mailer.send_mail(mail, [recipient], sender=sender)
        except DeliveryError as exc:
            attempts = (record.attempts if record else 0) + 1
            retry_at = _retry_at(attempts, exc, now)
            store.record_digest_failed(
                db, digest.brand, day, recipient, error=str(exc), next_attempt_at=retry_at, now=now
            )
            logger.info(
                "digest %s %s to %s: attempt %d failed%s: %s",
                digest.brand,
                day,
                recipient,
                attempts,
                "" if retry_at else ", giving up",
                exc,
            )
            failed.append((recipient, str(exc)))
            continue
        store.record_digest_sent(
            db, digest.brand, day, recipient, message_id=str(mail["Message-ID"]), now=now
        )
        logger.info("digest %s %s sent to %s", digest.brand, day, recipient)
        sent.append(recipient)
    return SendReport(tuple(sent), tuple(already), tuple(failed), tuple(waiting))


def write_digest(digest: BrandDigest, path: Path) -> tuple[Path, Path]:
    """Write the HTML page to ``path`` and the text version beside it (``.txt``); return both."""
    text_path = path.with_suffix(".txt")
    if text_path == path:
        raise ValueError(f"{path}: name the HTML file, e.g. digest.html (the text goes beside it)")
    # each written whole, 0600: a digest quotes customers' words
    files.write_text(path, render_html(digest))
    files.write_text(text_path, render_text(digest))
    return path, text_path


def _send_time(settings: Settings) -> time:
    hour, minute = (int(part) for part in settings.digest.send_time.split(":"))
    return time(hour, minute)


def _days_due(db: Database, brand: BrandSettings, now: datetime) -> list[date]:
    """Yesterday, and the days before it back to the last digest recorded (at most
    ``CATCH_UP_DAYS`` in all): a daemon that was down for a while sends what it missed. A brand
    with no digest yet starts with yesterday's."""
    yesterday = local_yesterday(now, brand.timezone)
    last = store.last_digest_day(db, brand.name)
    if last is None:
        return [yesterday]
    first = max(date.fromisoformat(last), yesterday - timedelta(days=CATCH_UP_DAYS - 1))
    return [first + timedelta(days=n) for n in range((yesterday - first).days + 1)]


def _pending(
    db: Database, settings: Settings, brand: BrandSettings, day: date, now: datetime
) -> list[str]:
    records = store.get_digest_sends(db, brand.name, day.isoformat())
    recipients = dict.fromkeys(settings.digest.recipients_for(brand.name))
    return [r for r in recipients if _due(records.get(store.recipient_key(r)), now)]


def deliver_due(db: Database, settings: Settings, now: datetime) -> int:
    """Send yesterday's digest of every brand whose local time has passed ``[digest]
    send_time`` and that not every one of its recipients has had yet (and the days missed since
    the last digest, see :func:`_days_due`); return the number of emails sent. A brand's
    recipients are its own ``digest_recipients``, else ``[digest] recipients``; a brand with
    neither gets none.

    Failures are recorded and logged, never raised: the next call tries again when due.
    """
    if not settings.digest.enabled:
        return 0
    mailer: EmailChannel | None = None
    count = 0
    for brand in settings.brands:
        if not settings.digest.recipients_for(brand.name):
            continue
        if now.astimezone(ZoneInfo(brand.timezone)).time() < _send_time(settings):
            continue
        for day in _days_due(db, brand, now):
            pending = _pending(db, settings, brand, day, now)
            if not pending:
                continue
            try:
                mailer = mailer or digest_mailer(settings)
            except ConfigError as exc:
                logger.error("digests not sent: %s", exc)
                return count
            count += _send_day(db, settings, brand, day, pending, mailer, now)
    return count


def _send_day(
    db: Database,
    settings: Settings,
    brand: BrandSettings,
    day: date,
    recipients: list[str],
    mailer: EmailChannel,
    now: datetime,
) -> int:
    period = day_period(day, brand.timezone)
    digest = read_digest(db, brand, period, as_of=now, streams=settings.platform_streams)
    report = send_digest(
        db,
        digest,
        mailer=mailer,
        recipients=recipients,
        sender=settings.digest.sender or mailer.sender,
        now=now,
    )
    for recipient, error in report.failed:
        logger.warning("digest %s not sent to %s: %s", brand.name, recipient, error)
    return len(report.sent)
