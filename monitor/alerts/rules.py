"""The alert rules: pure functions from rows of the store to Alert records. No I/O, no clock.

- unanswered mention: a mention with no brand reply older than the SLA (business hours aware);
- self-promotion: the share of sales-pitch among a brand's posts on a channel above the target;
- collector health: a stream failing N runs in a row, refused credentials, or data gone stale;
- data gap: a run that went ok although the platform's listing ended before the position stored
  (items between may be missing): reported once;
- service health: touchpoint itself, for every brand it watches: the daemon restarting again and
  again after unclean stops, the classifier failing (posts unlabelled, so self-promotion goes
  unjudged), the write-ahead log grown past its limit (a reader holding checkpoints back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.config import WEEKDAYS, AlertPolicy
from monitor.models import REFUSED, Alert, MentionRow

UNANSWERED = "unanswered_mention"
SELF_PROMOTION = "self_promotion"
HEALTH = "collector_health"
DATA_GAP = "data_gap"
SERVICE = "service_health"
KINDS = (UNANSWERED, SELF_PROMOTION, HEALTH, DATA_GAP, SERVICE)
SERVICE_PLATFORM = "touchpoint"  # the platform of a service alert: touchpoint itself
RESTART_WINDOW = timedelta(minutes=30)
RESTART_LIMIT = 3  # restarts after an unclean stop within RESTART_WINDOW that make a crash loop
# streams whose health decides whether unanswered-mention alerts can be trusted
WATCHED_STREAMS = ("account", "posts", "mentions")


@dataclass(frozen=True)
class LabelledPost:
    """One of a brand's own posts on a channel, with the classifier's label."""

    id: str
    brand: str
    platform: str
    created_at: datetime
    label: str
    text: str
    url: str


@dataclass(frozen=True)
class StreamHealth:
    """What the runs of one stream say about it."""

    brand: str
    platform: str
    stream: str
    outcome: str | None
    consecutive_failures: int
    last_success_at: datetime | None
    last_run_at: datetime | None
    last_error: str | None
    interval_seconds: int


def business_elapsed(
    start: datetime, end: datetime, *, timezone: str, hours: str, days: Sequence[str]
) -> timedelta:
    """Time between ``start`` and ``end`` counted only inside business hours (all of it if none).

    Hours that close before they open ("22:00-06:00") are a night shift: it belongs to the day
    it starts on, and runs into the next morning. Times are compared in UTC, so a shift across
    a daylight-saving change counts the hours it really lasted."""
    if end <= start:
        return timedelta(0)
    if not hours:
        return end - start
    zone = ZoneInfo(timezone)
    opening, closing = (_clock_time(part) for part in hours.split("-"))
    overnight = closing <= opening
    total = timedelta(0)
    day = start.astimezone(zone).date() - timedelta(days=1 if overnight else 0)
    while day <= end.astimezone(zone).date():
        if WEEKDAYS[day.weekday()] in days:
            open_at = datetime.combine(day, opening, zone).astimezone(UTC)
            close_day = day + timedelta(days=1) if overnight else day
            close_at = datetime.combine(close_day, closing, zone).astimezone(UTC)
            overlap = min(end, close_at) - max(start, open_at)
            total += max(overlap, timedelta(0))
        day += timedelta(days=1)
    return total


def _clock_time(text: str) -> time:
    hour, minute = (int(part) for part in text.split(":"))
    return time(23, 59, 59, 999999) if hour == 24 else time(hour, minute)


def evaluate_unanswered(
    mentions: Iterable[MentionRow],
    *,
    now: datetime,
    policy: AlertPolicy,
    timezone: str,
    down: Collection[tuple[str, str]] = (),
) -> list[Alert]:
    """Raise an alert for each mention left unanswered past the SLA (warning, then breach)."""
    warn = timedelta(minutes=policy.warn_after_minutes)
    breach = timedelta(minutes=policy.breach_after_minutes)
    oldest = now - timedelta(days=policy.ignore_older_than_days)
    alerts = []
    for m in mentions:
        if m.answered_at is not None or m.created_at < oldest:
            continue
        waited = business_elapsed(
            m.created_at,
            now,
            timezone=timezone,
            hours=policy.business_hours,
            days=policy.business_days,
        )
        if waited < warn:
            continue
        severity = "critical" if waited >= breach else "warning"
        alerts.append(
            Alert(
                fingerprint=f"{UNANSWERED}:{m.brand}:{m.id}",  # a mention of two brands: two
                kind=UNANSWERED,
                brand=m.brand,
                platform=m.platform,
                severity=severity,
                title=f"{m.brand}: mention on {m.platform} unanswered",
                subject=(m.id,),
                payload={
                    "text": m.text,
                    "url": m.url,
                    "author": m.author,
                    "created_at": m.created_at.isoformat(),
                    "detail": f"unanswered for "
                    f"{_duration(waited)}{' (business hours)' if policy.business_hours else ''}",
                },
                held=(m.brand, m.platform) in down,
            )
        )
    return alerts


def evaluate_self_promotion(
    posts: Sequence[LabelledPost], *, now: datetime, policy: AlertPolicy
) -> list[Alert]:
    """Raise one alert per channel whose share of sales-pitch posts is above the target."""
    by_channel: dict[tuple[str, str], list[LabelledPost]] = {}
    for post in sorted(posts, key=lambda p: p.created_at, reverse=True):
        by_channel.setdefault((post.brand, post.platform), []).append(post)
    alerts = []
    for (brand, platform), channel_posts in sorted(by_channel.items()):
        window = _window(channel_posts, now=now, policy=policy)
        if len(window) < policy.self_promotion_min_posts:
            continue
        pitches = [p for p in window if p.label == "sales-pitch"]
        share = len(pitches) / len(window)
        if share <= policy.self_promotion_max_share:
            continue
        alerts.append(
            Alert(
                fingerprint=f"{SELF_PROMOTION}:{brand}:{platform}",
                kind=SELF_PROMOTION,
                brand=brand,
                platform=platform,
                severity="warning",
                title=f"{brand}: {share:.0%} of posts on {platform} sell "
                f"(target at most {policy.self_promotion_max_share:.0%})",
                subject=tuple(p.id for p in pitches),
                payload={
                    "share": round(share, 4),
                    "target": policy.self_promotion_max_share,
                    "posts": len(window),
                    "sales_pitch": len(pitches),
                    "examples": [
                        {"text": p.text, "url": p.url, "created_at": p.created_at.isoformat()}
                        for p in pitches[:5]
                    ],
                },
            )
        )
    return alerts


def _window(posts: list[LabelledPost], *, now: datetime, policy: AlertPolicy) -> list[LabelledPost]:
    if policy.self_promotion_last_posts:
        return posts[: policy.self_promotion_last_posts]
    start = now - timedelta(days=policy.self_promotion_window_days)
    return [p for p in posts if p.created_at >= start]


def evaluate_health(
    streams: Iterable[StreamHealth], *, now: datetime, policies: Mapping[str, AlertPolicy]
) -> list[Alert]:
    """Raise an alert for each stream that fails, is refused, or has gone stale."""
    alerts = []
    for s in streams:
        problem = health_problem(s, now=now, policy=policies[s.brand])
        if problem is None:
            continue
        severity, detail = problem
        alerts.append(
            Alert(
                fingerprint=f"{HEALTH}:{s.brand}:{s.platform}:{s.stream}",
                kind=HEALTH,
                brand=s.brand,
                platform=s.platform,
                severity=severity,
                title=f"{s.brand}: {s.platform} {s.stream} collection is unhealthy",
                payload={"stream": s.stream, "detail": detail, "last_error": s.last_error or ""},
            )
        )
    return alerts


def health_problem(
    s: StreamHealth, *, now: datetime, policy: AlertPolicy
) -> tuple[str, str] | None:
    """(severity, detail) when the stream is refused, failing or stale; None when healthy."""
    if s.outcome == "auth_failed":
        return "critical", REFUSED
    if s.consecutive_failures >= policy.health_failures:
        return "warning", f"{s.consecutive_failures} runs failed in a row"
    stale_after = timedelta(seconds=s.interval_seconds * policy.stale_after_intervals)
    since_success = now - s.last_success_at if s.last_success_at else None
    if since_success is not None and since_success > stale_after:
        return "warning", f"no successful run for {_duration(since_success)}"
    return None


@dataclass(frozen=True)
class Gap:
    """A run after which items may be missing, and why."""

    brand: str
    platform: str
    stream: str
    at: datetime
    detail: str


def evaluate_gaps(
    gaps: Iterable[Gap], *, now: datetime, policies: Mapping[str, AlertPolicy]
) -> list[Alert]:
    """Raise an alert for each gap of the last ``repeat_hours``: it is sent when it first shows,
    and it resolves when a repeat would be due, so each gap is reported once."""
    alerts = []
    for g in gaps:
        if now - g.at >= timedelta(hours=policies[g.brand].repeat_hours):
            continue
        alerts.append(
            Alert(
                fingerprint=f"{DATA_GAP}:{g.brand}:{g.platform}:{g.stream}:{g.at.isoformat()}",
                kind=DATA_GAP,
                brand=g.brand,
                platform=g.platform,
                severity="warning",
                title=f"{g.brand}: {g.platform} {g.stream} may have missed items",
                payload={"stream": g.stream, "detail": g.detail},
            )
        )
    return alerts


@dataclass(frozen=True)
class ServiceHealth:
    """What touchpoint knows of itself: when the daemon started again after an unclean stop, how
    many classification passes failed in a row (and why, since when), the WAL's size, and
    whether its log lines are being lost (since when, why, how many)."""

    restarts_after_crash: Sequence[datetime] = ()
    classifier_failures: int = 0
    classifier_error: str | None = None
    classifier_failing_since: datetime | None = None
    wal_bytes: int = 0
    wal_limit_bytes: int = 256 * 2**20
    log_failing_since: datetime | None = None
    log_error: str | None = None
    log_lines_lost: int = 0


def service_problems(
    s: ServiceHealth, *, now: datetime, policy: AlertPolicy
) -> list[tuple[str, str, str, str]]:
    """(problem, severity, title, detail) for each way touchpoint itself is unwell."""
    problems = []
    recent = [t for t in s.restarts_after_crash if now - t <= RESTART_WINDOW]
    if len(recent) >= RESTART_LIMIT:
        window = _duration(RESTART_WINDOW)
        problems.append(
            (
                "restarts",
                "critical",
                f"touchpoint run restarted {len(recent)} times in {window} after unclean stops",
                "each run ended without a clean stop (killed, crashed, out of memory or the "
                "machine went down); see the service's log for why",
            )
        )
    if s.classifier_failures >= policy.health_failures:
        since = s.classifier_failing_since or now
        problems.append(
            (
                "classifier",
                "critical",
                "posts are not being labelled",
                f"the classifier failed {s.classifier_failures} time"
                f"{'' if s.classifier_failures == 1 else 's'} in a row over "
                f"{_duration(now - since)}, and self-promotion is not judged until it works "
                f"again: {s.classifier_error or 'no reason given'}",
            )
        )
    if s.log_failing_since is not None:
        problems.append(
            (
                "log",
                "warning",
                "touchpoint's log cannot be written",
                f"{s.log_lines_lost} log line{'' if s.log_lines_lost == 1 else 's'} lost since "
                f"{s.log_failing_since:%Y-%m-%d %H:%M} UTC ({s.log_error or 'no reason given'}); "
                "collection and alerts go on. Free space where the log goes (the disk of the "
                "file its output is sent to), or check the service's log destination",
            )
        )
    if s.wal_bytes > s.wal_limit_bytes:
        problems.append(
            (
                "wal",
                "warning",
                f"the store's write-ahead log has grown to {s.wal_bytes / 2**20:.0f} MB",
                "a long-open reader (a sqlite3 shell, a backup or report tool) keeps SQLite "
                "from copying the log back; once it is closed the daemon shrinks the log "
                f"(limit {s.wal_limit_bytes / 2**20:.0f} MB: [daemon] wal_alert_megabytes)",
            )
        )
    return problems


def evaluate_service(
    service: ServiceHealth, *, now: datetime, policies: Mapping[str, AlertPolicy]
) -> list[Alert]:
    """Raise each service problem for every brand (each brand's people learn that its
    monitoring is impaired, through its own channels; the outbox sends one copy to a channel
    that several brands share). The title names no brand: the problem is touchpoint's."""
    alerts = []
    for brand, policy in policies.items():
        for problem, severity, title, detail in service_problems(service, now=now, policy=policy):
            alerts.append(
                Alert(
                    fingerprint=f"{SERVICE}:{brand}:{problem}",
                    kind=SERVICE,
                    brand=brand,
                    platform=SERVICE_PLATFORM,
                    severity=severity,
                    title=title,
                    payload={"problem": problem, "detail": detail},
                )
            )
    return alerts


def down_accounts(health_alerts: Iterable[Alert]) -> set[tuple[str, str]]:
    """Return the (brand, platform) pairs whose mentions cannot be trusted right now."""
    return {
        (a.brand, a.platform)
        for a in health_alerts
        if a.kind == HEALTH and a.payload.get("stream") in WATCHED_STREAMS
    }


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else ""]
    parts.append(f"{minutes} min" if minutes or not (days or hours) else "")
    return " ".join(p for p in parts if p)
