"""Drive the real praw client (and plain requests, for faults) against the Reddit sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import praw
import prawcore
import pytest
import requests

from monitor.platforms.reddit.sandbox import RATE_LIMIT, RedditSandbox, SearchQuery, base36
from monitor.sandbox.traffic import KEYWORD, MENTION, POST, REPLY, TrafficItem

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(days=3)
CLIENT = ("sandbox-client", "sandbox-secret")
LOGIN = ("acme", "hunter2-password")
FIXTURES = Path(__file__).parents[2] / "fixtures" / "reddit"
TOKEN_PATH = "/api/v1/access_token"


@pytest.fixture
def sandbox() -> Iterator[RedditSandbox]:
    with RedditSandbox(
        seed=5,
        keywords=("acme", "rocket skates"),
        start=START,
        end=END,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        username=LOGIN[0],
        password=LOGIN[1],
    ) as running:
        yield running


def _reddit(sandbox: RedditSandbox, *, login: bool = True) -> praw.Reddit:
    username, password = LOGIN if login else (None, None)
    return praw.Reddit(
        "DEFAULT",
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        username=username,
        password=password,
        user_agent="touchpoint sandbox tests",
        oauth_url=sandbox.url,
        reddit_url=sandbox.url,
        check_for_updates=False,
    )


@pytest.fixture
def reddit(sandbox: RedditSandbox) -> praw.Reddit:
    return _reddit(sandbox)


def _fixture(name: str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return envelope


def _fixture_keys(name: str, *, drop: tuple[str, ...] = ()) -> set[str]:
    children = _fixture(name)["response"]["body"]["data"]["children"]
    return {k for c in children for k in c["data"]} - set(drop)


def _fullnames(sandbox: RedditSandbox, items: list[TrafficItem]) -> list[str]:
    """Fullnames of ``items``, newest first."""
    return [sandbox.fullname(i) for i in sorted(items, key=lambda i: i.seq, reverse=True)]


def _visible(sandbox: RedditSandbox, *kinds: str) -> list[TrafficItem]:
    return [i for i in sandbox.visible() if i.kind in kinds]


def _token(sandbox: RedditSandbox, **form: str) -> requests.Response:
    return requests.post(sandbox.url + TOKEN_PATH, data=form, auth=CLIENT, timeout=10)


def _get(sandbox: RedditSandbox, path: str, **params: str) -> requests.Response:
    token = _token(sandbox, grant_type="password", username=LOGIN[0], password=LOGIN[1])
    headers = {"Authorization": f"bearer {token.json()['access_token']}"}
    return requests.get(sandbox.url + path, params=params, headers=headers, timeout=10)


# --------------------------------------------------------------------------- ids and tokens


def test_ids_are_base36_and_grow_with_time(sandbox: RedditSandbox) -> None:
    assert [base36(n) for n in (0, 35, 36, 1295)] == ["0", "z", "10", "zz"]
    for prefix in ("t1_", "t3_"):
        numbers = [
            int(name[3:], 36)
            for name in (sandbox.fullname(i) for i in sandbox.items)
            if name.startswith(prefix)
        ]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    kinds = {i.kind: sandbox.fullname(i)[:3] for i in sandbox.items}
    assert kinds == {POST: "t3_", KEYWORD: "t3_", MENTION: "t1_", REPLY: "t1_"}
    assert sandbox.user_fullname("ACME") == sandbox.user_fullname("acme")


def test_token_grants_have_the_recorded_shape(sandbox: RedditSandbox) -> None:
    recorded = _fixture("token_password_grant.json")["response"]["body"]
    password = _token(sandbox, grant_type="password", username="acme", password=LOGIN[1])
    app_only = _token(sandbox, grant_type="client_credentials")
    for answer in (password, app_only):
        assert answer.status_code == 200 and set(answer.json()) == set(recorded)
        assert answer.json()["token_type"] == "bearer" and answer.json()["scope"] == "*"
    assert password.json()["access_token"] != app_only.json()["access_token"]
    wrong = _token(sandbox, grant_type="password", username="acme", password="nope")
    assert (wrong.status_code, wrong.json()) == (200, {"error": "invalid_grant"})
    bad_client = requests.post(
        sandbox.url + TOKEN_PATH, data={"grant_type": "client_credentials"}, timeout=10
    )
    assert bad_client.status_code == 401 and bad_client.json() == {
        "message": "Unauthorized",
        "error": 401,
    }


def test_praw_logs_in_as_a_script_app(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    me = reddit.user.me()
    assert me is not None and me.name == "acme"
    assert not reddit.read_only
    (token_call,) = [r for r in sandbox.requests if r.path == TOKEN_PATH]
    assert token_call.headers["Authorization"] == "<redacted>"


# --------------------------------------------------------------------------- listings


def test_overview_lists_the_brands_posts_and_replies_newest_first(
    reddit: praw.Reddit, sandbox: RedditSandbox
) -> None:
    overview = list(reddit.redditor("acme").overview.new(limit=None))
    assert [t.fullname for t in overview] == _fullnames(sandbox, _visible(sandbox, POST, REPLY))
    submitted = list(reddit.redditor("acme").submissions.new(limit=None))
    assert [t.fullname for t in submitted] == _fullnames(sandbox, _visible(sandbox, POST))
    comments = list(reddit.redditor("acme").comments.new(limit=None))
    assert [t.fullname for t in comments] == _fullnames(sandbox, _visible(sandbox, REPLY))


def test_brand_replies_answer_mentions(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    for item in _visible(sandbox, REPLY):
        thing = sandbox.thing(item)
        assert item.in_reply_to_seq is not None
        mention = sandbox.thing(sandbox.items[item.in_reply_to_seq])
        assert thing.parent == mention.fullname and thing.link_id36 == mention.link_id36
    reply = next(iter(reddit.redditor("acme").comments.new(limit=1)))
    assert reply.parent_id.startswith("t1_") and reply.author.name == "acme"


def test_inbox_feeds_hold_the_mentions(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    mentions = _visible(sandbox, MENTION)
    inbox = list(reddit.inbox.all(limit=None))
    assert [t.fullname for t in inbox] == _fullnames(sandbox, mentions)
    by_type = {
        "username_mention": list(reddit.inbox.mentions(limit=None)),
        "post_reply": list(reddit.inbox.submission_replies(limit=None)),
    }
    assert all(by_type.values())
    assert sum(len(v) for v in by_type.values()) == len(mentions)
    for kind, things in by_type.items():
        assert {t.type for t in things} == {kind}
    brand_posts = {sandbox.fullname(i) for i in _visible(sandbox, POST)}
    assert all(t.parent_id in brand_posts for t in by_type["post_reply"])
    assert all("u/acme" in t.body for t in by_type["username_mention"])
    assert list(reddit.inbox.comment_replies(limit=None)) == []


def test_search_finds_keyword_submissions(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    hits = list(reddit.subreddit("all").search('acme OR "rocket skates"', sort="new", limit=None))
    keyword_items = _visible(sandbox, KEYWORD)
    assert {t.fullname for t in hits} >= set(_fullnames(sandbox, keyword_items))
    assert all(t.fullname.startswith("t3_") for t in hits)
    only_skates = list(reddit.subreddit("all").search('"rocket skates"', sort="new", limit=None))
    assert only_skates and all("rocket skates" in t.title.lower() for t in only_skates)
    subreddit = hits[0].subreddit.display_name
    narrowed = list(reddit.subreddit(subreddit).search("acme", sort="new", limit=None))
    assert narrowed and {t.subreddit.display_name for t in narrowed} == {subreddit}
    assert SearchQuery.parse('author:Bob "a b" OR -c NOT d') == SearchQuery(("a b", "d"), ("bob",))


def test_pagination_visits_every_item_once(sandbox: RedditSandbox) -> None:
    expected = _fullnames(sandbox, _visible(sandbox, POST, REPLY))
    seen: list[str] = []
    after = None
    while True:
        params = {
            "limit": "7",
            "sort": "new",
            "raw_json": "1",
            **({"after": after} if after else {}),
        }
        page = _get(sandbox, "/user/acme/overview", **params).json()["data"]
        seen.extend(c["data"]["name"] for c in page["children"])
        after = page["after"]
        if after is None:
            break
        assert len(page["children"]) == 7
    assert seen == expected
    newer = _get(sandbox, "/user/acme/overview", before=expected[10], limit="3").json()["data"]
    assert [c["data"]["name"] for c in newer["children"]] == expected[7:10]
    gone = _get(sandbox, "/user/acme/overview", after="t1_doesnotexist").json()["data"]
    assert (gone["children"], gone["after"]) == ([], None)


def test_clock_controls_visibility(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    sandbox.set_clock(START + timedelta(days=1))
    overview = list(reddit.redditor("acme").overview.new(limit=None))
    assert (
        len(overview)
        == len(_visible(sandbox, POST, REPLY))
        < len([i for i in sandbox.items if i.kind in (POST, REPLY)])
    )


def test_read_only_app_cannot_read_an_inbox(sandbox: RedditSandbox) -> None:
    reddit = _reddit(sandbox, login=False)
    assert reddit.read_only
    assert list(reddit.redditor("acme").submissions.new(limit=3))
    with pytest.raises(prawcore.Forbidden):
        list(reddit.inbox.all(limit=1))


def test_unknown_user_and_subreddit(reddit: praw.Reddit, sandbox: RedditSandbox) -> None:
    assert _get(sandbox, "/user/nobody_here/about").status_code == 404
    about = _get(sandbox, "/user/acme/about").json()
    assert about["kind"] == "t2" and "t2_" + about["data"]["id"] == sandbox.user_fullname("acme")
    with pytest.raises(prawcore.Redirect):
        list(reddit.subreddit("nosuchsubreddit").search("acme", limit=1))


# --------------------------------------------------------------------------- shapes


def test_things_have_the_recorded_keys(sandbox: RedditSandbox) -> None:
    submitted = _get(sandbox, "/user/acme/submitted", raw_json="1").json()
    t3_keys = _fixture_keys("redditor_submissions_new.json", drop=("post_hint", "preview"))
    assert all(t3_keys <= set(c["data"]) for c in submitted["data"]["children"])
    comments = _get(sandbox, "/user/acme/comments", raw_json="1").json()
    t1_keys = _fixture_keys("redditor_comments_new.json")
    assert all(t1_keys <= set(c["data"]) for c in comments["data"]["children"])
    inbox = _get(sandbox, "/message/inbox", raw_json="1").json()
    inbox_keys = _fixture_keys("inbox_submission_replies.json")
    assert all(set(c["data"]) == inbox_keys for c in inbox["data"]["children"])
    recorded = _fixture("inbox_submission_replies.json")["response"]["body"]
    assert set(inbox) == set(recorded) and set(inbox["data"]) == set(recorded["data"])


def test_raw_json_controls_html_escaping(sandbox: RedditSandbox) -> None:
    hits = [i for i in _visible(sandbox, MENTION) if "&" in sandbox.thing(i).text]
    if not hits:
        pytest.skip("no mention with an ampersand in this traffic")
    name = sandbox.fullname(hits[0])
    raw = _get(sandbox, "/api/info", id=name, raw_json="1").json()["data"]["children"][0]
    escaped = _get(sandbox, "/api/info", id=name).json()["data"]["children"][0]
    assert "&" in raw["data"]["body"] and "&amp;" in escaped["data"]["body"]


def test_rate_limit_headers_on_every_api_answer(sandbox: RedditSandbox) -> None:
    first = _get(sandbox, "/user/acme/overview")
    second = _get(sandbox, "/user/acme/overview")
    for answer in (first, second):
        assert answer.headers["x-ratelimit-remaining"].endswith(".0")
        assert answer.headers["x-ratelimit-reset"].isdigit()
    used = int(second.headers["x-ratelimit-used"])
    assert used == int(first.headers["x-ratelimit-used"]) + 1
    assert float(second.headers["x-ratelimit-remaining"]) == RATE_LIMIT - used
    missing = _get(sandbox, "/nowhere")
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found", "error": 404}
    token = _token(sandbox, grant_type="client_credentials")
    assert "x-ratelimit-remaining" not in token.headers


# --------------------------------------------------------------------------- faults


def test_expired_token_fault_is_a_401_prawcore_understands(sandbox: RedditSandbox) -> None:
    recorded = _fixture("error_401_invalid_token.json")["response"]
    sandbox.add_fault("expired_token", endpoint="inbox")
    answer = _get(sandbox, "/message/inbox")
    assert answer.status_code == 401 and answer.json() == recorded["body"]
    assert answer.headers["www-authenticate"] == recorded["headers"]["www-authenticate"]
    assert _get(sandbox, "/message/inbox").status_code == 200


def test_429_fault_has_retry_after_and_an_empty_budget(sandbox: RedditSandbox) -> None:
    sandbox.add_fault("429", endpoint="search", reset_in=7)
    answer = _get(sandbox, "/r/all/search", q="acme")
    assert answer.status_code == 429
    assert answer.json() == {"message": "Too Many Requests", "error": 429}
    assert answer.headers["retry-after"] == answer.headers["x-ratelimit-reset"] == "7"
    assert answer.headers["x-ratelimit-remaining"] == "0.0"


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_error_faults(sandbox: RedditSandbox, kind: str, status: int) -> None:
    sandbox.add_fault(kind, endpoint="overview")
    answer = _get(sandbox, "/user/acme/overview")
    assert answer.status_code == status and answer.json()["error"] == status
    assert "x-ratelimit-remaining" in answer.headers


def test_malformed_fault_is_a_cut_listing(sandbox: RedditSandbox) -> None:
    sandbox.add_fault("malformed", endpoint="overview")
    answer = _get(sandbox, "/user/acme/overview")
    assert answer.status_code == 200 and answer.text.startswith('{"kind": "Listing"')
    with pytest.raises(ValueError):
        answer.json()


def test_slow_fault_delays_the_answer(sandbox: RedditSandbox) -> None:
    sandbox.add_fault("slow", endpoint="overview", delay=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _get_with_timeout(sandbox, "/user/acme/overview", 0.3)


def _get_with_timeout(sandbox: RedditSandbox, path: str, timeout: float) -> requests.Response:
    token = _token(sandbox, grant_type="client_credentials").json()["access_token"]
    headers = {"Authorization": f"bearer {token}"}
    return requests.get(sandbox.url + path, headers=headers, timeout=timeout)


def test_generated_traffic_is_deterministic() -> None:
    one = RedditSandbox(seed=3, start=START, end=END)
    two = RedditSandbox(seed=3, start=START, end=END)
    assert [one.fullname(i) for i in one.items] == [two.fullname(i) for i in two.items]
    assert [one.thing(i) for i in one.items] == [two.thing(i) for i in two.items]
