"""The Mastodon sandbox speaks Mastodon 4.x: entity shapes, pagination, Link and rate headers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor import clock
from monitor.platforms.mastodon.sandbox import (
    DEFAULT_BRAND_ACCOUNT_ID,
    MastodonSandbox,
    SearchQuery,
)
from monitor.sandbox.traffic import KEYWORD, MENTION, POST, REPLY, TrafficItem

TOKEN = "sandbox-user-token"
END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(days=2)
FIXTURES = Path(__file__).parents[2] / "fixtures" / "mastodon"
ISO_RESET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def fixture_body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["response"]["body"]


@pytest.fixture
def sandbox() -> Iterator[MastodonSandbox]:
    with MastodonSandbox(
        seed=11, keywords=("acme", "rocket skates"), start=START, end=END, access_token=TOKEN
    ) as running:
        yield running


@pytest.fixture
def api(sandbox: MastodonSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def statuses_path(sandbox: MastodonSandbox) -> str:
    return f"/api/v1/accounts/{sandbox.brand_account_id}/statuses"


def ids_newest_first(sandbox: MastodonSandbox, items: list[TrafficItem]) -> list[str]:
    return [sandbox.status_id(i) for i in sorted(items, key=lambda i: i.seq, reverse=True)]


def brand_items(sandbox: MastodonSandbox) -> list[TrafficItem]:
    return [i for i in sandbox.visible() if i.kind in (POST, REPLY)]


def test_mastodon_sandbox_ids_are_time_ordered_snowflakes(sandbox: MastodonSandbox) -> None:
    ids = [int(sandbox.status_id(i)) for i in sandbox.items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first = sandbox.items[0]
    millis = int(sandbox.status_id(first)) >> 16
    assert datetime.fromtimestamp(millis / 1000, UTC) == first.created_at
    assert sandbox.account_id("acme") == sandbox.account_id("ACME") == DEFAULT_BRAND_ACCOUNT_ID
    assert sandbox.account_id("user1234").isdigit()
    mentions = [i for i in sandbox.items if i.kind == MENTION]
    notification_ids = [int(sandbox.notification_id(i)) for i in mentions]
    assert notification_ids == sorted(notification_ids)
    assert sandbox.url.startswith("http://127.0.0.1:")


def test_mastodon_sandbox_is_deterministic() -> None:
    one = MastodonSandbox(seed=3, start=START, end=END)
    two = MastodonSandbox(seed=3, start=START, end=END)
    assert [one.status_id(i) for i in one.items] == [two.status_id(i) for i in two.items]
    with pytest.raises(ValueError):
        MastodonSandbox(brand_handle="not a handle")


def test_mastodon_sandbox_lookup_and_credentials_are_shaped_like_mastodon(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    account = api.get("/api/v1/accounts/lookup", params={"acct": "acme"}).json()
    assert list(account) == list(fixture_body("accounts_lookup.json"))
    assert (account["id"], account["acct"]) == (DEFAULT_BRAND_ACCOUNT_ID, "acme")
    host = sandbox.url.removeprefix("http://")
    local = api.get("/api/v1/accounts/lookup", params={"acct": f"@acme@{host}"})
    assert local.json()["id"] == DEFAULT_BRAND_ACCOUNT_ID
    for acct in ("nobody", "acme@elsewhere.example"):
        missing = api.get("/api/v1/accounts/lookup", params={"acct": acct})
        assert (missing.status_code, missing.json()) == (404, fixture_body("error_404_lookup.json"))
    me = api.get("/api/v1/accounts/verify_credentials").json()
    assert list(me) == list(fixture_body("verify_credentials.json"))
    assert me["id"] == DEFAULT_BRAND_ACCOUNT_ID
    anonymous = httpx.get(f"{sandbox.url}/api/v1/accounts/verify_credentials")
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        fixture_body("error_401_no_token.json"),
    )


def test_mastodon_sandbox_account_statuses_shape_and_link_headers(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    page = api.get(statuses_path(sandbox), params={"limit": 5, "exclude_reblogs": "true"})
    recorded = fixture_body("account_statuses_prev_min_id.json")[0]
    body = page.json()
    assert list(body[0]) == list(recorded)
    assert list(body[0]["account"]) == list(recorded["account"])
    assert [s["id"] for s in body] == ids_newest_first(sandbox, brand_items(sandbox))[:5]
    links = page.links
    assert links["next"]["url"] == (
        f"{sandbox.url}{statuses_path(sandbox)}?limit=5&max_id={body[-1]['id']}"
    )  # absolute, and like Mastodon it does not carry exclude_reblogs
    assert links["prev"]["url"].endswith(f"statuses?limit=5&min_id={body[0]['id']}")
    assert set(links) == {"next", "prev"}
    default = api.get(statuses_path(sandbox)).json()
    capped = api.get(statuses_path(sandbox), params={"limit": 500}).json()
    assert (len(default), len(capped)) == (20, 40)


def test_mastodon_sandbox_min_id_since_id_and_max_id_like_mastodon(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    ids = ids_newest_first(sandbox, brand_items(sandbox))[::-1]  # oldest first
    cursor = ids[4]

    def page(**params: Any) -> httpx.Response:
        return api.get(statuses_path(sandbox), params={"limit": 3, **params})

    # min_id: the items immediately newer than it, answered newest-first
    assert [s["id"] for s in page(min_id=cursor).json()] == ids[5:8][::-1]
    # since_id: the newest page above it (what a since_id-only poller sees)
    assert [s["id"] for s in page(since_id=cursor).json()] == ids[-3:][::-1]
    # max_id: the page below it; with min_id, since_id is ignored
    assert [s["id"] for s in page(max_id=cursor).json()] == ids[1:4][::-1]
    both = page(min_id=ids[0], max_id=ids[3], since_id=ids[2]).json()
    assert [s["id"] for s in both] == ids[1:3][::-1]
    # a short page has no rel="next"; an empty one no Link header at all
    short = page(min_id=ids[-2])
    assert [s["id"] for s in short.json()] == [ids[-1]] and set(short.links) == {"prev"}
    empty = page(min_id=ids[-1])
    assert empty.json() == [] and "link" not in empty.headers
    assert page(min_id="0").json()[-1]["id"] == ids[0]
    assert page(max_id="abc").status_code == 400
    unknown = api.get("/api/v1/accounts/42/statuses")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Record not found"})


def test_mastodon_sandbox_brand_replies_and_mentions_are_linked(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    statuses = api.get(statuses_path(sandbox), params={"limit": 40}).json()
    reply = next(s for s in statuses if s["in_reply_to_id"])
    mention = next(i for i in sandbox.visible() if sandbox.status_id(i) == reply["in_reply_to_id"])
    assert mention.kind == MENTION
    assert reply["in_reply_to_account_id"] == sandbox.account_id(mention.author_handle)
    assert reply["mentions"][0]["acct"] == mention.author_handle
    assert reply["content"].startswith('<p><span class="h-card" translate="no"><a href="')
    no_replies = api.get(statuses_path(sandbox), params={"limit": 40, "exclude_replies": "1"})
    assert all(s["in_reply_to_id"] is None for s in no_replies.json())


def test_mastodon_sandbox_mention_notifications(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    answer = api.get("/api/v1/notifications", params=[("types[]", "mention"), ("limit", 3)])
    recorded = fixture_body("notifications_follow_and_mention.json")[0]
    body = answer.json()
    assert list(body[0]) == list(recorded)
    assert list(body[0]["status"]) == list(recorded["status"])  # no "pinned": not the brand's
    mentions = [i for i in sandbox.visible() if i.kind == MENTION][::-1][:3]
    assert [n["id"] for n in body] == [sandbox.notification_id(i) for i in mentions]
    assert [n["status"]["id"] for n in body] == [sandbox.status_id(i) for i in mentions]
    assert body[0]["status"]["mentions"][0]["id"] == DEFAULT_BRAND_ACCOUNT_ID
    assert answer.links["next"]["url"].endswith(
        f"/api/v1/notifications?limit=3&max_id={body[-1]['id']}&types%5B%5D=mention"
    )
    everything = api.get("/api/v1/notifications", params={"limit": 200}).json()
    assert len(everything) == 80 and {n["type"] for n in everything} == {"mention", "favourite"}
    favourites = api.get("/api/v1/notifications", params=[("exclude_types[]", "mention")]).json()
    assert {n["type"] for n in favourites} == {"favourite"}
    last = api.get(
        "/api/v1/notifications", params=[("types[]", "mention"), ("min_id", body[0]["id"])]
    )
    assert last.json() == [] and "link" not in last.headers
    assert httpx.get(f"{sandbox.url}/api/v1/notifications").status_code == 401


def test_mastodon_sandbox_clock_controls_visibility(
    sandbox: MastodonSandbox, api: httpx.Client
) -> None:
    sandbox.set_clock(START + timedelta(hours=6))
    visible = sandbox.visible()
    assert visible == [i for i in sandbox.items if i.created_at <= sandbox.clock]
    statuses = api.get(statuses_path(sandbox), params={"limit": 40}).json()
    assert {s["id"] for s in statuses} == {sandbox.status_id(i) for i in brand_items(sandbox)}
    notes = api.get("/api/v1/notifications", params={"limit": 80}).json()
    assert all(n["created_at"] <= "2026-11-20T18:00:00.000Z" for n in notes)


def test_mastodon_sandbox_status_search(sandbox: MastodonSandbox, api: httpx.Client) -> None:
    def search(q: str, **params: Any) -> httpx.Response:
        return api.get("/api/v2/search", params={"q": q, "type": "statuses", **params})

    answer = search("acme", limit=40)
    assert list(answer.json()) == list(fixture_body("search_v2_statuses.json"))
    assert "link" not in answer.headers  # search sends no Link header
    hits = [s["id"] for s in answer.json()["statuses"]]
    keyword_ids = {sandbox.status_id(i) for i in sandbox.visible() if i.kind == KEYWORD}
    assert hits == sorted(hits, key=int, reverse=True) and keyword_ids & set(hits)
    phrase = [s["id"] for s in search('"rocket skates"', limit=40).json()["statuses"]]
    texts = {sandbox.status_id(i): i.text.lower() for i in sandbox.items}
    assert phrase and all("rocket skates" in texts[i] for i in phrase)
    # search min_id bounds the results but still answers newest-first
    bounded = [s["id"] for s in search("acme", min_id=hits[-1], limit=3).json()["statuses"]]
    assert bounded == hits[:3]
    below = [s["id"] for s in search("acme", max_id=hits[2], limit=2).json()["statuses"]]
    assert below == hits[3:5]
    assert [s["id"] for s in search("acme", offset=2, limit=2).json()["statuses"]] == hits[2:4]
    anonymous = httpx.get(f"{sandbox.url}/api/v2/search", params={"q": "acme"})
    assert anonymous.json()["statuses"] == []
    paged = httpx.get(f"{sandbox.url}/api/v2/search", params={"q": "acme", "offset": 1})
    assert paged.status_code == 401
    assert api.get("/api/v2/search").status_code == 400
    accounts = api.get("/api/v2/search", params={"q": "acme", "type": "accounts"}).json()
    assert [a["acct"] for a in accounts["accounts"]] == ["acme"]


def test_mastodon_sandbox_without_elasticsearch_finds_no_statuses() -> None:
    with MastodonSandbox(seed=2, start=START, end=END, search_enabled=False) as sandbox:
        answer = httpx.get(
            f"{sandbox.url}/api/v2/search",
            params={"q": "acme", "type": "statuses"},
            headers={"Authorization": "Bearer any"},
        )
        assert answer.json() == fixture_body("search_v2_statuses.json")


def test_mastodon_search_query_semantics() -> None:
    query = SearchQuery.parse('acme "rocket skates" -refund from:someone')
    assert query.must == ("acme", "rocket skates") and query.must_not == ("refund",)
    assert query.matches("Acme sells Rocket Skates!")
    assert not query.matches("acme sells rocket skates, refund please")
    assert not query.matches("acmeish rocket skates")
    assert not SearchQuery.parse("-acme").matches("anything")


def test_mastodon_sandbox_rate_limit_headers_and_exhaustion() -> None:
    with MastodonSandbox(seed=2, start=START, end=END, rate_limit=2) as sandbox:
        url = f"{sandbox.url}/api/v1/accounts/lookup"
        answers = [httpx.get(url, params={"acct": "acme"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].json() == {"error": "Too many requests"}
    reset = answers[0].headers["x-ratelimit-reset"]
    assert ISO_RESET.fullmatch(reset)
    when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    assert when.minute % 5 == 0 and when.second == 0
    assert clock.now() < when <= clock.now() + timedelta(minutes=5)


def test_mastodon_sandbox_fault_answers(sandbox: MastodonSandbox, api: httpx.Client) -> None:
    sandbox.add_fault("429", endpoint="notifications", reset_in=30)
    limited = api.get("/api/v1/notifications")
    assert (limited.status_code, limited.json()) == (429, {"error": "Too many requests"})
    reset = datetime.fromisoformat(limited.headers["x-ratelimit-reset"].replace("Z", "+00:00"))
    assert timedelta(seconds=25) < reset - clock.now() <= timedelta(seconds=30)
    assert limited.headers["x-ratelimit-remaining"] == "0"

    sandbox.add_fault("expired_token", endpoint="statuses")
    expired = api.get(statuses_path(sandbox))
    assert (expired.status_code, expired.json()) == (401, {"error": "The access token expired"})
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    wrong = httpx.get(
        f"{sandbox.url}{statuses_path(sandbox)}", headers={"Authorization": "Bearer nope"}
    )
    assert (wrong.status_code, wrong.json()) == (401, {"error": "The access token is invalid"})

    sandbox.add_fault("503")
    unavailable = api.get("/api/v1/notifications")
    assert unavailable.status_code == 503 and "text/html" in unavailable.headers["content-type"]
    sandbox.add_fault("500")
    assert api.get("/api/v1/notifications").json() == {"error": "Internal server error"}
    sandbox.add_fault("malformed", endpoint="notifications")
    with pytest.raises(json.JSONDecodeError):
        api.get("/api/v1/notifications").json()
    assert api.get("/api/v1/notifications").status_code == 200
    assert api.post("/api/v1/notifications").status_code == 404
