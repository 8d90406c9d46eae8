"""The digest's figures on the hand-built store of ``fixture.py``, worked out by hand here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from monitor import store
from monitor.digest import BrandDigest, day_period, local_yesterday, read_digest
from monitor.digest.build import (
    ActivityRow,
    ChannelDigest,
    Mix,
    StreamRuns,
    build_digest,
    percentile,
    window_period,
)
from monitor.models import Post
from tests.digest import fixture
from tests.test_store import post


def channel(digest: BrandDigest, platform: str) -> ChannelDigest:
    return next(c for c in digest.channels if c.platform == platform)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_digest_day_is_the_local_day(digest: BrandDigest) -> None:
    # Berlin is UTC+1 in November: the 20th runs from 23:00 UTC on the 19th
    assert digest.period.start == datetime(2026, 11, 19, 23, 0, tzinfo=UTC)
    assert digest.period.end == datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    assert digest.period.label == "2026-11-20"
    assert digest.previous_period.label == "2026-11-19"
    assert local_yesterday(fixture.AS_OF, fixture.TIMEZONE) == fixture.DAY
    # 00:30 in Berlin on the 21st is still the 20th in UTC: yesterday is the 20th there
    late = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert local_yesterday(late, fixture.TIMEZONE) == fixture.DAY


def test_digest_content_mix_counts_and_shares(digest: BrandDigest) -> None:
    x = channel(digest, "x").current
    # p1..p5 (p6 is 23:59 the day before, p7 00:00 the day after); p5 has no label yet
    assert x.posts == 5
    assert x.mix == Mix(engaging=2, inspiring=1, sales_pitch=1, unlabelled=1)
    assert x.mix.share("engaging") == 2 / 4
    assert x.sales_share == 1 / 4
    # replies are counted apart and never in the mix: r1, r2, r3 and s2 (to yesterday's n2)
    assert x.replies == 4
    mastodon = channel(digest, "mastodon")
    assert mastodon.current.mix == Mix(engaging=1, sales_pitch=1)
    assert mastodon.current.sales_share == 0.5
    # the target is at most 20%: x (25%) and mastodon (50%) are above it, reddit (0%) is not
    assert [c.over_target for c in digest.channels] == [True, True, False, False]
    assert digest.target_share == 0.2
    assert digest.total.mix == Mix(engaging=3, inspiring=2, sales_pitch=2, unlabelled=1)
    assert digest.total.sales_share == 2 / 7
    assert (digest.total.posts, digest.total.replies) == (8, 6)


def test_digest_mentions_answered_and_response_times(digest: BrandDigest) -> None:
    x = channel(digest, "x").current
    # m1..m6 and f3 (the follow-up is a mention too); k1 is a keyword hit
    assert x.mentions == 7
    # answered by 08:00 local next day: m1 10 min, m2 30 min, m3 120 min (its follow-up was
    # answered), f3 100 min, m5 150 min (after midnight); m4 never, m6 only at 11:00
    assert x.answered == 5
    assert x.answered_share == 5 / 7
    # sorted 10, 30, 100, 120, 150: median the 3rd; p90 nearest rank ceil(0.9 * 5) = 5th
    assert x.median_response == minutes(100)
    assert x.p90_response == minutes(150)
    mastodon = channel(digest, "mastodon").current
    assert (mastodon.mentions, mastodon.answered) == (2, 2)
    assert mastodon.median_response == minutes(12)  # (4 + 20) / 2
    assert mastodon.p90_response == minutes(20)  # ceil(0.9 * 2) = 2nd
    total = digest.total
    assert (total.mentions, total.answered) == (9, 7)
    # sorted 4, 10, 20, 30, 100, 120, 150: median the 4th, p90 the ceil(6.3) = 7th
    assert total.median_response == minutes(30)
    assert total.p90_response == minutes(150)
    reddit = channel(digest, "reddit").current
    assert reddit.mentions == 0 and reddit.answered_share is None
    assert reddit.median_response is None


def test_digest_oldest_unanswered_with_links(digest: BrandDigest) -> None:
    x = channel(digest, "x")
    assert [m.id for m in x.unanswered] == ["x:m4", "x:m6"]
    assert x.unanswered_total == 2
    assert [m.id for m in digest.unanswered] == ["x:m4", "x:m6"]
    assert digest.unanswered[1].url == "https://x.com/fay/status/6"
    assert digest.unanswered[1].author == "fay"


def test_digest_change_against_the_day_before(digest: BrandDigest) -> None:
    x = channel(digest, "x").previous
    # the 19th: q1 and p6 (23:59 local); n1 answered in 20 min; n2 answered only at 10:00 local
    # on the 20th, after that day's digest time (08:00): not answered then
    assert (x.posts, x.replies, x.mentions, x.answered) == (2, 1, 2, 1)
    assert x.median_response == minutes(20)
    changes = {c.metric: c for c in digest.changes}
    assert (changes["posts"].current, changes["posts"].previous) == (8, 2)
    assert changes["mentions"].delta == 7
    assert changes["answered_share"].delta == pytest.approx(7 / 9 - 1 / 2)
    assert changes["median_response"].delta == 10 * 60  # 30 min against 20 min
    assert changes["p90_response"].delta == 130 * 60  # 2 h 30 min against 20 min
    assert changes["sales_share"].delta == pytest.approx(2 / 7)
    assert channel(digest, "x").change("mentions").delta == 5
    assert channel(digest, "mastodon").change("median_response").delta is None
    assert channel(digest, "x").change("p90_response").delta == 130 * 60  # 150 min against 20


def test_digest_touchpoints_and_consistency(digest: BrandDigest) -> None:
    assert [c.platform for c in digest.channels] == ["x", "mastodon", "reddit", "bluesky"]
    # bluesky last posted on the 10th: more than 7 days before the day's end
    assert [c.alive for c in digest.channels] == [True, True, True, False]
    assert digest.alive == 3 and digest.enough_touchpoints
    notes = {c.platform: c.notes for c in digest.channels}
    assert notes["bluesky"] == ("silent: nothing posted or replied for 10 days",)
    # posts a day over 14 days: x 7/14, mastodon 2/14, reddit 1/14
    assert channel(digest, "x").posts_per_day == 0.5
    # posts a week: x 3.5, 3.5 times mastodon's (1.0) and 7 times reddit's (0.5): it departs;
    # reddit posts half as often as mastodon only: it does not
    assert notes["x"] == (
        "cadence: 3.5 posts a week here against 0.5 to 1.0 on the other channels in the last "
        "14 days",
    )
    assert notes["reddit"] == () and notes["mastodon"] == ()
    # x's mix is not judged: mastodon and reddit have fewer than 5 labelled posts each
    assert [c.platform for c in digest.inconsistent] == ["x", "bluesky"]


def test_digest_percentile_is_the_nearest_rank() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0
    assert percentile([10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 11.0], 0.9) == 10.0
    with pytest.raises(ValueError):
        percentile([], 0.9)


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 11, 20), 24)],
    ids=["spring-forward", "fall-back", "plain"],
)
def test_digest_day_length_follows_daylight_saving(day: date, hours: int) -> None:
    period = day_period(day, "Europe/Berlin")
    assert period.length == timedelta(hours=hours)
    before = period.previous()
    assert before.end == period.start
    assert before == day_period(day - timedelta(days=1), "Europe/Berlin")  # the local day


def _row(platform: str, label: str, day: int) -> ActivityRow:
    when = datetime(2026, 11, day, 12, tzinfo=UTC)
    return ActivityRow(platform=platform, kind="post", created_at=when, label=label)


def test_digest_content_mix_departure_names_the_channel() -> None:
    period = window_period(
        datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC), "UTC"
    )
    rows = []
    for day in range(10, 20):  # one post a day on each channel: same cadence
        rows.append(_row("x", "sales-pitch" if day % 5 else "engaging", day))
        for platform in ("mastodon", "reddit"):
            rows.append(_row(platform, "engaging" if day % 2 else "inspiring", day))
    digest = build_digest(
        "acme",
        timezone="UTC",
        platforms=["x", "mastodon", "reddit"],
        period=period,
        as_of=period.end,
        target_share=0.2,
        activity=rows,
        mentions=[],
        last_activity=dict.fromkeys(
            ["x", "mastodon", "reddit"], datetime(2026, 11, 19, 12, tzinfo=UTC)
        ),
        runs={
            (p, s): StreamRuns(last_ok=period.end)
            for p in ("x", "mastodon", "reddit")
            for s in ("posts", "mentions")
        },
    )
    notes = {c.platform: c.notes for c in digest.channels}
    # x: 8 of 10 sell; the others none: x is far from each, they are alike
    assert notes == {
        "x": (
            "content mix: 80% sales-pitch here against 0% on the other channels in the last "
            "14 days",
        ),
        "mastodon": (),
        "reddit": (),
    }


def test_digest_too_few_touchpoints_is_said(db: Database, tmp_path: Path) -> None:
    fixture.fill(db, [i for i in fixture.ITEMS if i.platform in ("x", "bluesky")])
    settings = fixture.settings(tmp_path / "touchpoint.toml")
    digest = read_digest(
        db, settings.brands[0], day_period(fixture.DAY, fixture.TIMEZONE), as_of=fixture.AS_OF
    )
    # x alive; mastodon and reddit never posted; bluesky silent since the 10th
    assert digest.alive == 1 and not digest.enough_touchpoints
    notes = {c.platform: c.notes for c in digest.channels}
    assert notes["mastodon"] == ("silent: the brand has not posted or replied here",)
    assert notes["x"] == ()  # no two living others to compare it with


def test_digest_store_queries_search_indexes(db: Database) -> None:
    start, end = "2026-11-19T23:00:00Z", "2026-11-20T23:00:00Z"
    for sql, params in [
        (store.DIGEST_ACTIVITY_SQL, ("acme", start, end)),
        (store.DIGEST_MENTIONS_SQL, ("acme", "acme", start, end)),
        (store.DIGEST_LAST_ACTIVITY_SQL, ("acme", "x", "post", end)),
        (store.DIGEST_STREAM_RUNS_SQL, ("acme", "x", "mentions")),
    ]:
        plan = store.explain(db, sql, params)
        assert plan and not [step for step in plan if step.startswith("SCAN")], plan
    # the answer to a mention is looked up by in_reply_to_id, not by walking the brand's posts
    plan = store.explain(db, store.DIGEST_MENTIONS_SQL, ("acme", "acme", start, end))
    assert any("idx_posts_in_reply_to_id" in step for step in plan), plan


def test_digest_mention_rows_are_shared_with_the_alerts(db: Database) -> None:
    fixture.fill(db)
    since = datetime(2026, 11, 19, 23, tzinfo=UTC)
    alert_rows = {r[0]: r[6] for r in store.iter_mentions_with_answers(db, "acme", since=since)}
    until = datetime(2026, 11, 20, 23, tzinfo=UTC)
    rows = {r[0]: r[6] for r in store.iter_mentions_between(db, "acme", start=since, end=until)}
    assert rows == alert_rows and len(rows) == 9
    assert rows["x:m3"] == "2026-11-20T12:00:00Z"  # answered through the follow-up


def test_digest_mastodon_follow_up_answered_answers_the_mention(db: Database) -> None:
    """Mastodon statuses carry no conversation id: a follow-up is the same author's reply to
    their mention, and the brand's answer to it answers the mention. Another person's reply in
    the thread, answered, does not answer the mention."""
    Item = fixture.Item
    thread = (
        Item("mm3", "mastodon", "mention", "2026-11-20T15:00", author="lee"),
        Item("mf3", "mastodon", "mention", "2026-11-20T15:10", author="lee", reply_to="mm3"),
        Item("mr3", "mastodon", "reply", "2026-11-20T16:00", "engaging", reply_to="mf3"),
        Item("mm4", "mastodon", "mention", "2026-11-20T15:00", author="max"),
        Item("mo4", "mastodon", "mention", "2026-11-20T15:05", author="ned", reply_to="mm4"),
        Item("mr4", "mastodon", "reply", "2026-11-20T15:30", "engaging", reply_to="mo4"),
    )
    alerts = answers_on_the_day(db, thread)
    assert alerts["mastodon:mm3"] == alerts["mastodon:mf3"] == "2026-11-20T16:00:00Z"
    assert alerts["mastodon:mo4"] == "2026-11-20T15:30:00Z"
    assert alerts["mastodon:mm4"] is None


def test_digest_a_follow_up_is_answered_by_the_brand_answering_the_thread_after_it(
    db: Database,
) -> None:
    """A person nags (a follow-up to their own mention); the brand then answers the first
    mention: that answers the follow-up too, on X (same conversation) and Mastodon (the
    follow-up replies to the mention). An answer given before the follow-up does not."""
    Item = fixture.Item
    thread = (
        Item("m5", "x", "mention", "2026-11-20T13:00", author="eve", conversation="m5"),
        Item(
            "f5", "x", "mention", "2026-11-20T13:10", author="eve", reply_to="m5", conversation="m5"
        ),
        Item("r5", "x", "reply", "2026-11-20T14:00", "engaging", reply_to="m5", conversation="m5"),
        Item("mm6", "mastodon", "mention", "2026-11-20T15:00", author="fay"),
        Item("mf6", "mastodon", "mention", "2026-11-20T15:10", author="fay", reply_to="mm6"),
        Item("mr6", "mastodon", "reply", "2026-11-20T16:00", "engaging", reply_to="mm6"),
        Item("m7", "x", "mention", "2026-11-20T13:00", author="gus", conversation="m7"),
        Item("r7", "x", "reply", "2026-11-20T13:05", "engaging", reply_to="m7", conversation="m7"),
        Item(
            "f7", "x", "mention", "2026-11-20T13:30", author="gus", reply_to="r7", conversation="m7"
        ),
    )
    alerts = answers_on_the_day(db, thread)
    assert alerts["x:m5"] == alerts["x:f5"] == "2026-11-20T14:00:00Z"
    assert alerts["mastodon:mm6"] == alerts["mastodon:mf6"] == "2026-11-20T16:00:00Z"
    assert alerts["x:m7"] == "2026-11-20T13:05:00Z" and alerts["x:f7"] is None


def answers_on_the_day(db: Database, thread: tuple[fixture.Item, ...]) -> dict[str, str | None]:
    """The fixture's day plus ``thread``: each mention's answer time, as the alerts see it,
    checked to be the digest's too (the two share one definition of answered)."""
    fixture.fill(db, fixture.ITEMS + thread)
    since = datetime(2026, 11, 19, 23, tzinfo=UTC)
    alerts = {r[0]: r[6] for r in store.iter_mentions_with_answers(db, "acme", since=since)}
    until = datetime(2026, 11, 20, 23, tzinfo=UTC)
    digest = {r[0]: r[6] for r in store.iter_mentions_between(db, "acme", start=since, end=until)}
    assert digest == alerts
    return alerts


def mention_on_the_day(native_id: str, brand: str, *, by: str, text: str) -> Post:
    """An X post of ``by`` mentioning ``brand`` at 10:00 UTC on the fixture's day."""
    return post(
        native_id,
        brand=brand,
        author_id=by,
        author_handle=by,
        text=text,
        url=f"https://x.com/{by}/status/{native_id}",
        conversation_id=f"x:{native_id}",
        metrics={},
    )


def test_digest_a_post_of_two_brands_counts_for_each_in_its_role(
    db: Database, tmp_path: Path
) -> None:
    fixture.fill(db)
    extra = '[[brands]]\nname = "globex"\ntimezone = "UTC"\naccounts = { x = "globex" }\n'
    settings = fixture.settings(tmp_path / "touchpoint.toml", extra)
    acme, globex = (next(b for b in settings.brands if b.name == n) for n in ("acme", "globex"))
    period = day_period(fixture.DAY, fixture.TIMEZONE)
    before = read_digest(db, acme, period, as_of=fixture.AS_OF)
    # acme's post tags globex: globex's mentions stream stores it first, then acme's posts
    shout = mention_on_the_day("shout", "globex", by="acme", text="Thanks @globex for the beans!")
    # and a customer asks both: stored for globex first too
    ask = mention_on_the_day("ask", "globex", by="cy", text="@acme @globex?")
    store.upsert_posts(db, [shout, ask])
    store.upsert_posts(db, [replace(shout, brand="acme", is_brand=True, kind="post")])
    store.upsert_posts(db, [replace(ask, brand="acme")])
    after = read_digest(db, acme, period, as_of=fixture.AS_OF)
    assert after.total.posts == before.total.posts + 1
    assert after.total.mentions == before.total.mentions + 1
    assert "x:ask" in [m.id for m in after.unanswered]
    of_globex = read_digest(db, globex, day_period(fixture.DAY, "UTC"), as_of=fixture.AS_OF)
    # acme's post is no mention waiting for globex's answer: a monitored brand wrote it
    assert (of_globex.total.mentions, of_globex.total.posts) == (1, 0)
    assert [m.id for m in of_globex.unanswered] == ["x:ask"]


def test_digest_counts_the_replies_of_the_brand_answering_for_it(
    db: Database, tmp_path: Path
) -> None:
    care = '[[brands]]\nname = "acme-care"\naccounts = { x = "acmecare" }\n'
    settings = fixture.settings(tmp_path / "touchpoint.toml", care)
    period = day_period(fixture.DAY, fixture.TIMEZONE)
    ask = mention_on_the_day("ask", "acme", by="cy", text="@acme where is my order?")
    answer = replace(
        ask,
        native_id="answer",
        brand="acme-care",
        author_id="care",
        author_handle="acmecare",
        is_brand=True,
        kind="reply",
        text="@cy on its way!",
        created_at="2026-11-20T10:20:00Z",
        in_reply_to_id="x:ask",
    )
    store.upsert_posts(db, [ask, answer])
    acme = next(b for b in settings.brands if b.name == "acme")
    alone = read_digest(db, acme, period, as_of=fixture.AS_OF)
    assert (alone.total.mentions, alone.total.answered) == (1, 0)
    helped = read_digest(db, replace(acme, answered_by=("acme-care",)), period, as_of=fixture.AS_OF)
    assert (helped.total.mentions, helped.total.answered) == (1, 1)
    assert helped.total.median_response == minutes(20)
