"""The pieces every platform sandbox shares: query syntax, parameters, catalogue, rate limiter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from monitor import clock
from monitor.sandbox.common import Catalog, Params, QuerySyntax, hashed_id
from monitor.sandbox.limits import RateLimiter, aligned, exact, next_second
from monitor.sandbox.server import ApiError, Route, route
from monitor.sandbox.traffic import MENTION, POST, TrafficItem

NOW = 1_790_000_000.25


@pytest.fixture
def frozen() -> Iterator[None]:
    with clock.use(lambda: datetime.fromtimestamp(NOW, UTC)):
        yield


def test_query_syntax_keeps_operators_and_drops_what_it_ignores() -> None:
    syntax = QuerySyntax(operators=frozenset({"from"}), ignored=("is:",))
    parsed = syntax.parse('(acme OR "rocket skates") from:@Bob -refund is:reply lang:en')
    assert parsed.terms == ("acme", "rocket skates", "lang:en")
    assert parsed.excluded == ("refund",) and parsed.operator("from") == ("bob",)
    assert parsed.operator("to") == ()


def test_query_syntax_states_only_the_differences() -> None:
    value = QuerySyntax(skip=frozenset({"NOT"}), other="value").parse("title:Skates NOT x")
    assert value.terms == ("skates", "x")
    dropped = QuerySyntax(signs="+-", parens=False, skip=frozenset(), other="drop")
    parsed = dropped.parse('+acme -"bad thing" from:x (y) OR')
    assert parsed.terms == ("acme", "(y)", "or") and parsed.excluded == ("bad thing",)


def test_params_read_the_last_value_and_every_value() -> None:
    params = Params({"a": ["1", "2"], "b": []})
    assert params.get("a") == "2" and params.get("b") is None and params.get("c") is None
    assert params.all("a") == ["1", "2"] and params.all("c") == []


def _item(seq: int, kind: str, author: str, text: str) -> TrafficItem:
    when = datetime(2026, 11, 22, 10, tzinfo=UTC)
    return TrafficItem(seq, kind, author, text, when, None, seq, "en", 0, 0, 0, 0)


def test_catalog_knows_authors_and_mentions_with_stable_ids() -> None:
    items = [_item(0, POST, "acme", "hello"), _item(1, MENTION, "user1234", "@Acme hi @Bob")]
    catalog = Catalog(items, "acme", "42", re.compile(r"@(\w+)"), extra=("AutoModerator",))
    assert catalog.handle("BOB") == "Bob" and catalog.handle("automoderator") == "AutoModerator"
    assert catalog.handle("nobody") is None
    assert catalog.id("ACME") == "42" and catalog.id("Bob") == hashed_id("bob", "42")
    assert catalog.handle_for_id(catalog.id("user1234")) == "user1234"
    assert len(catalog.id("bob")) == 18 and catalog.parent(items[1]) is None


def test_window_resets_as_each_platform_counts_them() -> None:
    assert next_second(NOW, 900) == 1_790_000_901.0
    assert exact(NOW, 60) == NOW + 60
    assert aligned(NOW, 300) == 1_790_000_100.0


def test_rate_limiter_counts_every_named_window_and_reports_the_tightest(frozen: None) -> None:
    limiter = RateLimiter({"global": (5, 300), "login": (2, 300)}, default=(9, 60))
    assert limiter.take("global", "login")[0] and limiter.take("global", "login")[0]
    allowed, window = limiter.take("global", "login")
    assert not allowed and window.limit == 2 and window.remaining == 0 and window.used == 2
    assert limiter.peek("global").remaining == 3  # the refused request counted nowhere
    assert limiter.peek("other").limit == 9
    exhausted = limiter.exhausted("global", 2.0)
    assert exhausted.remaining == 0 and exhausted.reset == NOW + 2.0
    with pytest.raises(KeyError):
        RateLimiter({}).take("anything")


def test_declared_routes_resolve_with_their_groups() -> None:
    spec = route("GET", r"/users/([^/]+)(?:/(posts))?", "users")
    assert spec.action == "users" and spec.pattern.fullmatch("/users/ann")
    error = ApiError(404, {"error": "nope"}, (("x-extra", "1"),))
    answer = error.response((("x-rate", "5"),))
    assert answer.status == 404 and answer.headers == (("x-rate", "5"), ("x-extra", "1"))
    assert Route("users", "users", ("ann", "")) == Route("users", "users", ("ann", ""))
