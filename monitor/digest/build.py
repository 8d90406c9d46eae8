"""The digest's figures: pure functions from rows of the store to typed records. No I/O, no clock.

For one brand and one period (a day in the brand's time zone), per channel (platform):

* **content mix**: how many of the brand's broadcasts (``kind = 'post'``; replies are counted apart)
  the classifier labelled engaging, inspiring or sales-pitch, and their shares of the labelled ones;
* **self-promotion**: the sales-pitch share against the brand's target (its alert policy);
* **mentions** received in the period, the share **answered** by ``as_of`` (a brand reply to the
  mention, or, made after it, to another post of the same person in the thread: the alerts'
  definition, ``store.iter_mentions_with_answers``), and the
  **median** and **p90** response time (first brand reply − mention; p90 by the nearest rank);
* the **oldest unanswered** mentions of the period;
* **touchpoints alive**: channels where the brand posted or replied within ``ACTIVE_DAYS``; a brand
  needs at least ``MIN_TOUCHPOINTS``;
* **consistency**: a channel gone silent, or whose content mix or posting cadence over the last
  ``WINDOW_DAYS`` departs sharply from each of the brand's other channels, is named with why;
* the **change** against the previous period of the same length, judged the same way (its mentions
  count as answered by ``as_of`` minus one period, so both days had the same time to be answered);
* **collection**: a configured channel whose posts or mentions were not collected up to the end of
  the period (its runs failed, were refused, or did not run) is named with since when and why, so
  that no figure of it reads as an all-clear.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.models import ACCOUNT_STREAM, REFUSED, MentionRow

LABELS = ("engaging", "inspiring", "sales-pitch")
MIN_TOUCHPOINTS = 3
ACTIVE_DAYS = 7
WINDOW_DAYS = 14
MIX_DEPARTURE = 0.3  # total variation distance between two content mixes
CADENCE_FACTOR = 3.0  # posts, this many times more (or fewer) than on each other channel
MIN_MIX_POSTS = 5  # labelled broadcasts a mix is judged from
MAX_UNANSWERED = 5  # per channel
MAX_UNANSWERED_BRAND = 10
COLLECTED_STREAMS = ("posts", "mentions")  # the streams the figures come from
IN_FLIGHT = timedelta(hours=1)  # a period not over yet needs collecting up to this long ago
WHY = {
    "auth_failed": REFUSED,
    "failed": "the last run failed",
    "deferred": "rate limited",
    "interrupted": "the last run was stopped before it finished",
}


@dataclass(frozen=True)
class Period:
    """A half-open time range [start, end) in UTC, and how the digest names it."""

    start: datetime
    end: datetime
    label: str
    timezone: str = ""  # a local day's zone: its previous period is the local day before

    @property
    def length(self) -> timedelta:
        """How long the period is."""
        return self.end - self.start

    def previous(self) -> Period:
        """The local day before a day; else the period of the same length just before."""
        if self.timezone:
            return day_period(date.fromisoformat(self.label) - timedelta(days=1), self.timezone)
        return Period(self.start - self.length, self.start, f"the {_span(self.length)} before")


def _span(length: timedelta) -> str:
    hours = length.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours % 24 == 0 and hours > 24 else f"{hours:g} hours"


def day_period(day: date, timezone: str) -> Period:
    """The local day ``day`` in ``timezone`` (23, 24 or 25 hours around a DST change)."""
    zone = ZoneInfo(timezone)
    # in UTC: aware datetimes sharing one tzinfo subtract as wall times, hiding a DST hour
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return Period(start, end, day.isoformat(), timezone)


def window_period(start: datetime, end: datetime, timezone: str) -> Period:
    """Any [start, end), named by its local times (the demo's simulated day, for one)."""
    zone = ZoneInfo(timezone)
    first, last = start.astimezone(zone), end.astimezone(zone)
    label = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} {last:%Z}"
    return Period(start.astimezone(UTC), end.astimezone(UTC), label)


def local_yesterday(now: datetime, timezone: str) -> date:
    """The day before ``now``'s date in ``timezone``."""
    return now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


@dataclass(frozen=True)
class ActivityRow:
    """One of the brand's own items: a broadcast (``post``) or a ``reply``, with its label."""

    platform: str
    kind: str
    created_at: datetime
    label: str | None


@dataclass(frozen=True)
class Mix:
    """Labels of the brand's broadcasts; ``unlabelled`` ones are not classified yet."""

    engaging: int = 0
    inspiring: int = 0
    sales_pitch: int = 0
    unlabelled: int = 0

    @property
    def labelled(self) -> int:
        """Broadcasts with a label."""
        return self.engaging + self.inspiring + self.sales_pitch

    def count(self, label: str) -> int:
        """How many broadcasts carry ``label``."""
        return {"engaging": self.engaging, "inspiring": self.inspiring}.get(
            label, self.sales_pitch if label == "sales-pitch" else 0
        )

    def share(self, label: str) -> float | None:
        """The share of ``label`` among the labelled broadcasts (None when there are none)."""
        return self.count(label) / self.labelled if self.labelled else None

    def shares(self) -> dict[str, float]:
        """Every label's share (0 each when nothing is labelled)."""
        return {label: self.share(label) or 0.0 for label in LABELS}


@dataclass(frozen=True)
class Figures:
    """What happened on one channel (or on all of them) in one period."""

    posts: int
    replies: int
    mix: Mix
    mentions: int
    answered: int
    median_response: timedelta | None
    p90_response: timedelta | None

    @property
    def answered_share(self) -> float | None:
        """Answered mentions over mentions received (None without mentions)."""
        return self.answered / self.mentions if self.mentions else None

    @property
    def sales_share(self) -> float | None:
        """The sales-pitch share of the labelled broadcasts."""
        return self.mix.share("sales-pitch")


@dataclass(frozen=True)
class Change:
    """One figure now and in the previous period."""

    metric: str  # posts | replies | mentions | answered_share | median_response | sales_share
    current: float | None
    previous: float | None

    @property
    def delta(self) -> float | None:
        """current − previous, when both are known."""
        if self.current is None or self.previous is None:
            return None
        return self.current - self.previous


@dataclass(frozen=True)
class StreamRuns:
    """What one stream's runs say: when its latest successful run began, and when its latest run
    began and how it went (None: no run); ``left_out``: why the collector does not offer the
    stream, when its latest run was that skip (Reddit's inbox without a login)."""

    last_ok: datetime | None = None
    last_run: datetime | None = None
    outcome: str | None = None
    left_out: str | None = None


@dataclass(frozen=True)
class ChannelDigest:
    """One channel of a brand: its figures, how it compares, what waits for an answer."""

    platform: str
    current: Figures
    previous: Figures
    window_mix: Mix
    posts_per_day: float  # broadcasts a day over the consistency window
    last_activity: datetime | None
    alive: bool
    over_target: bool  # the period's sales-pitch share is above the brand's target
    notes: tuple[str, ...]  # why the channel is inconsistent (empty: it is not)
    unanswered: tuple[MentionRow, ...]  # the oldest, at most MAX_UNANSWERED
    unanswered_total: int
    changes: tuple[Change, ...] = ()
    uncollected: tuple[str, ...] = ()  # the streams not collected up to the period's end
    collection: tuple[str, ...] = ()  # since when and why they were not
    off: tuple[str, ...] = ()  # the streams the config does not collect here ([platforms] streams)

    @property
    def posts_collected(self) -> bool:
        """Whether the brand's posts here were collected up to the period's end."""
        return "posts" not in self.uncollected

    @property
    def mentions_collected(self) -> bool:
        """Whether the mentions here were collected up to the period's end."""
        return "mentions" not in self.uncollected

    def change(self, metric: str) -> Change:
        """The change of one figure against the previous period."""
        return next(c for c in self.changes if c.metric == metric)


@dataclass(frozen=True)
class BrandDigest:
    """Everything one brand's digest shows for one period."""

    brand: str
    timezone: str
    period: Period
    previous_period: Period
    as_of: datetime
    target_share: float
    channels: tuple[ChannelDigest, ...]
    total: Figures
    previous_total: Figures
    changes: tuple[Change, ...]
    alive: int
    min_alive: int
    unanswered: tuple[MentionRow, ...]  # brand-wide, oldest first, at most MAX_UNANSWERED_BRAND
    unanswered_total: int

    @property
    def enough_touchpoints(self) -> bool:
        """Whether at least ``min_alive`` channels are alive."""
        return self.alive >= self.min_alive

    @property
    def unjudged(self) -> int:
        """Channels not alive whose posts were not collected: they may be alive after all."""
        return sum(1 for c in self.channels if not c.alive and not c.posts_collected)

    @property
    def too_few_touchpoints(self) -> bool:
        """Fewer than ``min_alive`` channels alive, even were every unjudged one alive."""
        return self.alive + self.unjudged < self.min_alive

    @property
    def inconsistent(self) -> tuple[ChannelDigest, ...]:
        """The channels named as inconsistent, with their reasons in ``notes``."""
        return tuple(c for c in self.channels if c.notes)

    @property
    def incomplete(self) -> tuple[ChannelDigest, ...]:
        """The channels not collected up to the period's end, with why in ``collection``."""
        return tuple(c for c in self.channels if c.uncollected)

    @property
    def mentions_collected(self) -> bool:
        """Whether every channel's mentions were collected up to the period's end."""
        return all(c.mentions_collected for c in self.channels)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` of them at or below."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _in(when: datetime, period: Period) -> bool:
    return period.start <= when < period.end


def build_mix(rows: Iterable[ActivityRow]) -> Mix:
    """Count the labels of the broadcasts among ``rows``."""
    counts = dict.fromkeys((*LABELS, None), 0)
    for row in rows:
        if row.kind == "post":
            counts[row.label if row.label in LABELS else None] += 1
    return Mix(counts["engaging"], counts["inspiring"], counts["sales-pitch"], counts[None])


def build_figures(
    activity: Sequence[ActivityRow],
    mentions: Sequence[MentionRow],
    *,
    period: Period,
    as_of: datetime,
) -> Figures:
    """The figures of ``period`` from rows that may cover more time (they are filtered here)."""
    own = [r for r in activity if _in(r.created_at, period)]
    received = [m for m in mentions if _in(m.created_at, period)]
    waits = [
        (m.answered_at - m.created_at).total_seconds()
        for m in received
        if m.answered_at is not None and m.answered_at <= as_of
    ]
    return Figures(
        posts=sum(1 for r in own if r.kind == "post"),
        replies=sum(1 for r in own if r.kind == "reply"),
        mix=build_mix(own),
        mentions=len(received),
        answered=len(waits),
        median_response=timedelta(seconds=statistics.median(waits)) if waits else None,
        p90_response=timedelta(seconds=percentile(waits, 0.9)) if waits else None,
    )


def unanswered(
    mentions: Iterable[MentionRow], *, period: Period, as_of: datetime
) -> list[MentionRow]:
    """The period's mentions with no answer by ``as_of``, oldest first."""
    return sorted(
        (
            m
            for m in mentions
            if _in(m.created_at, period) and (m.answered_at is None or m.answered_at > as_of)
        ),
        key=lambda m: (m.created_at, m.id),
    )


def build_digest(
    brand: str,
    *,
    timezone: str,
    platforms: Sequence[str],
    period: Period,
    as_of: datetime,
    target_share: float,
    activity: Sequence[ActivityRow],
    mentions: Sequence[MentionRow],
    last_activity: Mapping[str, datetime | None],
    runs: Mapping[tuple[str, str], StreamRuns],
    streams: Mapping[str, Sequence[str]] | None = None,
) -> BrandDigest:
    """Build a brand's digest for ``period``.

    :param platforms: the brand's channels (its configured accounts); a platform seen only in the
        rows is added after them.
    :param activity: the brand's posts and replies from ``WINDOW_DAYS`` before ``period.end``.
    :param mentions: the mentions of ``period`` and of the one before it.
    :param last_activity: per platform, the brand's last post or reply before ``period.end``.
    :param runs: per (platform, stream) of ``platforms``, for ``COLLECTED_STREAMS`` and
        ``ACCOUNT_STREAM``, what its runs say (a stream left out never ran).
    :param streams: per platform, the streams the config collects (missing: all); one it does
        not collect is named in ``ChannelDigest.off``, not as collection incomplete.
    """
    previous = period.previous()
    earlier = as_of - period.length
    seen = {r.platform for r in activity} | {m.platform for m in mentions}
    channels = list(dict.fromkeys([*platforms, *sorted(seen)]))
    window_start = period.end - timedelta(days=WINDOW_DAYS)
    window = [r for r in activity if window_start <= r.created_at < period.end]
    needed = collected_by(period, as_of)
    parts = []
    for platform in channels:
        own = [r for r in activity if r.platform == platform]
        heard = [m for m in mentions if m.platform == platform]
        current = build_figures(own, heard, period=period, as_of=as_of)
        before = build_figures(own, heard, period=previous, as_of=earlier)
        waiting = unanswered(heard, period=period, as_of=as_of)
        last = last_activity.get(platform)
        wanted = (streams or {}).get(platform, COLLECTED_STREAMS)
        off = tuple(s for s in COLLECTED_STREAMS if s not in wanted)
        uncollected, collection = (
            judge_collection(platform, runs, needed=needed, zone=timezone, off=off)
            if platform in platforms
            else ((), ())  # no longer configured: not collected on purpose
        )
        parts.append(
            ChannelDigest(
                platform=platform,
                current=current,
                previous=before,
                window_mix=build_mix(r for r in window if r.platform == platform),
                posts_per_day=sum(1 for r in window if r.platform == platform and r.kind == "post")
                / WINDOW_DAYS,
                last_activity=last,
                alive=last is not None and last >= period.end - timedelta(days=ACTIVE_DAYS),
                over_target=(current.sales_share or 0.0) > target_share,
                notes=(),
                unanswered=tuple(waiting[:MAX_UNANSWERED]),
                unanswered_total=len(waiting),
                changes=build_changes(current, before),
                uncollected=uncollected,
                collection=collection,
                off=off if platform in platforms else (),
            )
        )
    judged = judge_consistency(parts, period_end=period.end)
    total = build_figures(activity, mentions, period=period, as_of=as_of)
    previous_total = build_figures(activity, mentions, period=previous, as_of=earlier)
    waiting = unanswered(mentions, period=period, as_of=as_of)
    return BrandDigest(
        brand=brand,
        timezone=timezone,
        period=period,
        previous_period=previous,
        as_of=as_of,
        target_share=target_share,
        channels=tuple(judged),
        total=total,
        previous_total=previous_total,
        changes=build_changes(total, previous_total),
        alive=sum(1 for c in parts if c.alive),
        min_alive=MIN_TOUCHPOINTS,
        unanswered=tuple(waiting[:MAX_UNANSWERED_BRAND]),
        unanswered_total=len(waiting),
    )


def collected_by(period: Period, as_of: datetime) -> datetime:
    """How far the streams must have been collected for ``period``'s figures to be whole: to its
    end, or for a period not over by ``as_of``, to ``IN_FLIGHT`` before ``as_of``."""
    return min(period.end, as_of - IN_FLIGHT)


def judge_collection(
    platform: str,
    runs: Mapping[tuple[str, str], StreamRuns],
    *,
    needed: datetime,
    zone: str,
    off: Sequence[str] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The channel's streams not collected up to ``needed``, and a note per reason: since when
    (local time in ``zone``) and why, by the latest run of the stream or of the account.
    ``off``: the streams the config does not collect here (not judged)."""
    account = runs.get((platform, ACCOUNT_STREAM), StreamRuns())
    behind: dict[str, list[str]] = {}
    for stream in COLLECTED_STREAMS:
        if stream in off:
            continue
        own = runs.get((platform, stream), StreamRuns())
        if own.last_ok is not None and own.last_ok >= needed:
            continue
        behind.setdefault(_not_collected(own, account, zone), []).append(stream)
    streams = tuple(s for names in behind.values() for s in names)
    notes = tuple(f"{' and '.join(names)} {why}" for why, names in behind.items())
    return streams, notes


def _not_collected(own: StreamRuns, account: StreamRuns, zone: str) -> str:
    """Since when and why a stream was not collected, e.g. "not collected since 2026-11-20 15:55:
    the platform refused the credentials"."""
    latest = max(
        (r for r in (own, account) if r.last_run is not None),
        key=lambda r: r.last_run or datetime.min.replace(tzinfo=UTC),
        default=StreamRuns(),
    )
    since = "never collected"
    if own.last_ok is not None:
        since = f"not collected since {own.last_ok.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"
    if own.left_out:
        return f"{since}: {own.left_out}"
    why = WHY.get(latest.outcome or "")
    if why:
        return f"{since}: {why}"
    if latest.last_run is None:
        return f"{since}: no collection has run"
    return f"{since}: no run since (is `touchpoint run` running?)"


def _seconds(span: timedelta | None) -> float | None:
    return span.total_seconds() if span is not None else None


def build_changes(current: Figures, previous: Figures) -> tuple[Change, ...]:
    """The brand-wide figures now against the previous period."""
    return (
        Change("posts", current.posts, previous.posts),
        Change("replies", current.replies, previous.replies),
        Change("mentions", current.mentions, previous.mentions),
        Change("answered_share", current.answered_share, previous.answered_share),
        Change(
            "median_response",
            _seconds(current.median_response),
            _seconds(previous.median_response),
        ),
        Change("p90_response", _seconds(current.p90_response), _seconds(previous.p90_response)),
        Change("sales_share", current.sales_share, previous.sales_share),
    )


def judge_consistency(
    channels: Sequence[ChannelDigest], *, period_end: datetime
) -> list[ChannelDigest]:
    """Return the channels with ``notes`` saying why each departs from the others, if it does.

    A silent channel is named as such (one whose posts were not collected is not judged silent).
    A living channel departs when its posting cadence, or its content mix, is far from that of
    every other living channel: at least ``CADENCE_FACTOR`` times more (or fewer) posts than each,
    or a mix at a total variation distance of at least ``MIX_DEPARTURE`` from each. It takes two
    others to tell which channel is the odd one out.
    """
    alive = [c for c in channels if c.alive]
    judged = []
    for channel in channels:
        if not channel.alive and not channel.posts_collected:
            notes = ["silence not judged: the brand's posts here were not collected"]
        elif not channel.alive:
            notes = [_silence(channel, period_end)]
        else:
            others = [c for c in alive if c.platform != channel.platform]
            notes = [n for n in (_cadence(channel, others), _mix(channel, others)) if n]
        judged.append(replace(channel, notes=tuple(notes)))
    return judged


def _silence(channel: ChannelDigest, period_end: datetime) -> str:
    if channel.last_activity is None:
        return "silent: the brand has not posted or replied here"
    days = (period_end - channel.last_activity).days
    return f"silent: nothing posted or replied for {days} days"


def _ratio(a: float, b: float) -> float:
    if a == b:
        return 1.0
    return math.inf if min(a, b) == 0 else max(a, b) / min(a, b)


def _span_of(values: Sequence[float], fmt: str) -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low} to {high}"


def _cadence(channel: ChannelDigest, others: Sequence[ChannelDigest]) -> str | None:
    rates = [c.posts_per_day * 7 for c in others]
    rate = channel.posts_per_day * 7
    if len(rates) < 2 or min(_ratio(rate, r) for r in rates) < CADENCE_FACTOR:
        return None
    if not (all(rate > r for r in rates) or all(rate < r for r in rates)):
        return None
    return (
        f"cadence: {rate:.1f} posts a week here against {_span_of(rates, '.1f')} on the other "
        f"channels in the last {WINDOW_DAYS} days"
    )


def _mix(channel: ChannelDigest, others: Sequence[ChannelDigest]) -> str | None:
    mixes = [c.window_mix.shares() for c in others if c.window_mix.labelled >= MIN_MIX_POSTS]
    if channel.window_mix.labelled < MIN_MIX_POSTS or len(mixes) < 2:
        return None
    here = channel.window_mix.shares()
    distances = [sum(abs(here[lb] - m[lb]) for lb in LABELS) / 2 for m in mixes]
    if min(distances) < MIX_DEPARTURE:
        return None
    label = max(LABELS, key=lambda lb: min(abs(here[lb] - m[lb]) for m in mixes))
    return (
        f"content mix: {here[label]:.0%} {label} here against "
        f"{_span_of([m[label] for m in mixes], '.0%')} on the other channels in the last "
        f"{WINDOW_DAYS} days"
    )
