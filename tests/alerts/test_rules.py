"""The alert rules are pure: rows in, alerts out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts import rules
from monitor.config import AlertPolicy
from monitor.models import MentionRow

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # a Wednesday
POLICY = AlertPolicy()


def mention(
    minutes_ago: float, *, answered_after: float | None = None, id: str = "x:1"
) -> MentionRow:
    created = NOW - timedelta(minutes=minutes_ago)
    answered = created + timedelta(minutes=answered_after) if answered_after is not None else None
    return MentionRow(
        id=id,
        brand="acme",
        platform="x",
        created_at=created,
        answered_at=answered,
        text="where is my order?",
        url="https://x.com/a/status/1",
        author="bob",
    )


def unanswered(
    *rows: MentionRow, policy: AlertPolicy = POLICY, down: set[tuple[str, str]] | None = None
) -> list:
    return rules.evaluate_unanswered(
        rows, now=NOW, policy=policy, timezone="UTC", down=down or set()
    )


def test_rules_unanswered_warns_after_an_hour_and_breaches_after_a_day() -> None:
    assert unanswered(mention(59)) == []
    (warn,) = unanswered(mention(61))
    assert (warn.kind, warn.severity, warn.subject) == ("unanswered_mention", "warning", ("x:1",))
    assert warn.fingerprint == "unanswered_mention:acme:x:1"
    assert "1 h 1 min" in warn.payload["detail"]
    (breach,) = unanswered(mention(25 * 60))
    assert breach.severity == "critical"


def test_rules_answered_and_too_old_mentions_raise_nothing() -> None:
    assert unanswered(mention(300, answered_after=20)) == []
    assert unanswered(mention(20 * 24 * 60)) == []  # older than ignore_older_than_days


def test_rules_unanswered_held_back_while_the_stream_is_down() -> None:
    (alert,) = unanswered(mention(120), down={("acme", "x")})
    assert alert.held


def test_rules_business_hours_count_only_working_time() -> None:
    policy = replace(POLICY, business_hours="09:00-17:00")
    # Tuesday 16:30 to Wednesday 09:20 is 30 + 20 = 50 working minutes: no alert yet
    tuesday = datetime(2026, 11, 17, 16, 30, tzinfo=UTC)
    row = replace(mention(0), created_at=tuesday)
    now = datetime(2026, 11, 18, 9, 20, tzinfo=UTC)
    assert rules.evaluate_unanswered([row], now=now, policy=policy, timezone="UTC") == []
    later = datetime(2026, 11, 18, 9, 40, tzinfo=UTC)
    (alert,) = rules.evaluate_unanswered([row], now=later, policy=policy, timezone="UTC")
    assert "(business hours)" in alert.payload["detail"]


def test_rules_business_elapsed_skips_weekends_in_the_brands_zone() -> None:
    friday = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)  # 17:00 in Berlin
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
    waited = rules.business_elapsed(
        friday,
        monday,
        timezone="Europe/Berlin",
        hours="09:00-17:00",
        days=("mon", "tue", "wed", "thu", "fri"),
    )
    assert waited == timedelta(hours=1)


def test_rules_business_elapsed_counts_a_night_shift_from_the_day_it_starts() -> None:
    night = {"timezone": "UTC", "hours": "22:00-06:00", "days": ("mon", "tue", "wed", "thu", "fri")}
    # Tuesday 23:00 to Wednesday 07:00: 7 hours of Tuesday's shift
    tuesday = datetime(2026, 11, 17, 23, 0, tzinfo=UTC)
    assert rules.business_elapsed(tuesday, tuesday + timedelta(hours=8), **night) == timedelta(
        hours=7
    )
    # Saturday 02:00 is Friday's shift; Saturday 22:00 starts no shift, Monday 22:00 does
    saturday = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    tuesday_morning = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert rules.business_elapsed(saturday, tuesday_morning, **night) == timedelta(hours=4 + 3)
    # the night the clocks go back in Berlin (25 Oct 2026, 03:00 -> 02:00) lasts 9 hours
    berlin = {**night, "timezone": "Europe/Berlin", "days": ("sat",)}
    start, end = (
        datetime(2026, 10, 24, 12, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 12, 0, tzinfo=UTC),
    )
    assert rules.business_elapsed(start, end, **berlin) == timedelta(hours=9)


def posts(labels: str, *, platform: str = "x", days_ago: float = 1) -> list[rules.LabelledPost]:
    names = {"s": "sales-pitch", "i": "inspiring", "e": "engaging"}
    return [
        rules.LabelledPost(
            id=f"{platform}:{i}",
            brand="acme",
            platform=platform,
            created_at=NOW - timedelta(days=days_ago, minutes=i),
            label=names[c],
            text=f"post {i}",
            url="",
        )
        for i, c in enumerate(labels)
    ]


@pytest.mark.parametrize(
    ("labels", "preset", "fires"),
    [
        ("ss" + "i" * 8, 0.2, False),
        ("sss" + "i" * 7, 0.2, True),
        ("ss" + "i" * 8, 1 / 6, True),
        ("sss" + "i" * 7, 1 / 3, False),
        ("sss" + "i" * 5, 0.2, False),
    ],
    ids=["20%-at-80-20", "30%-at-80-20", "20%-at-4-1-1", "30%-at-thirds", "too-few-posts"],
)
def test_rules_self_promotion_share_against_the_target(
    labels: str, preset: float, fires: bool
) -> None:
    policy = replace(POLICY, self_promotion_max_share=preset)
    alerts = rules.evaluate_self_promotion(posts(labels), now=NOW, policy=policy)
    assert bool(alerts) is fires
    if fires:
        (alert,) = alerts
        assert alert.fingerprint == "self_promotion:acme:x"
        assert alert.payload["sales_pitch"] == labels.count("s")


def test_rules_self_promotion_window_in_days_or_last_posts() -> None:
    old_pitches = posts("s" * 10, days_ago=30)
    recent = posts("i" * 10, platform="x", days_ago=1)
    recent = [replace(p, id=f"x:r{i}") for i, p in enumerate(recent)]
    assert rules.evaluate_self_promotion(old_pitches + recent, now=NOW, policy=POLICY) == []
    last_20 = replace(POLICY, self_promotion_last_posts=20)
    assert rules.evaluate_self_promotion(old_pitches + recent, now=NOW, policy=last_20)


def health(**changes: object) -> rules.StreamHealth:
    base = rules.StreamHealth(
        brand="acme",
        platform="x",
        stream="mentions",
        outcome="ok",
        consecutive_failures=0,
        last_success_at=NOW,
        last_run_at=NOW,
        last_error=None,
        interval_seconds=300,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "severity"),
    [
        ({}, None),
        ({"consecutive_failures": 2, "outcome": "failed"}, None),
        ({"consecutive_failures": 3, "outcome": "failed"}, "warning"),
        ({"outcome": "auth_failed", "consecutive_failures": 1}, "critical"),
        ({"last_success_at": NOW - timedelta(hours=1)}, "warning"),
    ],
    ids=["healthy", "two-failures", "three-failures", "auth", "stale"],
)
def test_rules_health(changes: dict[str, object], severity: str | None) -> None:
    alerts = rules.evaluate_health([health(**changes)], now=NOW, policies={"acme": POLICY})
    assert [a.severity for a in alerts] == ([severity] if severity else [])
    if alerts:
        assert rules.down_accounts(alerts) == {("acme", "x")}


def service(**fields: object) -> list:
    health = rules.ServiceHealth(**fields)  # type: ignore[arg-type]
    return rules.evaluate_service(health, now=NOW, policies={"acme": POLICY, "globex": POLICY})


def test_rules_service_crash_loop_is_three_unclean_restarts_within_half_an_hour() -> None:
    minutes = [NOW - timedelta(minutes=m) for m in (40, 20, 10)]
    assert service(restarts_after_crash=minutes) == []  # only two inside the window
    restarts = [*minutes, NOW - timedelta(minutes=1)]
    alerts = service(restarts_after_crash=restarts)
    assert [(a.brand, a.fingerprint, a.severity) for a in alerts] == [
        ("acme", "service_health:acme:restarts", "critical"),
        ("globex", "service_health:globex:restarts", "critical"),
    ]
    assert alerts[0].title == "touchpoint run restarted 3 times in 30 min after unclean stops"
    assert alerts[0].platform == "touchpoint"


def test_rules_service_classifier_failing_health_failures_times_in_a_row() -> None:
    since = NOW - timedelta(minutes=3)
    failing = {"classifier_error": "the model file was refused", "classifier_failing_since": since}
    assert service(classifier_failures=2, **failing) == []
    alert = service(classifier_failures=3, **failing)[0]
    assert alert.fingerprint == "service_health:acme:classifier"
    assert alert.title == "posts are not being labelled"
    detail = alert.payload["detail"]
    assert detail == (
        "the classifier failed 3 times in a row over 3 min, and self-promotion is not judged "
        "until it works again: the model file was refused"
    )
    strict = replace(POLICY, health_failures=1)
    health = rules.ServiceHealth(classifier_failures=1, classifier_error="x")
    assert rules.evaluate_service(health, now=NOW, policies={"acme": strict})


def test_rules_service_wal_past_its_limit_is_a_warning_naming_the_size_and_the_key() -> None:
    limit = 8 * 2**20
    assert service(wal_bytes=limit, wal_limit_bytes=limit) == []
    alert = service(wal_bytes=limit * 40, wal_limit_bytes=limit)[0]
    assert (alert.fingerprint, alert.severity) == ("service_health:acme:wal", "warning")
    assert "has grown to 320 MB" in alert.title
    assert "limit 8 MB: [daemon] wal_alert_megabytes" in alert.payload["detail"]
