"""The outbox: alerts recorded with their evaluation, grouped, delivered at least once.

``evaluate`` runs the rules and, in the same transaction, records the alerts (unique by
fingerprint), resolves the ones no longer raised and queues one grouped message per (brand, kind,
channel) for the alerts that are due. ``deliver`` claims what is due (so two processes never send
it both) and sends it: one thread per channel, so a receiver that hangs holds up no other channel;
bounded retries with jittered backoff; the same idempotency key on every attempt of a message; each
outcome recorded as soon as it is known; no faster than the channel's rate (Slack: one a second),
and nothing at all to a channel that asked to wait (a 429 with Retry-After) until then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from monitor import clock, store
from monitor.alerts import rules
from monitor.config import AlertPolicy, BrandSettings, Settings
from monitor.logs import clean, log_failure
from monitor.models import Alert, MentionRow, StreamKey, iso, parse_iso
from monitor.notify import build_channel, channel_url_error
from monitor.notify.base import Channel, DeliveryError
from monitor.notify.message import AlertItem, Message
from monitor.platforms.streams import planned_streams

logger = logging.getLogger(__name__)

ATTEMPTS_PER_RUN = 4
MAX_ATTEMPTS = 12
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 300.0
# A wait up to this long (backoff or Retry-After) is slept inside the pass; a longer one ends the
# pass for the message, and a Retry-After holds its whole channel until then (store.hold_channel):
# no further post to it from any process, the other channels unaffected.
MAX_WAIT_IN_PASS_SECONDS = 5.0
MAX_HOLD_SECONDS = 86400.0
# A pass holds the messages it sends for CLAIM_SECONDS, renewed every RENEW_SECONDS while it runs:
# if the process dies, its unsent messages go out again (same key) CLAIM_SECONDS later.
CLAIM_SECONDS = 120.0
RENEW_SECONDS = 30.0
LOG_CHANNEL = "log"
DELIVERY_FAILED = "delivery_failed"  # the kind of the notice sent when a message is given up


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation did."""

    raised: int
    opened: int
    resolved: int
    queued: int


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery pass did."""

    sent: int
    retrying: int
    dead: int


def evaluate(db: Database, settings: Settings, *, now: datetime | None = None) -> Evaluation:
    """Run every rule for every brand; record alerts and queue due messages in one transaction."""
    now = now or clock.now()
    with store.write_transaction(db):
        # the platforms each brand still has an account on (and touchpoint's own): an account
        # removed from a brand raises nothing more there, and its open alerts expire
        watched = {b.name: (*b.accounts, rules.SERVICE_PLATFORM) for b in settings.brands}
        alerts = [a for a in _raise_alerts(db, settings, now) if a.platform in watched[a.brand]]
        brands = [b.name for b in settings.brands]
        expired = _aged_out(db, settings, now)
        opened, resolved = store.sync_alerts(
            db, alerts, brands=brands, now=now, expired=expired, platforms=watched
        )
        queued = _queue_due(db, settings, now)
    return Evaluation(raised=len(alerts), opened=opened, resolved=resolved, queued=queued)


def _raise_alerts(db: Database, settings: Settings, now: datetime) -> list[Alert]:
    policies = {b.name: b.alerts for b in settings.brands}
    health = rules.evaluate_health(_health(db, settings), now=now, policies=policies)
    down = rules.down_accounts(health)
    alerts = list(health)
    alerts += rules.evaluate_gaps(_gaps(db, settings, now), now=now, policies=policies)
    alerts += rules.evaluate_service(service_health(db, settings), now=now, policies=policies)
    for brand in settings.brands:
        alerts += rules.evaluate_unanswered(
            _mentions(db, brand, now),
            now=now,
            policy=brand.alerts,
            timezone=brand.timezone,
            down=down,
        )
        alerts += rules.evaluate_self_promotion(
            _labelled(db, brand, now), now=now, policy=brand.alerts
        )
    return alerts


def _aged_out(db: Database, settings: Settings, now: datetime) -> set[str]:
    """The open unanswered-mention alerts whose mention is past the brand's
    ignore_older_than_days and still unanswered: the rule no longer looks at them, but nobody
    answered them either, so they close as expired, not resolved."""
    brands = {b.name: b for b in settings.brands}
    aged: dict[str, dict[str, str]] = {}  # brand: {mention id: fingerprint}
    oldest: dict[str, datetime] = {}
    for alert in store.get_alerts(db, states=["open", "acked"]):
        brand, created = brands.get(alert.brand), alert.payload.get("created_at")
        if alert.kind != rules.UNANSWERED or brand is None or not created:
            continue
        at = parse_iso(created)
        if at < now - timedelta(days=brand.alerts.ignore_older_than_days):
            for mention_id in alert.subject:
                aged.setdefault(brand.name, {})[mention_id] = alert.fingerprint
            oldest[brand.name] = min(at, oldest.get(brand.name, at))
    expired = set()
    for name, fingerprints in aged.items():  # rare: only the pass at which they age out
        rows = store.iter_mentions_with_answers(
            db, name, since=oldest[name], answered_by=brands[name].answered_by
        )
        answered = {r[0] for r in rows if r[6]}
        expired |= {f for m, f in fingerprints.items() if m not in answered}
    return expired


def _gaps(db: Database, settings: Settings, now: datetime) -> list[rules.Gap]:
    brands = {b.name: b.alerts.repeat_hours for b in settings.brands}
    if not brands:
        return []
    since = now - timedelta(hours=max(brands.values()))
    return [
        rules.Gap(g.key.brand, g.key.platform, g.key.stream, parse_iso(g.started_at), g.gap)
        for g in store.get_gaps(db, since=since)
        if g.key.brand in brands and not g.key.stream.startswith("backfill")
    ]


def service_health(db: Database, settings: Settings) -> rules.ServiceHealth:
    """What the store and its files say of touchpoint itself (the service rule's input)."""
    classifier = store.get_classifier_status(db)
    lost = log_failure()
    return rules.ServiceHealth(
        restarts_after_crash=store.restarts_after_crash(db),
        classifier_failures=classifier.failures if classifier else 0,
        classifier_error=classifier.error if classifier else None,
        classifier_failing_since=classifier.failing_since if classifier else None,
        wal_bytes=store.wal_bytes(db),
        wal_limit_bytes=int(settings.daemon.wal_alert_megabytes * 2**20),
        log_failing_since=lost.since if lost else None,
        log_error=lost.error if lost else None,
        log_lines_lost=lost.count if lost else 0,
    )


def _health(db: Database, settings: Settings) -> list[rules.StreamHealth]:
    planned = planned_streams(settings)
    found = (stream_health(s, settings, planned) for s in store.get_stream_status(db))
    return [h for h in found if h is not None]


def stream_health(
    s: store.StreamStatus, settings: Settings, planned: Collection[StreamKey]
) -> rules.StreamHealth | None:
    """What the health rule judges of one stream's status; None for a backfill, or a stream the
    config no longer asks for (``planned``: :func:`monitor.platforms.streams.planned_streams`), such
    as the search of keywords changed since, or an account or brand removed."""
    if s.key not in planned:
        return None
    platform = settings.platforms[s.key.platform]
    return rules.StreamHealth(
        brand=s.key.brand,
        platform=s.key.platform,
        stream=s.key.stream,
        outcome=s.outcome,
        consecutive_failures=s.consecutive_failures,
        last_success_at=parse_iso(s.last_success_at) if s.last_success_at else None,
        last_run_at=parse_iso(s.last_run_at) if s.last_run_at else None,
        last_error=s.last_error,
        interval_seconds=platform.interval_seconds,
    )


def _mentions(db: Database, brand: BrandSettings, now: datetime) -> list[MentionRow]:
    since = now - timedelta(days=brand.alerts.ignore_older_than_days)
    return [
        MentionRow(
            id=r[0],
            brand=brand.name,
            platform=r[1],
            created_at=parse_iso(r[2]),
            answered_at=parse_iso(r[6]) if r[6] else None,
            text=r[3],
            url=r[4] or "",
            author=r[5] or "",
        )
        for r in store.iter_mentions_with_answers(
            db, brand.name, since=since, answered_by=brand.answered_by
        )
    ]


def _labelled(db: Database, brand: BrandSettings, now: datetime) -> list[rules.LabelledPost]:
    policy = brand.alerts
    since = (
        None
        if policy.self_promotion_last_posts
        else (now - timedelta(days=policy.self_promotion_window_days))
    )
    return [
        rules.LabelledPost(
            id=r[0],
            brand=brand.name,
            platform=r[1],
            created_at=parse_iso(r[2]),
            label=r[3],
            text=r[4],
            url=r[5] or "",
        )
        for r in store.iter_labelled_posts(db, brand.name, since=since)
    ]


def _queue_due(db: Database, settings: Settings, now: datetime) -> int:
    """Group the open alerts that are due (new, or past the repeat interval) and queue them. A
    group whose last message went out less than its brand's ``group_interval_minutes`` ago waits
    (its alerts stay due), so that mentions crossing the SLA pass after pass make one message
    per interval, not one per pass; service problems do not wait. A service problem is
    touchpoint's, not a brand's: a channel that several brands share gets one message about it,
    not one per brand."""
    groups: dict[tuple[str, str], list[store.StoredAlert]] = {}
    for alert in store.get_alerts(db, states=["open"]):
        repeat = timedelta(hours=settings.brand(alert.brand).alerts.repeat_hours)
        last = parse_iso(alert.last_notified_at) if alert.last_notified_at else None
        if last is None or now - last >= repeat:
            groups.setdefault((alert.brand, alert.kind), []).append(alert)
    told: dict[str, set[str]] = {}  # channel -> service problems queued to it in this pass
    queued = 0
    for (brand, kind), alerts in groups.items():
        if kind != rules.SERVICE and _grouping(db, settings.brand(brand).alerts, brand, kind, now):
            continue  # touchpoint's own problems are few, and go out at once
        for channel in channels_of(settings, brand):
            if kind == rules.SERVICE:
                problems = {str(a.payload.get("problem")) for a in alerts}
                if problems <= told.get(channel, set()):
                    continue
                told.setdefault(channel, set()).update(problems)
            message = build_message(brand, kind, alerts, channel=channel, now=now)
            store.queue_delivery(
                db,
                key=message.key,
                channel=channel,
                brand=brand,
                kind=kind,
                severity=message.severity,
                alert_ids=[a.id for a in alerts],
                message=dataclasses.asdict(message),
                now=now,
            )
            queued += 1
        store.mark_notified(db, [a.id for a in alerts], now=now)
    return queued


def _grouping(db: Database, policy: AlertPolicy, brand: str, kind: str, now: datetime) -> bool:
    """Whether a brand's due alerts of ``kind`` wait for the group interval to end."""
    last = store.last_queued_at(db, brand, kind)
    interval = timedelta(minutes=policy.group_interval_minutes)
    return last is not None and timedelta(0) <= now - last < interval


def channels_of(settings: Settings, brand: str) -> tuple[str, ...]:
    """The channels a brand's alerts go to (every configured one unless it names some; the log
    when none is configured)."""
    named = settings.brand(brand).alerts.channels
    return named or tuple(settings.channels) or (LOG_CHANNEL,)


_HEADLINES = {
    rules.UNANSWERED: "{n} mention{s} waiting for an answer",
    rules.SELF_PROMOTION: "{n} channel{s} selling more than the target",
    rules.HEALTH: "{n} stream{s} not collecting",
    rules.DATA_GAP: "{n} stream{s} may have missed items",
    rules.SERVICE: "touchpoint needs attention ({n} problem{s})",
}


def build_message(
    brand: str, kind: str, alerts: Sequence[store.StoredAlert], *, channel: str, now: datetime
) -> Message:
    """Turn a group of alerts of one kind into one message, with a key stable across retries."""
    ordered = sorted(alerts, key=lambda a: a.created_at)
    fingerprints = "\n".join(sorted(a.fingerprint for a in ordered))
    digest = hashlib.sha256(f"{channel}\n{brand}\n{kind}\n{iso(now)}\n{fingerprints}".encode())
    severity = "critical" if any(a.severity == "critical" for a in ordered) else "warning"
    n = len(ordered)
    headline = _HEADLINES.get(kind, "{n} alert{s}").format(n=n, s="" if n == 1 else "s")
    return Message(
        key=f"touchpoint-{digest.hexdigest()[:32]}",
        brand=brand,
        kind=kind,
        severity=severity,
        title=headline if kind == rules.SERVICE else f"{brand}: {headline}",
        summary="; ".join(a.title for a in ordered[:3]) + (f"; and {n - 3} more" if n > 3 else ""),
        items=tuple(_item(a) for a in ordered),
        created_at=iso(now),
    )


def _item(alert: store.StoredAlert) -> AlertItem:
    p = alert.payload
    if alert.kind == rules.SELF_PROMOTION:
        return AlertItem(
            text=alert.title,
            url="",
            author=alert.brand,
            platform=alert.platform,
            created_at=alert.created_at,
            detail=f"{p.get('sales_pitch')} of {p.get('posts')} posts sell",
        )
    if alert.kind == rules.SERVICE:  # the title is in the summary; the text says why
        return AlertItem(
            text=str(p.get("detail", "")),
            url="",
            author="",
            platform=alert.platform,
            created_at=alert.created_at,
            detail=str(p.get("problem", "")),
        )
    if alert.kind in (rules.HEALTH, rules.DATA_GAP):
        return AlertItem(
            text=str(p.get("last_error") or alert.title),
            url="",
            author="",
            platform=alert.platform,
            created_at=alert.created_at,
            detail=f"{p.get('stream')}: {p.get('detail')}",
        )
    return AlertItem(
        text=str(p.get("text", "")),
        url=str(p.get("url", "")),
        author=str(p.get("author", "")),
        platform=alert.platform,
        created_at=str(p.get("created_at", alert.created_at)),
        detail=str(p.get("detail", "")),
    )


def message_from_dict(data: Mapping[str, Any]) -> Message:
    """Rebuild a queued message from its JSON form."""
    fields = dict(data)
    fields["items"] = tuple(AlertItem(**item) for item in data.get("items", ()))
    return Message(**fields)


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Build every configured channel (their secrets come from the environment)."""
    built = {name: build_channel(settings, name) for name in settings.channels}
    if not built:
        built[LOG_CHANNEL] = build_channel(settings, LOG_CHANNEL)
    return built


def check_channels(settings: Settings) -> None:
    """Build and check every configured channel; raise ConfigError naming the first bad one."""
    for name in settings.channels:
        channel = build_channel(settings, name)
        try:
            channel.validate()
        except (ValueError, OSError) as exc:
            raise channel_url_error(settings, name, exc) from None


def deliver(
    db: Database,
    channels: Mapping[str, Channel],
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Send every due message: one worker per channel, bounded retries.

    The due messages are claimed first (no other process sends them meanwhile; the claim is renewed
    while the pass runs and lapses if this process dies), and each outcome is recorded as soon as
    it is known, so a crash re-sends at most the message in flight."""
    now = now or clock.now()
    started = time.monotonic()

    def lease_end() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started + CLAIM_SECONDS)

    by_channel: dict[str, list[store.Delivery]] = {}
    for delivery in store.claim_due_deliveries(db, now=now, until=lease_end()):
        by_channel.setdefault(delivery.channel, []).append(delivery)
    counts = {"sent": 0, "pending": 0, "dead": 0}
    if not by_channel:
        return DeliveryReport(0, 0, 0)
    unfinished = {d.id for deliveries in by_channel.values() for d in deliveries}
    done: queue.SimpleQueue[tuple[store.Delivery, _Outcome]] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=len(by_channel), thread_name_prefix="deliver") as pool:
        workers = [
            pool.submit(_send_all, channels.get(name), deliveries, sleep, done.put)
            for name, deliveries in by_channel.items()
        ]
        while unfinished:
            try:
                delivery, outcome = done.get(timeout=RENEW_SECONDS)
            except queue.Empty:
                if all(w.done() for w in workers) and done.empty():  # a worker died
                    logger.error(
                        "%d message(s) not sent: their delivery stopped early; they go out "
                        "again in %d s",
                        len(unfinished),
                        CLAIM_SECONDS,
                    )
                    break
                store.extend_claims(db, sorted(unfinished), until=lease_end())
                continue
            unfinished.discard(delivery.id)
            _record(db, delivery, outcome, [c for c in channels if c != delivery.channel])
            counts[outcome.state] += 1
    return DeliveryReport(sent=counts["sent"], retrying=counts["pending"], dead=counts["dead"])


@dataclass(frozen=True)
class _Outcome:
    state: str  # "sent" | "pending" | "dead"
    attempts: int
    error: str | None = None
    retry_after: float | None = None


def _send_all(
    channel: Channel | None,
    deliveries: Sequence[store.Delivery],
    sleep: Callable[[float], None],
    done: Callable[[tuple[store.Delivery, _Outcome]], None],
) -> None:
    held_until: float | None = None  # monotonic: the channel asked to be left alone until then
    last_sent: float | None = None
    for delivery in deliveries:
        if channel is None:
            outcome = _Outcome("dead", delivery.attempts, "the channel is no longer configured")
        elif held_until is not None:  # not tried: no attempt counted, the same wait
            wait = max(held_until - time.monotonic(), 1.0)
            outcome = _Outcome("pending", delivery.attempts, "not sent: channel held", wait)
        else:
            if last_sent is not None:  # the receiver's rate: Slack's one a second
                pause = channel.min_interval_seconds - (time.monotonic() - last_sent)
                if pause > 0:
                    sleep(pause)
            outcome = _send_guarded(channel, delivery, sleep)
            last_sent = time.monotonic()
            if outcome.state == "pending" and outcome.retry_after is not None:
                held_until = time.monotonic() + outcome.retry_after
        done((delivery, outcome))


def _send_guarded(
    channel: Channel, delivery: store.Delivery, sleep: Callable[[float], None]
) -> _Outcome:
    try:
        return _send_one(channel, delivery, sleep)
    except Exception as exc:  # a bug in a channel must not hold up its other messages
        logger.exception("deliver %s to %s: unexpected error", delivery.key, channel.name)
        attempts = delivery.attempts + 1
        state = "dead" if attempts >= MAX_ATTEMPTS else "pending"
        return _Outcome(state, attempts, clean(f"{type(exc).__name__}: {exc}"))


def _send_one(
    channel: Channel, delivery: store.Delivery, sleep: Callable[[float], None]
) -> _Outcome:
    message = message_from_dict(delivery.message)
    attempts = delivery.attempts
    for run_attempt in range(1, ATTEMPTS_PER_RUN + 1):
        attempts += 1
        try:
            channel.send(message)
        except DeliveryError as exc:
            error = clean(str(exc))
            logger.info(
                "deliver %s to %s: attempt %d failed: %s",
                message.key,
                channel.name,
                attempts,
                error,
            )
            if not exc.retryable or attempts >= MAX_ATTEMPTS:
                return _Outcome("dead", attempts, error)
            wait = exc.retry_after if exc.retry_after is not None else next_wait(attempts)
            if run_attempt == ATTEMPTS_PER_RUN or wait > MAX_WAIT_IN_PASS_SECONDS:
                return _Outcome("pending", attempts, error, exc.retry_after)
            sleep(wait)
            continue
        logger.info("delivered %s to %s after %d attempts", message.key, channel.name, attempts)
        return _Outcome("sent", attempts)
    raise AssertionError("unreachable")  # pragma: no cover


def next_wait(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed attempts: full jitter, below a ceiling that
    doubles from BASE_DELAY_SECONDS up to MAX_DELAY_SECONDS, so retries never march in step."""
    return random.uniform(0, min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempts - 1)))


def _record(
    db: Database, delivery: store.Delivery, outcome: _Outcome, others: Sequence[str]
) -> None:
    now = clock.now()
    next_at = None
    if outcome.state == "pending" and outcome.retry_after is not None:
        next_at = now + timedelta(seconds=min(max(outcome.retry_after, 1.0), MAX_HOLD_SECONDS))
        store.hold_channel(db, delivery.channel, until=next_at)
    elif outcome.state == "pending":
        wait = next_wait(outcome.attempts)
        next_at = now + timedelta(seconds=min(max(wait, 1.0), MAX_DELAY_SECONDS))
    if outcome.state == "dead":
        logger.warning(
            "gave up delivering %s to %s after %d attempts: %s",
            delivery.key,
            delivery.channel,
            outcome.attempts,
            outcome.error,
        )
        if delivery.kind != DELIVERY_FAILED:  # a notice that fails too is not noticed again
            _queue_failure_notices(db, delivery, outcome, others, now)
    store.record_delivery(
        db,
        delivery.id,
        state=outcome.state,
        attempts=outcome.attempts,
        error=outcome.error,
        next_attempt_at=next_at,
        now=now,
    )


def _queue_failure_notices(
    db: Database,
    delivery: store.Delivery,
    outcome: _Outcome,
    others: Sequence[str],
    now: datetime,
) -> None:
    """Tell the other channels that a message was given up, carrying its items: queued before
    the delivery is marked dead, and keyed by it, so a crash in between queues nothing twice."""
    original = message_from_dict(delivery.message)
    for channel in others:
        notice = Message(
            key=f"{delivery.key}-failed-{channel}",
            brand=delivery.brand,
            kind=DELIVERY_FAILED,
            severity="critical",
            title=f"{delivery.brand}: an alert could not be delivered to {delivery.channel}",
            summary=(
                f"{delivery.channel} gave up after {outcome.attempts} attempts "
                f"({outcome.error}); the message was: {original.title}"
            ),
            items=original.items,
            created_at=iso(now),
        )
        with store.write_transaction(db):
            store.queue_delivery(
                db,
                key=notice.key,
                channel=channel,
                brand=delivery.brand,
                kind=DELIVERY_FAILED,
                severity=notice.severity,
                alert_ids=delivery.alert_ids,
                message=dataclasses.asdict(notice),
                now=now,
            )
