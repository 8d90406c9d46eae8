"""Tests for the platform-neutral sandbox traffic generator."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.sandbox.traffic import (
    KEYWORD,
    KINDS,
    MAX_TEXT_CHARS,
    MENTION,
    POST,
    REPLY,
    TrafficItem,
    brand_post_texts,
    brand_reply_texts,
    customer_texts,
    fit,
    generate_traffic,
)

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(days=7)
KEYWORDS = ("acme", "rocket skates")


def _traffic(seed: int = 7, **overrides: Any) -> list[TrafficItem]:
    arguments: dict[str, Any] = {
        "seed": seed,
        "brand_handle": "acme",
        "keywords": KEYWORDS,
        "start": START,
        "end": END,
    }
    arguments.update(overrides)
    return generate_traffic(**arguments)


@pytest.fixture(scope="module")
def traffic() -> list[TrafficItem]:
    return _traffic()


def _by_kind(items: list[TrafficItem], kind: str) -> list[TrafficItem]:
    return [i for i in items if i.kind == kind]


def test_corpora_load_real_texts() -> None:
    assert len(customer_texts()) > 1000
    assert len(brand_reply_texts()) > 1000
    assert len(brand_post_texts()) > 1000
    assert customer_texts() is customer_texts()  # cached once per process


def test_same_seed_gives_same_traffic(traffic: list[TrafficItem]) -> None:
    assert _traffic() == traffic


def test_different_seed_gives_different_traffic(traffic: list[TrafficItem]) -> None:
    other = _traffic(seed=8)
    assert [i.text for i in other] != [i.text for i in traffic]
    assert [i.created_at for i in other] != [i.created_at for i in traffic]


def test_sorted_by_time_with_seq_as_index(traffic: list[TrafficItem]) -> None:
    assert [i.seq for i in traffic] == list(range(len(traffic)))
    times = [i.created_at for i in traffic]
    assert times == sorted(times)
    assert all(START <= t < END and t.tzinfo == UTC for t in times)


def test_kinds_present_in_sensible_proportions(traffic: list[TrafficItem]) -> None:
    counts = Counter(i.kind for i in traffic)
    assert set(counts) == set(KINDS)
    assert counts[POST] == 6 * 7
    assert counts[MENTION] == 40 * 7
    assert counts[KEYWORD] == 10 * 7
    answered = round(0.7 * counts[MENTION])
    # A few late replies fall after the end of the window and are not generated.
    assert answered - 15 <= counts[REPLY] <= answered


def test_rates_are_configurable() -> None:
    items = _traffic(posts_per_day=1, mentions_per_day=2, keyword_hits_per_day=0)
    counts = Counter(i.kind for i in items)
    assert (counts[POST], counts[MENTION], counts[KEYWORD]) == (7, 14, 0)


def test_authors(traffic: list[TrafficItem]) -> None:
    for item in traffic:
        if item.kind in (POST, REPLY):
            assert item.author_handle == "acme"
        else:
            assert re.fullmatch(r"user\d{4}", item.author_handle)


def test_replies_answer_earlier_mentions(traffic: list[TrafficItem]) -> None:
    replies = _by_kind(traffic, REPLY)
    assert replies
    answered = set()
    for reply in replies:
        assert reply.in_reply_to_seq is not None
        mention = traffic[reply.in_reply_to_seq]
        assert mention.kind == MENTION
        assert reply.root_seq == mention.seq == mention.root_seq
        assert reply.created_at > mention.created_at
        assert reply.text.startswith(f"@{mention.author_handle} ")
        answered.add(mention.seq)
    assert len(answered) == len(replies)  # one reply per answered mention
    for item in traffic:
        if item.kind != REPLY:
            assert item.in_reply_to_seq is None
            assert item.root_seq == item.seq


def test_reply_delays_are_prompt_or_late(traffic: list[TrafficItem]) -> None:
    delays = [
        r.created_at - traffic[r.in_reply_to_seq].created_at
        for r in _by_kind(traffic, REPLY)
        if r.in_reply_to_seq is not None
    ]
    prompt = [d for d in delays if d <= timedelta(minutes=50)]
    late = [d for d in delays if d > timedelta(minutes=50)]
    assert all(timedelta(minutes=5) <= d for d in prompt)
    assert all(timedelta(hours=2) <= d <= timedelta(hours=30) for d in late)
    assert 0.15 <= len(late) / len(delays) <= 0.3


def test_some_mentions_stay_unanswered(traffic: list[TrafficItem]) -> None:
    answered = {r.in_reply_to_seq for r in _by_kind(traffic, REPLY)}
    unanswered = [m for m in _by_kind(traffic, MENTION) if m.seq not in answered]
    assert len(unanswered) >= 0.25 * len(_by_kind(traffic, MENTION))
    assert all(m.replies == 0 for m in unanswered)
    assert all(traffic[seq].replies == 1 for seq in answered if seq is not None)


def test_replies_after_end_are_not_generated() -> None:
    items = _traffic(answered_share=1.0, late_share=1.0)
    answered = {r.in_reply_to_seq for r in _by_kind(items, REPLY)}
    recent = [m for m in _by_kind(items, MENTION) if m.created_at >= END - timedelta(hours=2)]
    assert recent
    assert all(m.seq not in answered for m in recent)
    assert all(r.created_at < END for r in items)


def test_mentions_address_the_brand(traffic: list[TrafficItem]) -> None:
    for mention in _by_kind(traffic, MENTION):
        assert mention.text.startswith("@acme ")
        assert len(re.findall(r"@acme\b", mention.text, re.IGNORECASE)) == 1


def test_keyword_hits_contain_a_keyword_but_not_the_brand_handle(
    traffic: list[TrafficItem],
) -> None:
    hits = _by_kind(traffic, KEYWORD)
    for hit in hits:
        assert any(re.search(rf"(?<!\w){re.escape(k)}(?!\w)", hit.text) for k in KEYWORDS)
        assert "@acme" not in hit.text.lower()
    used = {k for k in KEYWORDS for hit in hits if k in hit.text}
    assert used == set(KEYWORDS)


def test_keyword_hits_never_address_the_brand_even_for_similar_handles() -> None:
    items = _traffic(brand_handle="Apple", keywords=("apple",), mentions_per_day=0)
    hits = _by_kind(items, KEYWORD)
    assert hits
    assert all("@apple" not in hit.text.lower() for hit in hits)


def test_texts_are_real_and_at_most_280_chars(traffic: list[TrafficItem]) -> None:
    posts = set(brand_post_texts())
    for item in traffic:
        assert 0 < len(item.text) <= MAX_TEXT_CHARS
        assert item.lang == "en"
        if item.kind == POST:
            assert item.text in posts or item.text.endswith("…")
            assert item.label in {"inspiring", "engaging", "sales-pitch"}
        else:
            assert item.label is None


def test_metrics_are_small_and_non_negative(traffic: list[TrafficItem]) -> None:
    for item in traffic:
        metrics = (item.likes, item.reposts, item.replies, item.quotes)
        assert all(0 <= m < 250 for m in metrics)
    assert any(p.likes > 0 for p in _by_kind(traffic, POST))


def test_fit_truncates_with_ellipsis() -> None:
    assert fit("short") == "short"
    cut = fit("word " * 100)
    assert len(cut) <= MAX_TEXT_CHARS
    assert cut.endswith("…")


def test_empty_window_gives_no_traffic() -> None:
    assert _traffic(start=END, end=END) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"start": START.replace(tzinfo=None)},
        {"end": START - timedelta(days=1)},
        {"answered_share": 1.5},
        {"keywords": ("@acme",)},
        {"brand_handle": "not a handle"},
    ],
)
def test_invalid_arguments_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _traffic(**overrides)
