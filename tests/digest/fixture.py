"""A small store whose digest figures are worked out by hand in the tests.

Brand ``acme`` in Europe/Berlin (UTC+1 in November) on x, mastodon, reddit and bluesky. The day
under test is 2026-11-20 local, i.e. [2026-11-19T23:00Z, 2026-11-20T23:00Z); the digest is built
at 08:00 local the day after (``AS_OF``), so the day before is judged as of 2026-11-20T07:00Z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from monitor import store
from monitor.config import Settings, parse_settings
from monitor.models import Kind, Post, RunResult, StreamKey

BRAND = "acme"
TIMEZONE = "Europe/Berlin"
DAY = date(2026, 11, 20)
AS_OF = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
COLLECTED_AT = AS_OF - timedelta(minutes=5)  # every stream's last successful run began then
PLATFORMS = ("x", "mastodon", "reddit", "bluesky")
TEMPLATE_SYNTAX = "{{ 7*7 }}{% raw %}{# x #}"  # shown as typed: post text is never a template
HOSTILE = (
    '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned=\'img\'">'
    f"{TEMPLATE_SYNTAX}\x1b[31m\u202eevil\r\nBcc: attacker@example.com"
)


@dataclass(frozen=True)
class Item:
    """One row of the fixture: what it is and when, and what it answers."""

    id: str  # native id; the store id is "<platform>:<id>"
    platform: str
    kind: Kind
    at: str  # UTC, "2026-11-20T08:00"
    label: str | None = None
    reply_to: str | None = None  # native id on the same platform
    conversation: str | None = None  # native id of the conversation's root
    author: str = "customer"
    text: str = ""
    url: str = ""


ITEMS: tuple[Item, ...] = (
    # --- x, the day: five broadcasts (one not classified yet) --------------------------------
    Item("p1", "x", "post", "2026-11-20T06:00", "engaging"),
    Item("p2", "x", "post", "2026-11-20T07:00", "engaging"),
    Item("p3", "x", "post", "2026-11-20T10:00", "inspiring"),
    Item("p4", "x", "post", "2026-11-20T15:00", "sales-pitch"),
    Item("p5", "x", "post", "2026-11-20T16:00"),
    # local midnight is outside both ends: 23:59 the day before, 00:00 the day after
    Item("p6", "x", "post", "2026-11-19T22:59", "engaging"),
    Item("p7", "x", "post", "2026-11-20T23:00", "sales-pitch"),
    # --- x, the day: mentions and the brand's replies ---------------------------------------
    Item("m1", "x", "mention", "2026-11-20T08:00", author="ann", conversation="m1"),
    Item("r1", "x", "reply", "2026-11-20T08:10", "engaging", reply_to="m1", conversation="m1"),
    Item("m2", "x", "mention", "2026-11-20T09:00", author="bob", conversation="m2"),
    Item("r2", "x", "reply", "2026-11-20T09:30", "engaging", reply_to="m2", conversation="m2"),
    # cid follows up in the same conversation; the brand answers the follow-up at 12:00
    Item("m3", "x", "mention", "2026-11-20T10:00", author="cid", conversation="m3"),
    Item("f3", "x", "mention", "2026-11-20T10:20", author="cid", reply_to="m3", conversation="m3"),
    Item("r3", "x", "reply", "2026-11-20T12:00", "engaging", reply_to="f3", conversation="m3"),
    Item(
        "m4",
        "x",
        "mention",
        "2026-11-20T20:00",
        author="dan",
        conversation="m4",
        text=HOSTILE,
        url="javascript:window.__pwned='link'",
    ),
    # answered after midnight but before AS_OF: answered; m6's answer comes after AS_OF: not
    Item("m5", "x", "mention", "2026-11-20T22:30", author="eve", conversation="m5"),
    Item("r5", "x", "reply", "2026-11-21T01:00", "engaging", reply_to="m5", conversation="m5"),
    Item(
        "m6",
        "x",
        "mention",
        "2026-11-20T21:00",
        author="fay",
        conversation="m6",
        text="Still waiting for my refund",
        url="https://x.com/fay/status/6",
    ),
    Item("r6", "x", "reply", "2026-11-21T10:00", "engaging", reply_to="m6", conversation="m6"),
    # a keyword hit is not a mention
    Item("k1", "x", "keyword", "2026-11-20T11:00", author="gus"),
    # --- x, the day before ------------------------------------------------------------------
    Item("q1", "x", "post", "2026-11-19T12:00", "engaging"),
    Item("n1", "x", "mention", "2026-11-19T10:00", author="hal", conversation="n1"),
    Item("s1", "x", "reply", "2026-11-19T10:20", "engaging", reply_to="n1", conversation="n1"),
    # answered at 09:00 on the 20th: after that day's digest time (07:00Z), so not answered then
    Item("n2", "x", "mention", "2026-11-19T20:00", author="ida", conversation="n2"),
    Item("s2", "x", "reply", "2026-11-20T09:00", "engaging", reply_to="n2", conversation="n2"),
    # --- mastodon (no conversation ids, like the real API) -----------------------------------
    Item("mp1", "mastodon", "post", "2026-11-20T09:00", "engaging"),
    Item("mp2", "mastodon", "post", "2026-11-20T14:00", "sales-pitch"),
    Item("mm1", "mastodon", "mention", "2026-11-20T12:00", author="jo"),
    Item("mr1", "mastodon", "reply", "2026-11-20T12:04", "engaging", reply_to="mm1"),
    Item("mm2", "mastodon", "mention", "2026-11-20T13:00", author="kim"),
    Item("mr2", "mastodon", "reply", "2026-11-20T13:20", "engaging", reply_to="mm2"),
    # --- reddit: one post; bluesky: silent since the 10th -----------------------------------
    Item("rp1", "reddit", "post", "2026-11-20T18:00", "inspiring"),
    Item("bp1", "bluesky", "post", "2026-11-10T12:00", "engaging"),
)


def _post(item: Item) -> Post:
    brand_item = item.kind in ("post", "reply")
    return Post(
        platform=item.platform,
        native_id=item.id,
        brand=BRAND,
        author_id=BRAND if brand_item else item.author,
        author_handle=BRAND if brand_item else item.author,
        is_brand=brand_item,
        kind=item.kind,
        text=item.text or f"text of {item.id}",
        url=item.url or f"https://{item.platform}.example/{item.id}",
        created_at=f"{item.at}:00Z",
        in_reply_to_id=f"{item.platform}:{item.reply_to}" if item.reply_to else None,
        conversation_id=f"{item.platform}:{item.conversation}" if item.conversation else None,
    )


def fill(
    db: Database, items: Sequence[Item] = ITEMS, collected_at: datetime | None = COLLECTED_AT
) -> None:
    """Store ``items`` and their labels, and a successful run of each of the brand's posts and
    mentions streams at ``collected_at`` (None: no run)."""
    if collected_at is not None:
        collected(db, BRAND, PLATFORMS, collected_at)
    store.upsert_posts(db, [_post(i) for i in items])
    store.upsert_labels(
        db,
        [
            store.LabelRow(f"{i.platform}:{i.id}", i.label, 0.9, {i.label: 0.9}, "test")
            for i in items
            if i.label
        ],
    )


def collected(db: Database, brand: str, platforms: Sequence[str], at: datetime) -> None:
    """Record a successful run of the brand's posts and mentions on each platform at ``at``."""
    for platform in platforms:
        for stream in ("posts", "mentions"):
            store.record_run(db, RunResult(StreamKey(brand, platform, stream), at))


def config_text(extra: str = "") -> str:
    """The brand's config; ``extra`` is appended (e.g. a [digest] section)."""
    accounts = ", ".join(f'{p} = "{BRAND}"' for p in PLATFORMS)
    return (
        f'[store]\npath = "touchpoint.db"\n\n{extra}\n'
        f'[[brands]]\nname = "{BRAND}"\ntimezone = "{TIMEZONE}"\naccounts = {{ {accounts} }}\n'
    )


def settings(path: Path, extra: str = "") -> Settings:
    """Write the config to ``path`` and load it."""
    import tomllib

    path.write_text(config_text(extra), encoding="utf-8")
    return parse_settings(tomllib.loads(path.read_text(encoding="utf-8")), path)
