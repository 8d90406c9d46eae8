"""The digest says when a channel was not collected up to the end of its period, and why, so that
no figure of it reads as an all-clear (a quiet day, every mention answered, a silent channel)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from monitor import store
from monitor.digest import BrandDigest, day_period, read_digest, render_html, render_text, subject
from monitor.models import Outcome, RunResult, StreamKey
from tests.digest import fixture


def ran(db: Database, platform: str, stream: str, at: str, outcome: Outcome = "ok") -> None:
    """Record a run of the fixture brand's stream starting at ``at`` (UTC, "2026-11-20T14:55")."""
    started = datetime.fromisoformat(at).replace(tzinfo=UTC)
    store.record_run(
        db, RunResult(StreamKey(fixture.BRAND, platform, stream), started, outcome=outcome)
    )


def digest_of(db: Database, tmp_path: Path, day: date = fixture.DAY) -> BrandDigest:
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    period = day_period(day, fixture.TIMEZONE)
    return read_digest(db, settings.brands[0], period, as_of=fixture.AS_OF)


def collection(digest: BrandDigest) -> dict[str, tuple[str, ...]]:
    return {c.platform: c.collection for c in digest.incomplete}


def test_digest_collected_to_the_end_of_the_day_is_complete(db: Database, tmp_path: Path) -> None:
    fixture.fill(db)
    digest = digest_of(db, tmp_path)
    assert digest.incomplete == () and digest.mentions_collected
    assert "COLLECTION INCOMPLETE" not in render_text(digest)
    assert 'id="collection"' not in render_html(digest)


def test_digest_names_a_stream_failing_since_the_afternoon(db: Database, tmp_path: Path) -> None:
    fixture.fill(db, collected_at=None)
    fixture.collected(db, fixture.BRAND, ["mastodon", "reddit", "bluesky"], fixture.COLLECTED_AT)
    ran(db, "x", "posts", "2026-11-21T06:55")
    ran(db, "x", "mentions", "2026-11-20T14:55")  # 15:55 in Berlin, then it fails
    ran(db, "x", "mentions", "2026-11-20T15:00", "failed")
    ran(db, "x", "mentions", "2026-11-21T06:55", "failed")
    digest = digest_of(db, tmp_path)
    assert collection(digest) == {
        "x": ("mentions not collected since 2026-11-20 15:55: the last run failed",)
    }
    x = digest.channels[0]
    assert x.platform == "x" and x.posts_collected and not x.mentions_collected
    assert not digest.mentions_collected
    text = render_text(digest)
    assert "COLLECTION INCOMPLETE" in text
    assert "  x: mentions not collected since 2026-11-20 15:55: the last run failed" in text
    assert f"OLDEST UNANSWERED MENTIONS ({digest.unanswered_total} in all, among those" in text
    row = next(line for line in text.splitlines() if line.startswith("  x             5 "))
    assert "  mentions not collected  " in row  # the per-channel table
    assert subject(digest).startswith(
        "[touchpoint] acme digest for 2026-11-20, collection incomplete on x, "
    )
    html = render_html(digest)
    assert 'id="collection"' in html and "the last run failed" in html


def test_digest_with_every_credential_refused_gives_no_all_clear(
    db: Database, tmp_path: Path
) -> None:
    """The account fails before any stream runs: its run is where the reason is."""
    for platform in fixture.PLATFORMS:
        ran(db, platform, "account", "2026-11-21T06:55", "auth_failed")
    digest = digest_of(db, tmp_path)
    refused = ("posts and mentions never collected: the platform refused the credentials",)
    assert collection(digest) == dict.fromkeys(fixture.PLATFORMS, refused)
    text = render_text(digest)
    assert "every mention of the day was answered" not in text
    assert "None among the mentions collected" in text
    assert "silent" not in text and "Too few" not in text
    assert "is not known: 4 not collected" in text
    assert "only 0 channels alive" not in subject(digest)


def test_digest_says_when_no_run_came_after_the_last_good_one(db: Database, tmp_path: Path) -> None:
    fixture.fill(db, collected_at=None)
    fixture.collected(db, fixture.BRAND, ["mastodon", "reddit", "bluesky"], fixture.COLLECTED_AT)
    ran(db, "x", "posts", "2026-11-20T12:00")
    ran(db, "x", "mentions", "2026-11-20T12:00")
    assert collection(digest_of(db, tmp_path)) == {
        "x": (
            "posts and mentions not collected since 2026-11-20 13:00: no run since (is "
            "`touchpoint run` running?)",
        )
    }


def test_digest_takes_the_reason_from_the_latest_run_of_the_stream_or_account(
    db: Database, tmp_path: Path
) -> None:
    fixture.fill(db, collected_at=None)
    fixture.collected(db, fixture.BRAND, ["mastodon", "reddit", "bluesky"], fixture.COLLECTED_AT)
    ran(db, "x", "posts", "2026-11-20T12:00")
    ran(db, "x", "posts", "2026-11-20T13:00", "deferred")  # rate limited, then refused
    ran(db, "x", "account", "2026-11-20T20:00", "auth_failed")
    ran(db, "x", "mentions", "2026-11-20T12:00")
    ran(db, "x", "mentions", "2026-11-21T01:00", "deferred")  # the latest: rate limited
    ran(db, "x", "mentions", "2026-11-21T01:05", "skipped")  # a skip is no run
    assert collection(digest_of(db, tmp_path)) == {
        "x": (
            "posts not collected since 2026-11-20 13:00: the platform refused the credentials",
            "mentions not collected since 2026-11-20 13:00: rate limited",
        )
    }


def test_digest_of_a_day_not_over_needs_collecting_up_to_an_hour_ago(
    db: Database, tmp_path: Path
) -> None:
    today = date(2026, 11, 21)  # AS_OF is 08:00 on the 21st in Berlin
    fixture.fill(db)  # last run five minutes before AS_OF
    assert digest_of(db, tmp_path, today).incomplete == ()
    late = fixture.AS_OF - timedelta(hours=2)
    db2 = store.open_db(tmp_path / "other.db")
    fixture.fill(db2, collected_at=late)
    assert set(collection(digest_of(db2, tmp_path, today))) == set(fixture.PLATFORMS)
    db2.conn.close()


def test_digest_does_not_judge_a_platform_no_longer_configured(
    db: Database, tmp_path: Path
) -> None:
    fixture.fill(db, collected_at=None)
    accounts = {p: fixture.BRAND for p in fixture.PLATFORMS if p != "bluesky"}
    fixture.collected(db, fixture.BRAND, list(accounts), fixture.COLLECTED_AT)  # not bluesky
    brand = fixture.settings(tmp_path / "touchpoint.toml").brands[0]
    period = day_period(fixture.DAY, fixture.TIMEZONE)
    digest = read_digest(db, replace(brand, accounts=accounts), period, as_of=fixture.AS_OF)
    assert "bluesky" in [c.platform for c in digest.channels]  # its rows still show
    assert digest.incomplete == ()
