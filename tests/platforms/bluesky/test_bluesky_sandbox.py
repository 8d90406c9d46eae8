"""The Bluesky XRPC sandbox, driven over plain httpx and checked against the lexicons."""

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
from monitor.platforms.bluesky.sandbox import BlueskySandbox, SearchQuery, did_for, tid
from monitor.sandbox.traffic import KEYWORD, MENTION, POST, REPLY

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(days=2)
PASSWORD = "sandbox-app-password"
HANDLE = "acme.bsky.social"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bluesky"
TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def lexicon(nsid: str) -> dict[str, Any]:
    defs: dict[str, Any] = json.loads(
        (FIXTURES / "lexicons" / f"{nsid}.json").read_text(encoding="utf-8")
    )["defs"]
    return defs


def schema(ref: str) -> dict[str, Any]:
    """The object schema of ``nsid#def``; ``nsid`` alone is a method's output or a record."""
    nsid, _, name = ref.partition("#")
    found = lexicon(nsid)[name or "main"]
    if "output" in found:
        result: dict[str, Any] = found["output"]["schema"]
        return result
    return dict(found.get("record", found))


def conforms(value: dict[str, Any], ref: str) -> None:
    """``value`` has every required property of ``ref`` and none it does not define."""
    spec = schema(ref)
    keys = set(value) - {"$type"}
    assert set(spec.get("required", [])) <= keys, (ref, keys)
    assert keys <= set(spec["properties"]), (ref, keys - set(spec["properties"]))


def snapshot(name: str) -> Any:
    envelope = json.loads((FIXTURES / "appview_snapshots" / name).read_text(encoding="utf-8"))
    return envelope["response"]["body"]


@pytest.fixture
def sandbox() -> Iterator[BlueskySandbox]:
    with BlueskySandbox(
        seed=5, brand_handle=HANDLE, start=START, end=END, app_password=PASSWORD
    ) as server:
        yield server


@pytest.fixture
def http(sandbox: BlueskySandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url + "/xrpc/", timeout=10) as client:
        yield client


def login(http: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    body = {"identifier": HANDLE, "password": password}
    return http.post("com.atproto.server.createSession", json=body)


@pytest.fixture
def auth(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {login(http).json()['accessJwt']}"}


def walk(http: httpx.Client, nsid: str, field: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a cursor-paginated query."""
    pages = []
    cursor = None
    while True:
        answer = http.get(nsid, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        cursor = pages[-1].get("cursor")
        assert isinstance(pages[-1][field], list)
        if cursor is None:
            return pages
        assert len(pages) < 200


def visible(sandbox: BlueskySandbox, *kinds: str) -> list[Any]:
    return [i for i in sandbox.visible() if i.kind in kinds]


# --------------------------------------------------------------------------- identifiers


def test_bluesky_sandbox_ids_are_deterministic_and_well_formed() -> None:
    one = BlueskySandbox(seed=5, start=START, end=END)
    two = BlueskySandbox(seed=5, start=START, end=END)
    uris = [one.uri(i) for i in one.items]
    assert uris == [two.uri(i) for i in two.items] and len(set(uris)) == len(uris)
    pattern = re.compile(r"at://did:plc:[a-z2-7]{24}/app\.bsky\.feed\.post/[2-7a-z]{13}")
    assert all(pattern.fullmatch(u) for u in uris)
    assert all(one.record(i).cid.startswith("bafyrei") for i in one.items)
    assert one.brand_did == did_for(HANDLE) and one.brand_did.startswith("did:plc:")
    early, late = tid(START, 0), tid(START + timedelta(microseconds=1), 0)
    assert len(early) == 13 and early < late  # TIDs sort by time


def test_bluesky_sandbox_clock_controls_visibility(sandbox: BlueskySandbox) -> None:
    assert sandbox.clock == END and sandbox.visible() == sandbox.items
    sandbox.set_clock(END - timedelta(days=1))
    assert all(i.created_at <= END - timedelta(days=1) for i in sandbox.visible())
    assert len(sandbox.visible()) < len(sandbox.items)


# --------------------------------------------------------------------------- sessions


def test_bluesky_sandbox_sessions(sandbox: BlueskySandbox, http: httpx.Client) -> None:
    answer = login(http)
    assert answer.status_code == 200
    session = answer.json()
    conforms(session, "com.atproto.server.createSession")
    assert (session["did"], session["handle"]) == (sandbox.brand_did, HANDLE)
    assert session["accessJwt"].count(".") == 2 and session["accessJwt"] != session["refreshJwt"]
    access = {"Authorization": f"Bearer {session['accessJwt']}"}
    refresh = {"Authorization": f"Bearer {session['refreshJwt']}"}

    got = http.get("com.atproto.server.getSession", headers=access).json()
    conforms(got, "com.atproto.server.getSession")
    wrong = http.get("com.atproto.server.getSession", headers=refresh)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "InvalidToken")
    wrong = http.post("com.atproto.server.refreshSession", headers=access)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "InvalidToken")

    renewed = http.post("com.atproto.server.refreshSession", headers=refresh)
    assert renewed.status_code == 200
    conforms(renewed.json(), "com.atproto.server.refreshSession")
    again = http.post("com.atproto.server.refreshSession", headers=refresh)
    assert again.status_code == 400 and again.json() == {
        "error": "ExpiredToken",
        "message": "Token has been revoked",
    }
    assert (sandbox.create_session_calls, sandbox.refresh_session_calls) == (1, 3)


def test_bluesky_sandbox_refuses_bad_logins(sandbox: BlueskySandbox, http: httpx.Client) -> None:
    refused = login(http, "wrong")
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "AuthenticationRequired",
        "message": "Invalid identifier or password",
    }
    missing = http.post("com.atproto.server.createSession", json={"identifier": HANDLE})
    assert (missing.status_code, missing.json()["error"]) == (400, "InvalidRequest")
    assert http.get("com.atproto.server.createSession").status_code == 400  # a procedure
    anonymous = http.get("app.bsky.notification.listNotifications")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "AuthenticationRequired"
    forged = http.get("com.atproto.server.getSession", headers={"Authorization": "Bearer x.y.z"})
    assert (forged.status_code, forged.json()["error"]) == (401, "InvalidToken")


def test_bluesky_sandbox_createsession_has_its_own_tight_limit(
    sandbox: BlueskySandbox, http: httpx.Client
) -> None:
    statuses = [login(http, "wrong").status_code for _ in range(31)]
    assert statuses == [401] * 30 + [429]
    limited = login(http)
    assert limited.json()["error"] == "RateLimitExceeded"
    assert limited.headers["RateLimit-Policy"] == "30;w=300"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) > clock.now().timestamp()


def test_bluesky_sandbox_access_tokens_expire(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    params = {"actor": HANDLE}
    assert http.get("app.bsky.feed.getAuthorFeed", params=params, headers=auth).status_code == 200
    sandbox.expire_access_tokens()
    expired = http.get("app.bsky.feed.getAuthorFeed", params=params, headers=auth)
    assert expired.status_code == 400
    assert expired.json() == {"error": "ExpiredToken", "message": "Token has expired"}
    assert http.get("app.bsky.feed.getAuthorFeed", params=params).status_code == 200  # public


def test_bluesky_sandbox_expired_token_fault_expires_the_token(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    sandbox.add_fault("expired_token", endpoint="listNotifications")
    first = http.get("app.bsky.notification.listNotifications", headers=auth)
    assert (first.status_code, first.json()["error"]) == (400, "ExpiredToken")
    then = http.get("app.bsky.feed.searchPosts", params={"q": "acme"}, headers=auth)
    assert then.status_code == 400  # the token itself has expired, not just one answer
    fresh = {"Authorization": f"Bearer {login(http).json()['accessJwt']}"}
    assert http.get("app.bsky.notification.listNotifications", headers=fresh).status_code == 200


# --------------------------------------------------------------------------- identity and feeds


def test_bluesky_sandbox_resolve_handle(sandbox: BlueskySandbox, http: httpx.Client) -> None:
    brand = http.get("com.atproto.identity.resolveHandle", params={"handle": HANDLE})
    assert brand.json() == {"did": sandbox.brand_did}
    customer = sandbox.handle(visible(sandbox, MENTION)[0])
    answer = http.get("com.atproto.identity.resolveHandle", params={"handle": customer})
    assert answer.json() == {"did": did_for(customer)}
    unknown = http.get("com.atproto.identity.resolveHandle", params={"handle": "no.such.test"})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "InvalidRequest", "message": "Unable to resolve handle"}


def test_bluesky_sandbox_author_feed_pages_newest_first(
    sandbox: BlueskySandbox, http: httpx.Client
) -> None:
    pages = walk(http, "app.bsky.feed.getAuthorFeed", "feed", actor=sandbox.brand_did, limit=7)
    assert len(pages) >= 3 and all(len(p["feed"]) == 7 for p in pages[:-1])
    entries = [e for p in pages for e in p["feed"]]
    own = [e["post"]["uri"] for e in entries if "reason" not in e]
    brand_items = sorted(visible(sandbox, POST, REPLY), key=lambda i: i.seq, reverse=True)
    assert sorted(own) == sorted(sandbox.uri(i) for i in brand_items)
    reposts = [e for e in entries if "reason" in e]
    assert reposts and all(e["post"]["author"]["did"] != sandbox.brand_did for e in reposts)
    times = [(e.get("reason") or e["post"])["indexedAt"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert len({json.dumps(e, sort_keys=True) for e in entries}) == len(entries)


def test_bluesky_sandbox_feed_shapes_follow_the_lexicons_and_snapshots(
    sandbox: BlueskySandbox, http: httpx.Client
) -> None:
    body = http.get("app.bsky.feed.getAuthorFeed", params={"actor": HANDLE, "limit": 100}).json()
    conforms(body, "app.bsky.feed.getAuthorFeed")
    recorded = snapshot("get_author_feed_feed.json")
    recorded_post_keys = set(recorded[3]["post"])
    reply = next(e for e in body["feed"] if "reply" in e and "reason" not in e)
    repost = next(e for e in body["feed"] if "reason" in e)
    for entry in (reply, repost):
        conforms(entry, "app.bsky.feed.defs#feedViewPost")
        conforms(entry["post"], "app.bsky.feed.defs#postView")
        conforms(entry["post"]["author"], "app.bsky.actor.defs#profileViewBasic")
        conforms(entry["post"]["record"], "app.bsky.feed.post")
        assert set(entry["post"]) == recorded_post_keys
        assert TIME_FORMAT.fullmatch(entry["post"]["indexedAt"])
    conforms(reply["reply"], "app.bsky.feed.defs#replyRef")
    assert reply["reply"]["parent"]["$type"] == "app.bsky.feed.defs#postView"
    record_reply = reply["post"]["record"]["reply"]
    assert record_reply["parent"]["uri"] == reply["reply"]["parent"]["uri"]
    conforms(record_reply["parent"], "com.atproto.repo.strongRef")
    conforms(repost["reason"], "app.bsky.feed.defs#reasonRepost")
    assert repost["reason"]["$type"] == recorded[0]["reason"]["$type"]
    assert repost["reason"]["by"]["did"] == sandbox.brand_did
    facet = reply["post"]["record"]["facets"][0]
    conforms(facet, "app.bsky.richtext.facet")
    text = reply["post"]["record"]["text"].encode()
    handle = text[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode()
    assert facet["features"][0]["did"] == did_for(handle.lstrip("@"))


def test_bluesky_sandbox_feed_filters_and_pins(sandbox: BlueskySandbox, http: httpx.Client) -> None:
    params: dict[str, Any] = {"actor": HANDLE, "limit": 100}
    no_replies = http.get(
        "app.bsky.feed.getAuthorFeed", params={**params, "filter": "posts_no_replies"}
    )
    own = [e for e in no_replies.json()["feed"] if "reason" not in e]
    assert len(own) == len(visible(sandbox, POST)) and not any("reply" in e for e in own)
    pinned = http.get("app.bsky.feed.getAuthorFeed", params={**params, "includePins": "true"})
    first = pinned.json()["feed"][0]
    assert first["reason"] == {"$type": "app.bsky.feed.defs#reasonPin"}
    bad = http.get("app.bsky.feed.getAuthorFeed", params={**params, "filter": "everything"})
    assert (bad.status_code, bad.json()["error"]) == (400, "InvalidRequest")
    too_many = http.get("app.bsky.feed.getAuthorFeed", params={"actor": HANDLE, "limit": 101})
    assert too_many.status_code == 400
    unknown = http.get("app.bsky.feed.getAuthorFeed", params={"actor": "did:plc:nobody"})
    assert unknown.json() == {"error": "InvalidRequest", "message": "Profile not found"}


# --------------------------------------------------------------------------- notifications


def test_bluesky_sandbox_notifications_are_filtered_after_paging(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    http.headers.update(auth)
    pages = walk(
        http,
        "app.bsky.notification.listNotifications",
        "notifications",
        reasons=["mention", "reply"],
        limit=5,
    )
    assert any(not p["notifications"] and "cursor" in p for p in pages)  # empty, yet go on
    assert any(0 < len(p["notifications"]) < 5 and "cursor" in p for p in pages)  # short
    notes = [n for p in pages for n in p["notifications"]]
    assert {n["reason"] for n in notes} == {"mention", "reply"}
    assert sorted(n["uri"] for n in notes) == sorted(
        sandbox.uri(i) for i in visible(sandbox, MENTION)
    )
    everything = walk(http, "app.bsky.notification.listNotifications", "notifications", limit=100)
    reasons = {n["reason"] for p in everything for n in p["notifications"]}
    assert reasons == {"mention", "reply", "like", "repost"}
    # the unfiltered pages hold the same number of raw notifications per page
    assert sum(len(p["notifications"]) for p in everything) > len(notes)


def test_bluesky_sandbox_notification_shapes(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    params = {"reasons": ["mention", "reply"], "limit": 100}
    body = http.get("app.bsky.notification.listNotifications", params=params, headers=auth).json()
    conforms(body, "app.bsky.notification.listNotifications")
    assert body["priority"] is False and TIME_FORMAT.fullmatch(body["seenAt"])
    recorded = snapshot("list_notifications_reasons_mention_reply.json")["notifications"]
    brand_posts = {sandbox.uri(i) for i in visible(sandbox, POST)}
    for note in body["notifications"]:
        conforms(note, "app.bsky.notification.listNotifications#notification")
        conforms(note["author"], "app.bsky.actor.defs#profileView")
        same = next(r for r in recorded if r["reason"] == note["reason"])
        assert set(note) == set(same)
        if note["reason"] == "reply":
            assert note["reasonSubject"] in brand_posts
            assert note["record"]["reply"]["parent"]["uri"] == note["reasonSubject"]
        else:
            mentioned = [f["features"][0]["did"] for f in note["record"]["facets"]]
            assert sandbox.brand_did in mentioned


# --------------------------------------------------------------------------- search


def test_bluesky_sandbox_search_pages_by_offset(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    http.headers.update(auth)
    pages = walk(http, "app.bsky.feed.searchPosts", "posts", q="acme", limit=4)
    assert len(pages) >= 3 and [p.get("cursor") for p in pages[:2]] == ["4", "8"]
    conforms(pages[0], "app.bsky.feed.searchPosts")
    hits = [p for page in pages for p in page["posts"]]
    assert pages[0]["hitsTotal"] == len(hits)
    created = [h["record"]["createdAt"] for h in hits]
    assert created == sorted(created, reverse=True)
    hit_uris = {h["uri"] for h in hits}
    assert {sandbox.uri(i) for i in visible(sandbox, KEYWORD)} <= hit_uris
    query = SearchQuery.parse("acme")
    assert all(query.matches(h["record"]["text"], h["author"]["handle"]) for h in hits)


def test_bluesky_sandbox_search_words_alternatives_and_window(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    query = SearchQuery.parse('"rocket skates" | acme -refund from:someone.test')
    assert query.alternatives == (("rocket skates",), ("acme",))
    assert query.excluded == ("refund",) and query.authors == ("someone.test",)
    plain = SearchQuery.parse("acme")
    assert plain.matches("I love #acme.", "x") and plain.matches("Acme rocks", "x")
    assert not plain.matches("hi @acme.bsky.social", "x") and not plain.matches("acmeish", "x")
    since, until = START + timedelta(hours=6), START + timedelta(hours=30)
    params = {"q": "acme", "limit": 100, "since": since.isoformat(), "until": until.isoformat()}
    body = http.get("app.bsky.feed.searchPosts", params=params, headers=auth).json()
    assert body["posts"] and all(
        since <= datetime.fromisoformat(p["record"]["createdAt"]) < until for p in body["posts"]
    )
    assert http.get("app.bsky.feed.searchPosts", params={"q": "acme"}).status_code == 401
    empty = http.get("app.bsky.feed.searchPosts", params={"q": "-x"}, headers=auth)
    assert (empty.status_code, empty.json()["error"]) == (400, "BadQueryString")


# --------------------------------------------------------------------------- faults and errors


def test_bluesky_sandbox_fault_answers(
    sandbox: BlueskySandbox, http: httpx.Client, auth: dict[str, str]
) -> None:
    http.headers.update(auth)
    sandbox.add_fault("429", endpoint="searchPosts", reset_in=30)
    sandbox.add_fault("500", endpoint="searchPosts")
    sandbox.add_fault("503", endpoint="searchPosts")
    sandbox.add_fault("malformed", endpoint="searchPosts")
    limited = http.get("app.bsky.feed.searchPosts", params={"q": "acme"})
    assert limited.status_code == 429
    assert limited.json() == {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
    reset = int(limited.headers["RateLimit-Reset"])
    assert 25 < reset - clock.now().timestamp() <= 31
    assert limited.headers["RateLimit-Remaining"] == "0"
    failed = http.get("app.bsky.feed.searchPosts", params={"q": "acme"})
    assert failed.json() == {"error": "InternalServerError", "message": "Internal Server Error"}
    assert "RateLimit-Limit" in failed.headers
    unavailable = http.get("app.bsky.feed.searchPosts", params={"q": "acme"})
    assert (unavailable.status_code, unavailable.json()["error"]) == (503, "NotEnoughResources")
    broken = http.get("app.bsky.feed.searchPosts", params={"q": "acme"})
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    fine = http.get("app.bsky.feed.searchPosts", params={"q": "acme"})
    assert fine.status_code == 200 and fine.headers["RateLimit-Policy"] == "3000;w=300"


def test_bluesky_sandbox_unknown_methods(http: httpx.Client) -> None:
    unknown = http.get("app.bsky.feed.getTimeline")
    assert unknown.status_code == 501
    assert unknown.json() == {"error": "MethodNotImplemented", "message": "Not Implemented"}
    with pytest.raises(ValueError):
        BlueskySandbox(brand_handle="Not A Handle")
