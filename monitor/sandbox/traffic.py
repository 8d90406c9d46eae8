"""Deterministic, platform-neutral social traffic for the sandbox servers.

The texts are real: customer tweets and brand replies from the "Customer Support on Twitter"
corpus sample (``data/twcs_sample.csv``) and brand broadcast posts
(``data/brand_posts_labeled.csv``).
Only the addressees are rewritten so that the traffic is about one brand.  Nothing here knows about
any platform's wire format; each sandbox server maps :class:`TrafficItem` onto its own API.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import logging
import math
import re
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from random import Random
from typing import ClassVar, TypedDict, Unpack

from monitor import clock
from monitor.sandbox.server import SandboxServer, as_utc

logger = logging.getLogger(__name__)

POST = "post"
REPLY = "reply"
MENTION = "mention"
KEYWORD = "keyword"
KINDS = (POST, REPLY, MENTION, KEYWORD)

MAX_TEXT_CHARS = 280
ELLIPSIS = "…"

_LEADING_ADDRESSEES = re.compile(r"^[\s.,:;]*(?:@\w+[\s,:;]*)+")
_HANDLE = re.compile(r"@(\w+)")
_HANDLE_RUN = re.compile(r"@\w+(?:[\s,]+@\w+)*")
_MIN_WORD_CHARS = 8


@dataclass(frozen=True)
class TrafficItem:
    """One generated item, in created_at order (``seq`` is its index in the traffic list)."""

    seq: int
    kind: str
    author_handle: str
    text: str
    created_at: datetime
    in_reply_to_seq: int | None
    root_seq: int
    lang: str
    likes: int
    reposts: int
    replies: int
    quotes: int
    label: str | None = None  # posts only: the dataset label (inspiring / engaging / sales-pitch)


class TrafficRates(TypedDict, total=False):
    """The tunable rates of :func:`generate_traffic`, for callers that forward them."""

    posts_per_day: float
    mentions_per_day: float
    keyword_hits_per_day: float
    answered_share: float
    late_share: float


@dataclass(frozen=True)
class _CorpusText:
    text: str
    label: str | None = None


@dataclass
class _Draft:
    key: int
    kind: str
    author_handle: str
    text: str
    created_at: datetime
    answers_key: int | None = None
    label: str | None = None
    reply_count: int = 0


# --------------------------------------------------------------------------- corpus loading


def _read_csv(name: str) -> list[dict[str, str]]:
    resource = files("monitor.sandbox") / "data" / name
    with resource.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        return list(csv.DictReader(text))


def _usable(text: str) -> bool:
    return sum(ch.isalnum() for ch in _HANDLE.sub("", text)) >= _MIN_WORD_CHARS


@functools.cache
def _support_texts(inbound: str) -> tuple[str, ...]:
    rows = _read_csv("twcs_sample.csv")
    texts = tuple(r["text"].strip() for r in rows if r["inbound"] == inbound)
    return tuple(t for t in texts if _usable(t))


def customer_texts() -> tuple[str, ...]:
    """Inbound (customer to brand) texts of the customer-support corpus."""
    return _support_texts("True")


def brand_reply_texts() -> tuple[str, ...]:
    """Outbound (brand reply) texts of the customer-support corpus."""
    return _support_texts("False")


@functools.cache
def _brand_posts() -> tuple[_CorpusText, ...]:
    rows = _read_csv("brand_posts_labeled.csv")
    posts = (_CorpusText(r["text"].strip(), r["label"] or None) for r in rows)
    return tuple(p for p in posts if _usable(p.text))


def brand_post_texts() -> tuple[str, ...]:
    """Brand broadcast post texts."""
    return tuple(p.text for p in _brand_posts())


# --------------------------------------------------------------------------- text rewriting


def fit(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Return ``text`` cut to at most ``limit`` characters, marking a cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def _strip_addressees(text: str) -> str:
    return _LEADING_ADDRESSEES.sub("", text, count=1).strip()


def anonymous_handle(token: str) -> str:
    """A generated customer handle for a corpus @-token that is an anonymised numeric id."""
    return f"user{1000 + int(token) % 9000}"


def _to_brand_mention(text: str, brand_handle: str) -> str:
    """Customer text re-addressed to the brand: ``@brand <text>``, other @-runs name the brand."""
    body = _HANDLE_RUN.sub(brand_handle, _strip_addressees(text))
    return fit(f"@{brand_handle} {body}")


def _to_customer_reply(text: str, brand_handle: str, customer: str) -> str:
    """Brand reply text re-addressed to ``customer``."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(1)
        return "@" + (anonymous_handle(token) if token.isdigit() else brand_handle)

    body = _HANDLE.sub(swap, _strip_addressees(text))
    return fit(f"@{customer} {body}")


def _without_brand_handle(text: str, brand_handle: str) -> str:
    return re.sub(rf"@(?={re.escape(brand_handle)})", "", text, flags=re.IGNORECASE)


def _keyword_text(text: str, brand_handle: str, keyword: str, rng: Random) -> str:
    """Customer text not addressed to anyone, with ``keyword`` inserted as a word."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(1)
        return "@" + anonymous_handle(token) if token.isdigit() else match.group(0)

    body = _HANDLE.sub(swap, _strip_addressees(text))
    form = rng.choice(("hashtag", "prefix", "suffix"))
    if form == "hashtag" and re.fullmatch(r"\w+", keyword):
        result = f"{fit(body, MAX_TEXT_CHARS - len(keyword) - 2)} #{keyword}"
    elif form == "prefix":
        result = f"{keyword} {fit(body, MAX_TEXT_CHARS - len(keyword) - 1)}"
    else:
        result = f"{fit(body, MAX_TEXT_CHARS - len(keyword) - 1)} {keyword}"
    return _without_brand_handle(result, brand_handle)


# --------------------------------------------------------------------------- generation


def _count(rate: float, days: float) -> int:
    return max(0, round(rate * days))


def _random_times(rng: Random, start: datetime, end: datetime, n: int) -> list[datetime]:
    span = math.floor((end - start).total_seconds())
    if span <= 0:
        return []
    return [start + timedelta(seconds=rng.randrange(span)) for _ in range(n)]


def _customer_handle(rng: Random, brand_handle: str) -> str:
    while True:
        handle = f"user{rng.randrange(1000, 10000)}"
        if handle.lower() != brand_handle.lower():
            return handle


def _posts(
    rng: Random, brand_handle: str, times: list[datetime], keys: Iterator[int]
) -> list[_Draft]:
    corpus = _brand_posts()
    drafts = []
    for when in times:
        post = rng.choice(corpus)
        drafts.append(
            _Draft(next(keys), POST, brand_handle, fit(post.text), when, None, post.label)
        )
    return drafts


def _mentions(
    rng: Random, brand_handle: str, times: list[datetime], keys: Iterator[int]
) -> list[_Draft]:
    corpus = customer_texts()
    return [
        _Draft(
            next(keys),
            MENTION,
            _customer_handle(rng, brand_handle),
            _to_brand_mention(rng.choice(corpus), brand_handle),
            when,
        )
        for when in times
    ]


def _keyword_hits(
    rng: Random,
    brand_handle: str,
    keywords: Sequence[str],
    times: list[datetime],
    keys: Iterator[int],
) -> list[_Draft]:
    if not keywords:
        return []
    corpus = customer_texts()
    drafts = []
    for when in times:
        text = _keyword_text(rng.choice(corpus), brand_handle, rng.choice(keywords), rng)
        drafts.append(_Draft(next(keys), KEYWORD, _customer_handle(rng, brand_handle), text, when))
    return drafts


def _reply_delay(rng: Random, late: bool) -> timedelta:
    if late:
        return timedelta(seconds=rng.randrange(2 * 3600, 30 * 3600 + 1))
    return timedelta(seconds=rng.randrange(5 * 60, 50 * 60 + 1))


def _replies(
    rng: Random,
    brand_handle: str,
    mentions: list[_Draft],
    end: datetime,
    answered_share: float,
    late_share: float,
    keys: Iterator[int],
) -> list[_Draft]:
    answered = rng.sample(mentions, round(answered_share * len(mentions)))
    late_keys = {m.key for m in rng.sample(answered, round(late_share * len(answered)))}
    corpus = brand_reply_texts()
    drafts = []
    for mention in sorted(answered, key=lambda m: m.key):
        when = mention.created_at + _reply_delay(rng, mention.key in late_keys)
        text = _to_customer_reply(rng.choice(corpus), brand_handle, mention.author_handle)
        if when >= end:
            continue
        mention.reply_count += 1
        drafts.append(_Draft(next(keys), REPLY, brand_handle, text, when, mention.key))
    return drafts


def _metrics(rng: Random, draft: _Draft) -> tuple[int, int, int, int]:
    """(likes, reposts, replies, quotes): small, deterministic, larger for brand posts."""
    if draft.kind == POST:
        return rng.randrange(0, 200), rng.randrange(0, 40), rng.randrange(0, 15), rng.randrange(6)
    if draft.kind == MENTION:
        return rng.randrange(0, 4), rng.randrange(0, 2), draft.reply_count, 0
    return rng.randrange(0, 6), rng.randrange(0, 3), rng.randrange(0, 2), rng.randrange(0, 2)


def _finalise(rng: Random, drafts: list[_Draft]) -> list[TrafficItem]:
    ordered = sorted(drafts, key=lambda d: (d.created_at, d.key))
    seq_of = {d.key: seq for seq, d in enumerate(ordered)}
    items = []
    for seq, draft in enumerate(ordered):
        reply_to = None if draft.answers_key is None else seq_of[draft.answers_key]
        likes, reposts, replies, quotes = _metrics(rng, draft)
        items.append(
            TrafficItem(
                seq=seq,
                kind=draft.kind,
                author_handle=draft.author_handle,
                text=draft.text,
                created_at=draft.created_at,
                in_reply_to_seq=reply_to,
                root_seq=seq if reply_to is None else reply_to,
                lang="en",
                likes=likes,
                reposts=reposts,
                replies=replies,
                quotes=quotes,
                label=draft.label,
            )
        )
    return items


def _check_arguments(brand_handle: str, keywords: Sequence[str], shares: Sequence[float]) -> None:
    if not re.fullmatch(r"\w{1,50}", brand_handle):
        raise ValueError(f"invalid brand handle: {brand_handle!r}")
    for keyword in keywords:
        if not keyword.strip():
            raise ValueError("keywords must not be blank")
        if f"@{brand_handle}".lower() in keyword.lower():
            raise ValueError(f"keyword {keyword!r} addresses the brand itself")
    if any(not 0.0 <= share <= 1.0 for share in shares):
        raise ValueError("answered_share and late_share must be within [0, 1]")


def generate_traffic(
    *,
    seed: int,
    brand_handle: str,
    keywords: Sequence[str],
    start: datetime,
    end: datetime,
    posts_per_day: float = 6,
    mentions_per_day: float = 40,
    keyword_hits_per_day: float = 10,
    answered_share: float = 0.7,
    late_share: float = 0.25,
) -> list[TrafficItem]:
    """Generate brand posts, customer mentions, brand replies and keyword hits in [start, end).

    The result is sorted by ``created_at`` and identical for identical arguments.
    """
    start, end = as_utc(start, "start"), as_utc(end, "end")
    if end < start:
        raise ValueError("end must not be before start")
    _check_arguments(brand_handle, keywords, (answered_share, late_share))
    rng = Random(seed)
    keys = itertools.count()  # draft keys in generation order: they break created_at ties
    days = (end - start).total_seconds() / 86400
    times = [
        _random_times(rng, start, end, _count(rate, days))
        for rate in (posts_per_day, mentions_per_day, keyword_hits_per_day)
    ]
    posts = _posts(rng, brand_handle, times[0], keys)
    mentions = _mentions(rng, brand_handle, times[1], keys)
    hits = _keyword_hits(rng, brand_handle, keywords, times[2], keys)
    replies = _replies(rng, brand_handle, mentions, end, answered_share, late_share, keys)
    items = _finalise(rng, posts + mentions + hits + replies)
    logger.debug(
        "generated %d traffic items (%d posts, %d mentions, %d replies, %d keyword hits)",
        len(items),
        len(posts),
        len(mentions),
        len(replies),
        len(hits),
    )
    return items


def traffic_window(
    *,
    seed: int,
    brand_handle: str,
    keywords: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    traffic: Sequence[TrafficItem] | None,
    rates: TrafficRates,
) -> tuple[datetime, datetime, list[TrafficItem]]:
    """Return (start, end, items) a sandbox serves: the given traffic, or traffic generated.

    ``end`` defaults to the newest given item, or now; ``start`` to a day before ``end``.
    """
    if traffic is not None and rates:
        raise ValueError("traffic rates apply only to generated traffic")
    if end is None:
        newest = max((i.created_at for i in traffic or ()), default=None)
        end = newest or clock.now().replace(microsecond=0)
    end = as_utc(end, "end")
    start = as_utc(start, "start") if start else end - timedelta(days=1)
    items = (
        list(traffic)
        if traffic is not None
        else generate_traffic(
            seed=seed, brand_handle=brand_handle, keywords=keywords, start=start, end=end, **rates
        )
    )
    return start, end, items


def visible_items(items: Iterable[TrafficItem], clock: datetime) -> list[TrafficItem]:
    """Return the items published up to ``clock``, in their order."""
    return [item for item in items if item.created_at <= clock]


class SandboxOptions(TrafficRates, total=False):
    """What every traffic sandbox takes: the traffic it serves (given, or generated from
    ``seed`` and the rates for ``brand_handle`` and ``keywords`` over ``start``..``end``), its
    clock (default: ``end``) and its port (0: a free one)."""

    seed: int
    brand_handle: str
    keywords: Sequence[str]
    start: datetime | None
    end: datetime | None
    clock: datetime | None
    traffic: Sequence[TrafficItem] | None
    port: int


class TrafficSandbox(SandboxServer):
    """A sandbox serving a window of traffic: the items published up to its clock.

    Subclasses set ``platform`` and say how an item is identified on their platform
    (:meth:`native_id`); the constructor takes :class:`SandboxOptions` and fills ``items``.
    """

    platform: ClassVar[str] = ""
    items: list[TrafficItem]

    def __init__(self, **options: Unpack[SandboxOptions]) -> None:
        unknown = set(options) - SandboxOptions.__optional_keys__
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
        rates = {k: v for k, v in options.items() if k in TrafficRates.__optional_keys__}
        self.brand_handle = options.get("brand_handle", "acme")
        self.keywords = tuple(options.get("keywords", ("acme",)))
        self.traffic_start, self.traffic_end, self.items = traffic_window(
            seed=options.get("seed", 7),
            brand_handle=self.traffic_brand(),
            keywords=self.keywords,
            start=options.get("start"),
            end=options.get("end"),
            traffic=options.get("traffic"),
            rates=rates,  # type: ignore[arg-type]  # the TrafficRates keys of options
        )
        super().__init__(
            clock=options.get("clock") or self.traffic_end, port=options.get("port", 0)
        )

    def traffic_brand(self) -> str:
        """The brand's handle in the platform-neutral traffic (the brand's own, by default)."""
        return self.brand_handle

    def visible(self) -> list[TrafficItem]:
        """The items published up to the clock, oldest first."""
        return visible_items(self.items, self.clock)

    @abstractmethod
    def native_id(self, item: TrafficItem) -> str:
        """The platform's own id of ``item``."""

    def store_id(self, item: TrafficItem) -> str:
        """The ``posts.id`` touchpoint stores ``item`` under when it collects it from here."""
        return f"{self.platform}:{self.native_id(item)}"
