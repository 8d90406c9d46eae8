"""Drive the real tweepy.Client against the local X API v2 sandbox."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import tweepy
from requests.adapters import HTTPAdapter

from monitor import clock
from monitor.platforms.x.sandbox import TWITTER_EPOCH, XSandbox
from monitor.sandbox.traffic import KEYWORD, MENTION, POST, REPLY, TrafficItem

TOKEN = "sandbox-bearer-token"
END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(days=9)
API = "https://api.twitter.com"
FIXTURES = Path(__file__).parents[2] / "fixtures" / "twitter"
TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ALL_TWEET_FIELDS = [
    "created_at",
    "author_id",
    "conversation_id",
    "in_reply_to_user_id",
    "referenced_tweets",
    "public_metrics",
    "lang",
    "entities",
]


class SandboxAdapter(HTTPAdapter):
    """Sends https://api.twitter.com/... requests to the sandbox instead."""

    def __init__(self, base_url: str, timeout: float | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        self.timeout = timeout

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        assert request.url is not None and request.url.startswith(API)
        request.url = self.base_url + request.url[len(API) :]
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


@pytest.fixture
def sandbox() -> Iterator[XSandbox]:
    with XSandbox(
        seed=11, keywords=("acme", "rocket skates"), start=START, end=END, bearer_token=TOKEN
    ) as running:
        yield running


def _client(sandbox: XSandbox, token: str = TOKEN, timeout: float | None = None) -> Any:
    client = tweepy.Client(bearer_token=token, return_type=dict)
    client.session.mount(f"{API}/", SandboxAdapter(sandbox.url, timeout))
    return client


@pytest.fixture
def client(sandbox: XSandbox) -> Iterator[Any]:
    api = _client(sandbox)
    yield api
    api.session.close()


def _ids(sandbox: XSandbox, items: list[TrafficItem]) -> list[str]:
    """Tweet ids of ``items``, newest first."""
    return [sandbox.tweet_id(i) for i in sorted(items, key=lambda i: i.seq, reverse=True)]


def _visible(sandbox: XSandbox, *kinds: str) -> list[TrafficItem]:
    return [i for i in sandbox.visible() if i.kind in kinds]


def _get(sandbox: XSandbox, path: str, token: str | None = TOKEN, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(sandbox.url + path, params=params, headers=headers, timeout=10)


def _all_pages(method: Any, token_param: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    pages = []
    token = None
    while True:
        extra: dict[str, str] = {token_param: token} if token else {}
        page = method(*args, **kwargs, **extra)
        pages.append(page)
        token = page["meta"].get("next_token")
        if token is None:
            return pages
        assert len(pages) < 100


def _fixture_body(name: str) -> dict[str, Any]:
    envelope = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body: dict[str, Any] = envelope["response"]["body"]
    return body


# --------------------------------------------------------------------------- lifecycle


def test_ids_are_increasing_decimal_strings(sandbox: XSandbox) -> None:
    ids = [int(sandbox.tweet_id(i)) for i in sandbox.items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sandbox.user_id("acme") == sandbox.user_id("ACME") == "1500000000000000001"
    assert sandbox.user_id("user1234") == sandbox.user_id("user1234")
    assert (
        sandbox.user_id("user1234").isdigit()
        and sandbox.user_id("user1234") != "1500000000000000001"
    )
    assert sandbox.url.startswith("http://127.0.0.1:")


def test_clock_controls_visibility(sandbox: XSandbox) -> None:
    assert sandbox.clock == END
    assert sandbox.visible() == sandbox.items
    sandbox.set_clock(END - timedelta(days=1))
    assert sandbox.visible() == [
        i for i in sandbox.items if i.created_at <= END - timedelta(days=1)
    ]
    with pytest.raises(ValueError):
        sandbox.set_clock(datetime(2026, 11, 1))


def test_default_window_ends_now() -> None:
    sandbox = XSandbox(mentions_per_day=4)
    now = clock.now()
    assert now - timedelta(seconds=5) <= sandbox.clock <= now
    assert sandbox.clock.microsecond == 0
    assert all(sandbox.clock - timedelta(days=1) <= i.created_at for i in sandbox.items)
    assert sum(i.kind == MENTION for i in sandbox.items) == 4


# --------------------------------------------------------------------------- endpoints


def test_user_lookup(client: Any, sandbox: XSandbox) -> None:
    user = client.get_user(username="ACME", user_fields=["created_at", "description"])["data"]
    assert user["id"] == sandbox.brand_user_id
    assert user["username"] == "acme"
    assert set(user) == {"id", "name", "username", "created_at", "description"}
    customer = _visible(sandbox, MENTION)[0].author_handle
    assert client.get_user(username=customer)["data"]["id"] == sandbox.user_id(customer)
    by_id = client.get_user(id=sandbox.user_id(customer))["data"]
    assert by_id == {"id": sandbox.user_id(customer), "name": by_id["name"], "username": customer}


def test_unknown_username_is_a_200_with_errors(client: Any) -> None:
    body = client.get_user(username="nobody_here")
    assert "data" not in body
    assert body["errors"] == [
        {
            "value": "nobody_here",
            "detail": "Could not find user with username: [nobody_here].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "username",
            "resource_id": "nobody_here",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
    ]


def test_timeline_returns_brand_items_newest_first(client: Any, sandbox: XSandbox) -> None:
    body = client.get_users_tweets(sandbox.brand_user_id, max_results=100)
    expected = _ids(sandbox, _visible(sandbox, POST, REPLY))
    assert [t["id"] for t in body["data"]] == expected[:100]
    assert set(body["data"][0]) == {"id", "text", "edit_history_tweet_ids"}
    assert body["meta"]["newest_id"] == expected[0]
    assert body["meta"]["result_count"] == min(100, len(expected))
    default = client.get_users_tweets(sandbox.brand_user_id)
    assert [t["id"] for t in default["data"]] == expected[:10]


def test_timeline_fields(client: Any, sandbox: XSandbox) -> None:
    body = client.get_users_tweets(
        sandbox.brand_user_id, max_results=100, tweet_fields=ALL_TWEET_FIELDS
    )
    by_id = {sandbox.tweet_id(i): i for i in sandbox.items}
    for tweet in body["data"]:
        item = by_id[tweet["id"]]
        assert tweet["text"] == item.text
        assert tweet["edit_history_tweet_ids"] == [tweet["id"]]
        assert TIME_FORMAT.fullmatch(tweet["created_at"])
        assert datetime.fromisoformat(tweet["created_at"]) == item.created_at
        assert tweet["author_id"] == sandbox.brand_user_id
        assert tweet["lang"] == "en"
        assert tweet["public_metrics"] == {
            "retweet_count": item.reposts,
            "reply_count": item.replies,
            "like_count": item.likes,
            "quote_count": item.quotes,
        }
        if item.kind == REPLY:
            assert item.in_reply_to_seq is not None
            mention = sandbox.items[item.in_reply_to_seq]
            assert tweet["referenced_tweets"] == [
                {"type": "replied_to", "id": sandbox.tweet_id(mention)}
            ]
            assert tweet["conversation_id"] == sandbox.tweet_id(mention)
            assert tweet["in_reply_to_user_id"] == sandbox.user_id(mention.author_handle)
            assert tweet["entities"]["mentions"][0] == {
                "start": 0,
                "end": 1 + len(mention.author_handle),
                "username": mention.author_handle,
            }
        else:
            assert tweet["conversation_id"] == tweet["id"]
            assert "referenced_tweets" not in tweet and "in_reply_to_user_id" not in tweet


def test_timeline_exclude_replies(client: Any, sandbox: XSandbox) -> None:
    body = client.get_users_tweets(sandbox.brand_user_id, max_results=100, exclude=["replies"])
    assert [t["id"] for t in body["data"]] == _ids(sandbox, _visible(sandbox, POST))


def test_other_users_have_empty_timelines(client: Any, sandbox: XSandbox) -> None:
    other = sandbox.user_id(_visible(sandbox, MENTION)[0].author_handle)
    assert client.get_users_tweets(other) == {"meta": {"result_count": 0}}
    assert client.get_users_mentions(other) == {"meta": {"result_count": 0}}


def test_mentions_with_fields_and_expansions(client: Any, sandbox: XSandbox) -> None:
    body = client.get_users_mentions(
        sandbox.brand_user_id,
        max_results=50,
        tweet_fields=ALL_TWEET_FIELDS,
        expansions=["author_id", "in_reply_to_user_id"],
        user_fields=["created_at"],
    )
    expected = _ids(sandbox, _visible(sandbox, MENTION))
    assert [t["id"] for t in body["data"]] == expected[:50]
    for tweet in body["data"]:
        assert tweet["text"].startswith("@acme ")
        assert tweet["in_reply_to_user_id"] == sandbox.brand_user_id
        assert tweet["entities"]["mentions"][0] == {"start": 0, "end": 5, "username": "acme"}
        assert tweet["conversation_id"] == tweet["id"]
    users = body["includes"]["users"]
    user_ids = [u["id"] for u in users]
    assert len(user_ids) == len(set(user_ids))  # deduplicated
    wanted = {t["author_id"] for t in body["data"]} | {sandbox.brand_user_id}
    assert set(user_ids) == wanted
    assert all(set(u) == {"id", "name", "username", "created_at"} for u in users)


def test_referenced_tweets_expansion(client: Any, sandbox: XSandbox) -> None:
    body = client.get_users_tweets(
        sandbox.brand_user_id,
        max_results=100,
        exclude=["retweets"],
        tweet_fields=["created_at"],
        expansions=["referenced_tweets.id", "referenced_tweets.id.author_id"],
    )
    referenced = {r["id"] for t in body["data"] for r in t.get("referenced_tweets", [])}
    assert not referenced  # referenced_tweets was not asked in tweet.fields
    included = body["includes"]["tweets"]
    replies = [
        i
        for i in _visible(sandbox, REPLY)
        if sandbox.tweet_id(i) in {t["id"] for t in body["data"]}
    ]
    mentions = {sandbox.tweet_id(sandbox.items[r.in_reply_to_seq or 0]) for r in replies}
    assert {t["id"] for t in included} == mentions
    assert all(set(t) == {"id", "text", "edit_history_tweet_ids", "created_at"} for t in included)
    assert {u["username"] for u in body["includes"]["users"]} == {
        sandbox.items[r.in_reply_to_seq or 0].author_handle for r in replies
    }


def test_search_matches_terms_within_seven_days(client: Any, sandbox: XSandbox) -> None:
    body = client.search_recent_tweets(
        '(acme OR "rocket skates") -is:retweet lang:en',
        max_results=100,
        tweet_fields=["created_at"],
    )
    week_ago = END - timedelta(days=7)
    expected = [
        i
        for i in sandbox.visible()
        if i.created_at >= week_ago
        and ("acme" in i.text.lower() or "rocket skates" in i.text.lower())
    ]
    ids = [t["id"] for t in body["data"]]
    assert ids == _ids(sandbox, expected)[:100]
    assert all(datetime.fromisoformat(t["created_at"]) >= week_ago for t in body["data"])
    older = [i for i in sandbox.items if i.created_at < week_ago and i.kind == KEYWORD]
    assert older and not {sandbox.tweet_id(i) for i in older} & set(ids)


def test_search_for_keyword_hits(client: Any, sandbox: XSandbox) -> None:
    body = client.search_recent_tweets('"rocket skates" -@acme', max_results=100)
    expected = [
        i
        for i in sandbox.visible()
        if i.created_at >= END - timedelta(days=7) and "rocket skates" in i.text.lower()
    ]
    assert expected and all(i.kind == KEYWORD for i in expected)
    assert [t["id"] for t in body["data"]] == _ids(sandbox, expected)


def test_search_operators(client: Any, sandbox: XSandbox) -> None:
    mention = [i for i in _visible(sandbox, MENTION) if i.replies][-1]
    conversation = client.search_recent_tweets(
        f"conversation_id:{sandbox.tweet_id(mention)}", tweet_fields=["conversation_id"]
    )
    assert {t["conversation_id"] for t in conversation["data"]} == {sandbox.tweet_id(mention)}
    assert len(conversation["data"]) == 2  # the mention and the brand's reply
    from_brand = client.search_recent_tweets("from:acme", max_results=100)
    week = [i for i in _visible(sandbox, POST, REPLY) if i.created_at >= END - timedelta(days=7)]
    assert [t["id"] for t in from_brand["data"]] == _ids(sandbox, week)[:100]


# --------------------------------------------------------------------------- pagination


@pytest.mark.parametrize(
    ("method", "token_param", "kinds", "page_size"),
    [
        ("get_users_tweets", "pagination_token", (POST, REPLY), 5),
        ("get_users_mentions", "pagination_token", (MENTION,), 25),
        ("search_recent_tweets", "next_token", None, 10),
    ],
)
def test_pagination_visits_every_item_once(
    client: Any,
    sandbox: XSandbox,
    method: str,
    token_param: str,
    kinds: tuple[str, ...] | None,
    page_size: int,
) -> None:
    sandbox.set_clock(END - timedelta(days=1))
    if kinds is None:
        args: tuple[Any, ...] = ("acme",)
        expected = [
            i
            for i in sandbox.visible()
            if "acme" in i.text.lower() and i.created_at >= sandbox.clock - timedelta(days=7)
        ]
    else:
        args = (sandbox.brand_user_id,)
        expected = _visible(sandbox, *kinds)
    pages = _all_pages(getattr(client, method), token_param, *args, max_results=page_size)
    assert len(pages) >= 3
    ids = [t["id"] for page in pages for t in page["data"]]
    assert ids == _ids(sandbox, expected)
    assert all(len(page["data"]) == page_size for page in pages[:-1])
    assert "next_token" not in pages[-1]["meta"]
    for page in pages:
        assert page["meta"]["result_count"] == len(page["data"])
        assert page["meta"]["newest_id"] == page["data"][0]["id"]
        assert page["meta"]["oldest_id"] == page["data"][-1]["id"]


def test_tweepy_paginator_works(client: Any, sandbox: XSandbox) -> None:
    pages = list(
        tweepy.Paginator(client.get_users_mentions, sandbox.brand_user_id, max_results=100)
    )
    ids = [t["id"] for page in pages for t in page["data"]]
    assert len(pages) >= 3
    assert ids == _ids(sandbox, _visible(sandbox, MENTION))


def test_moving_the_clock_between_pages_does_not_shift_pages(
    client: Any, sandbox: XSandbox
) -> None:
    sandbox.set_clock(END - timedelta(days=2))
    first = client.get_users_mentions(sandbox.brand_user_id, max_results=5)
    token = first["meta"]["next_token"]
    unchanged_second = client.get_users_mentions(
        sandbox.brand_user_id, max_results=5, pagination_token=token
    )
    sandbox.set_clock(END)  # a day of new mentions is published
    second = client.get_users_mentions(sandbox.brand_user_id, max_results=5, pagination_token=token)
    assert second == unchanged_second
    fresh = client.get_users_mentions(sandbox.brand_user_id, max_results=5)
    assert int(fresh["meta"]["oldest_id"]) > int(first["meta"]["newest_id"])


def test_since_id_returns_only_newer_items(client: Any, sandbox: XSandbox) -> None:
    mentions = _visible(sandbox, MENTION)
    pivot = mentions[-30]
    body = client.get_users_mentions(
        sandbox.brand_user_id, since_id=sandbox.tweet_id(pivot), max_results=100
    )
    assert [t["id"] for t in body["data"]] == _ids(
        sandbox, [m for m in mentions if m.seq > pivot.seq]
    )
    assert sandbox.tweet_id(pivot) not in {t["id"] for t in body["data"]}
    newest = client.get_users_mentions(
        sandbox.brand_user_id, since_id=sandbox.tweet_id(mentions[-1])
    )
    assert newest == {"meta": {"result_count": 0}}


def test_time_and_until_id_bounds(client: Any, sandbox: XSandbox) -> None:
    mentions = _visible(sandbox, MENTION)
    start, end = END - timedelta(days=3), END - timedelta(days=2)
    body = client.get_users_mentions(
        sandbox.brand_user_id, start_time=start, end_time=end, max_results=100
    )
    expected = [m for m in mentions if start <= m.created_at < end]
    assert [t["id"] for t in body["data"]] == _ids(sandbox, expected)
    pivot = mentions[10]
    older = client.get_users_mentions(sandbox.brand_user_id, until_id=sandbox.tweet_id(pivot))
    assert [t["id"] for t in older["data"]] == _ids(sandbox, mentions[:10])


# --------------------------------------------------------------------------- errors


WEEK_AND_A_DAY_OLD_ID = (END - timedelta(days=8) - TWITTER_EPOCH) // timedelta(milliseconds=1) << 22


@pytest.mark.parametrize(
    ("call", "parameter", "value"),
    [
        (lambda c, s: c.get_users_tweets(s.brand_user_id, max_results=1000), "max_results", "1000"),
        (lambda c, s: c.get_users_mentions(s.brand_user_id, max_results=4), "max_results", "4"),
        (lambda c, s: c.search_recent_tweets("acme", max_results=5), "max_results", "5"),
        (lambda c, s: c.get_users_mentions(s.brand_user_id, since_id="abc"), "since_id", "abc"),
        (
            lambda c, s: c.get_users_tweets(s.brand_user_id, start_time="yesterday"),
            "start_time",
            "yesterday",
        ),
        (
            lambda c, s: c.get_users_tweets(s.brand_user_id, pagination_token="bogus"),
            "pagination_token",
            "bogus",
        ),
        (
            lambda c, s: c.search_recent_tweets("acme", start_time=END - timedelta(days=8)),
            "start_time",
            "2026-11-14T12:00:00Z",
        ),
        (  # a since_id from before the 7-day window (2026-11-14T12:00Z, as a snowflake)
            lambda c, s: c.search_recent_tweets("acme", since_id=WEEK_AND_A_DAY_OLD_ID),
            "since_id",
            str(WEEK_AND_A_DAY_OLD_ID),
        ),
        (
            lambda c, s: c.get_users_tweets(s.brand_user_id, tweet_fields=["public_metircs"]),
            "tweet.fields",
            "public_metircs",
        ),
    ],
)
def test_invalid_parameters_are_400(
    client: Any, sandbox: XSandbox, call: Any, parameter: str, value: str
) -> None:
    with pytest.raises(tweepy.BadRequest) as raised:
        call(client, sandbox)
    body = raised.value.response.json()
    assert body["title"] == "Invalid Request"
    assert body["detail"] == "One or more parameters to your request was invalid."
    assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert body["errors"][0]["parameters"] == {parameter: [value]}
    assert raised.value.api_messages


def test_max_results_message_matches_x(client: Any, sandbox: XSandbox) -> None:
    with pytest.raises(tweepy.BadRequest) as raised:
        client.get_users_tweets(sandbox.brand_user_id, max_results=1000)
    assert raised.value.response.json()["errors"] == [
        {
            "parameters": {"max_results": ["1000"]},
            "message": "The `max_results` query parameter value [1000] is not between 5 and 100",
        }
    ]


def test_unknown_parameter_and_path(sandbox: XSandbox) -> None:
    response = _get(sandbox, f"/2/users/{sandbox.brand_user_id}/tweets", foo="bar")
    assert response.status_code == 400
    assert response.json()["errors"][0]["parameters"] == {"foo": ["bar"]}
    missing = _get(sandbox, "/2/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {
        "title": "Not Found",
        "type": "about:blank",
        "status": 404,
        "detail": "Not Found",
    }


def test_wrong_or_missing_token_is_401(sandbox: XSandbox) -> None:
    wrong = _client(sandbox, token="not-the-token")
    with pytest.raises(tweepy.Unauthorized) as raised:
        wrong.get_user(username="acme")
    wrong.session.close()
    assert raised.value.response.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert _get(sandbox, "/2/users/by/username/acme", token=None).status_code == 401


def test_any_token_is_accepted_without_a_configured_one() -> None:
    with XSandbox(seed=1, end=END, mentions_per_day=5) as open_sandbox:
        assert _get(open_sandbox, "/2/users/by/username/acme", token="x").status_code == 200
        assert _get(open_sandbox, "/2/users/by/username/acme", token=None).status_code == 401


def test_every_response_has_json_and_rate_limit_headers(sandbox: XSandbox) -> None:
    responses = [
        _get(sandbox, "/2/users/by/username/acme"),
        _get(sandbox, f"/2/users/{sandbox.brand_user_id}/tweets"),
        _get(sandbox, "/2/tweets/search/recent", query="acme"),
        _get(sandbox, "/2/tweets/search/recent"),  # 400: query missing
        _get(sandbox, "/2/users/by/username/acme", token="wrong"),
        _get(sandbox, "/2/unknown"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 401, 404]
    now = clock.timestamp()
    for response in responses:
        assert response.headers["Content-Type"].startswith("application/json")
        assert int(response.headers["x-rate-limit-limit"]) > 0
        assert (
            0
            <= int(response.headers["x-rate-limit-remaining"])
            <= int(response.headers["x-rate-limit-limit"])
        )
        assert int(response.headers["x-rate-limit-reset"]) > now
        response.json()
    first, second = (_get(sandbox, "/2/users/by/username/acme") for _ in range(2))
    remaining = [int(r.headers["x-rate-limit-remaining"]) for r in (first, second)]
    assert remaining[1] == remaining[0] - 1


# --------------------------------------------------------------------------- faults


def test_429_fault(client: Any, sandbox: XSandbox) -> None:
    sandbox.add_fault("429", reset_in=3)
    before = clock.timestamp()
    with pytest.raises(tweepy.TooManyRequests) as raised:
        client.get_users_mentions(sandbox.brand_user_id)
    assert raised.value.reset_time is not None
    assert before < raised.value.reset_time <= before + 5
    assert raised.value.response.headers["x-rate-limit-remaining"] == "0"
    assert raised.value.response.json() == {
        "title": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
        "detail": "Too Many Requests",
    }
    assert client.get_users_mentions(sandbox.brand_user_id)["meta"]["result_count"] == 10


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_error_faults(client: Any, sandbox: XSandbox, kind: str, status: int) -> None:
    sandbox.add_fault(kind, times=2)
    for _ in range(2):
        with pytest.raises(tweepy.TwitterServerError) as raised:
            client.search_recent_tweets("acme")
        assert raised.value.response.status_code == status
        assert raised.value.response.json()["status"] == status
    assert "data" in client.search_recent_tweets("acme")


def test_malformed_fault(client: Any, sandbox: XSandbox) -> None:
    sandbox.add_fault("malformed")
    with pytest.raises(requests.exceptions.JSONDecodeError) as raised:
        client.get_users_tweets(sandbox.brand_user_id)
    assert isinstance(raised.value, ValueError)
    assert sandbox.requests[-1].status == 200
    assert "data" in client.get_users_tweets(sandbox.brand_user_id)


def test_malformed_body_is_a_prefix_of_a_real_page(sandbox: XSandbox) -> None:
    normal = _get(sandbox, f"/2/users/{sandbox.brand_user_id}/tweets")
    sandbox.add_fault("malformed")
    broken = _get(sandbox, f"/2/users/{sandbox.brand_user_id}/tweets")
    assert broken.status_code == 200
    assert broken.headers["Content-Type"].startswith("application/json")
    assert 0 < len(broken.content) < len(normal.content)
    assert normal.content.startswith(broken.content)


def test_slow_fault_times_out_then_recovers(sandbox: XSandbox) -> None:
    impatient = _client(sandbox, timeout=0.3)
    sandbox.add_fault("slow", delay=5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.get_users_mentions(sandbox.brand_user_id)
    assert time.monotonic() - started < 3
    assert impatient.get_users_mentions(sandbox.brand_user_id)["meta"]["result_count"] == 10
    impatient.session.close()


def test_slow_fault_answers_normally_after_the_delay(client: Any, sandbox: XSandbox) -> None:
    sandbox.add_fault("slow", delay=0.3)
    started = time.monotonic()
    body = client.get_user(username="acme")
    assert time.monotonic() - started >= 0.3
    assert body["data"]["id"] == sandbox.brand_user_id


def test_expired_token_fault(client: Any, sandbox: XSandbox) -> None:
    sandbox.add_fault("expired_token")
    with pytest.raises(tweepy.Unauthorized):
        client.get_user(username="acme")
    assert client.get_user(username="acme")["data"]["username"] == "acme"


def test_faults_target_endpoints_in_order(client: Any, sandbox: XSandbox) -> None:
    sandbox.add_fault("500", endpoint="search")
    sandbox.add_fault("429", endpoint="mentions")
    assert client.get_users_tweets(sandbox.brand_user_id)["meta"]["result_count"] == 10
    with pytest.raises(tweepy.TooManyRequests):
        client.get_users_mentions(sandbox.brand_user_id)
    with pytest.raises(tweepy.TwitterServerError):
        client.search_recent_tweets("acme")
    assert client.search_recent_tweets("acme")["meta"]["result_count"] == 10
    with pytest.raises(ValueError):
        sandbox.add_fault("teapot")
    with pytest.raises(ValueError):
        sandbox.add_fault("500", endpoint="likes")


def test_requests_are_recorded_with_redacted_authorization(client: Any, sandbox: XSandbox) -> None:
    client.get_users_mentions(sandbox.brand_user_id, max_results=5)
    recorded = sandbox.requests[-1]
    assert recorded.method == "GET"
    assert recorded.path == f"/2/users/{sandbox.brand_user_id}/mentions"
    assert recorded.query == {"max_results": ["5"]}
    assert recorded.headers["Authorization"] == "<redacted>"
    assert recorded.status == 200
    assert recorded.received_at <= time.monotonic()
    assert TOKEN not in repr(sandbox.requests)


def test_requests_are_logged_without_the_token(
    client: Any, sandbox: XSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger="monitor.platforms.x.sandbox"):
        client.get_user(username="acme")
    assert any("/2/users/by/username/acme" in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- control API


def test_control_api_over_http(sandbox: XSandbox) -> None:
    base = sandbox.url
    fault = {"kind": "503", "times": 1, "endpoint": "user"}
    assert requests.post(f"{base}/_sandbox/faults", json=fault, timeout=5).status_code == 200
    assert _get(sandbox, "/2/users/by/username/acme").status_code == 503
    assert _get(sandbox, "/2/users/by/username/acme").status_code == 200

    earlier = END - timedelta(days=3)
    answer = requests.post(
        f"{base}/_sandbox/clock", json={"clock": "2026-11-19T12:00:00Z"}, timeout=5
    )
    assert answer.status_code == 200
    assert sandbox.clock == earlier
    assert requests.get(f"{base}/_sandbox/clock", timeout=5).json() == {
        "clock": "2026-11-19T12:00:00.000Z"
    }

    recorded = requests.get(f"{base}/_sandbox/requests", timeout=5).json()
    assert [(r["path"], r["status"]) for r in recorded] == [
        ("/2/users/by/username/acme", 503),
        ("/2/users/by/username/acme", 200),
    ]
    assert recorded[0]["headers"]["Authorization"] == "<redacted>"
    assert set(recorded[0]) == {"method", "path", "query", "headers", "received_at", "status"}


@pytest.mark.parametrize(
    "payload",
    [{"kind": "nope"}, {"kind": "500", "times": "x"}, {"kind": "500", "endpoint": "home"}],
)
def test_control_api_rejects_bad_faults(sandbox: XSandbox, payload: Mapping[str, Any]) -> None:
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json=payload, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()


# --------------------------------------------------------------------------- recorded shapes


def _tweet_keys(tweet: Mapping[str, Any]) -> set[str]:
    """Top-level keys of a recorded tweet the sandbox can produce.

    The recordings predate edits (no ``edit_history_tweet_ids``, which X now always sends) and
    carry fields the sandbox does not model (``source`` is deprecated, no media/geo/annotations).
    """
    unmodelled = {"source", "attachments", "geo", "context_annotations"}
    return (set(tweet) - unmodelled) | {"edit_history_tweet_ids"}


def _requested_fields(tweet: Mapping[str, Any]) -> list[str]:
    return sorted(_tweet_keys(tweet) - {"id", "text", "edit_history_tweet_ids"})


@pytest.mark.parametrize(
    ("fixture", "method"),
    [
        ("users_tweets_with_fields.json", "get_users_tweets"),
        ("users_mentions_with_fields.json", "get_users_mentions"),
    ],
)
def test_timeline_shapes_match_recordings(
    client: Any, sandbox: XSandbox, fixture: str, method: str
) -> None:
    recorded = _fixture_body(fixture)
    fields = _requested_fields(recorded["data"][0])
    served = getattr(client, method)(sandbox.brand_user_id, max_results=5, tweet_fields=fields)
    assert set(served) == set(recorded)
    assert set(served["meta"]) == set(recorded["meta"])
    for ours, theirs in zip(served["data"], recorded["data"], strict=True):
        assert set(ours) == _tweet_keys(theirs)
        assert set(ours["public_metrics"]) == set(theirs["public_metrics"])
        assert type(ours["id"]) is type(theirs["id"]) is str


def test_search_reply_shape_matches_recording(client: Any, sandbox: XSandbox) -> None:
    recorded = _fixture_body("search_recent_replies.json")
    reply = next(t for t in recorded["data"] if "in_reply_to_user_id" in t)
    fields = _requested_fields(reply)
    served = client.search_recent_tweets("from:acme", max_results=100, tweet_fields=fields)
    ours = next(t for t in served["data"] if "in_reply_to_user_id" in t)
    assert set(ours) == _tweet_keys(reply)
    assert set(served["meta"]) == set(recorded["meta"])
    assert [set(r) for r in ours["referenced_tweets"]] == [
        set(r) for r in reply["referenced_tweets"]
    ]
    theirs_entities = {
        k: set(v[0]) for t in recorded["data"] for k, v in t.get("entities", {}).items()
    }
    ours_entities = {k: set(v[0]) for t in served["data"] for k, v in t.get("entities", {}).items()}
    for kind, keys in ours_entities.items():
        assert keys == theirs_entities[kind]


def test_includes_shape_matches_recording(client: Any, sandbox: XSandbox) -> None:
    recorded = _fixture_body("search_conversation_with_includes.json")
    fields = sorted(
        set().union(*(_requested_fields(t) for t in recorded["data"]))
        - {"entities", "possibly_sensitive"}
    )
    mention = [i for i in _visible(sandbox, MENTION) if i.replies][-1]
    served = client.search_recent_tweets(
        f"conversation_id:{sandbox.tweet_id(mention)}",
        tweet_fields=fields,
        expansions=["author_id", "referenced_tweets.id"],
        user_fields=["created_at", "description"],
    )
    assert set(served) == set(recorded) == {"data", "includes", "meta"}
    assert set(served["meta"]) == set(recorded["meta"])  # a single page: no next_token
    assert set(served["includes"]) == set(recorded["includes"])
    assert {frozenset(u) for u in served["includes"]["users"]} == {
        frozenset(u) for u in recorded["includes"]["users"]
    }
    reply = next(t for t in served["data"] if "referenced_tweets" in t)
    assert set(reply) == _tweet_keys(recorded["data"][1]) - {"possibly_sensitive"}
