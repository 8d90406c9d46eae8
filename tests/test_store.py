from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import clock, store
from monitor.cli import cli
from monitor.models import Cursor, Post, RunResult, StreamKey, iso
from monitor.store import fs
from monitor.store.service import KEEP_STARTS

KEY = StreamKey("acme", "x", "mentions")


def post(native_id: str, **changes: object) -> Post:
    base = Post(
        platform="x",
        native_id=native_id,
        brand="acme",
        author_id="9",
        author_handle="bob",
        is_brand=False,
        kind="mention",
        text=f"hello {native_id}",
        url="https://x.com/b",
        created_at="2026-11-20T10:00:00Z",
        metrics={"likes": 1},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_store_open_db_creates_every_table_in_wal(db: Database) -> None:
    tables = set(db.table_names())
    assert {
        "posts",
        "labels",
        "cursors",
        "runs",
        "alerts",
        "deliveries",
        "accounts",
        "service_state",
        "post_brands",
        "_sqlite_migrations",
    } <= tables
    assert set(db["posts"].columns_dict) == {
        "id",
        "platform",
        "native_id",
        "brand",
        "author_id",
        "author_handle",
        "is_brand",
        "kind",
        "text",
        "url",
        "lang",
        "created_at",
        "in_reply_to_id",
        "conversation_id",
        "metrics",
        "raw",
        "collected_at",
        "updated_at",
    }
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_store_open_db_twice_applies_migrations_once(tmp_path: Path) -> None:
    store.open_db(tmp_path / "a.db").conn.close()
    db = store.open_db(tmp_path / "a.db")
    applied = [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations")]
    assert applied == [m.name for m in store.migrations._migrations]
    assert store.migrations.pending(db) == []


def test_store_a_new_database_is_its_owners_alone_and_an_old_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """The store keeps the Bluesky session tokens: made 0600 (and SQLite's -wal and -shm
    follow it) whatever the umask; a file that exists keeps the mode its owner gave it."""
    old_umask = os.umask(0o022)
    try:
        db = store.open_db(tmp_path / "new.db")
        store.upsert_posts(db, [post("1")])
        for name in ("new.db", "new.db-wal", "new.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        db.conn.close()
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o640)
        shared.chmod(0o640)
        store.open_db(shared).conn.close()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)


def test_store_open_db_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(store.StoreError, match="Fix:"):
        store.open_db(blocker / "sub" / "t.db")


def test_store_page_counts_new_and_updated_and_never_duplicates(db: Database) -> None:
    assert store.store_page(db, KEY, [post("1"), post("2"), post("1")], Cursor("2")) == (2, 0)
    assert store.store_page(db, KEY, [post("1"), post("2")], Cursor("2")) == (0, 0)
    assert store.store_page(db, KEY, [post("2", metrics={"likes": 5}), post("3")], Cursor("3")) == (
        1,
        1,
    )
    assert db.execute("SELECT count(*), count(DISTINCT id) FROM posts").fetchone() == (3, 3)
    assert store.get_cursor(db, KEY) == Cursor("3")


def test_store_lone_surrogates_become_replacement_characters_and_the_page_is_stored(
    db: Database,
) -> None:
    cut = "cut emoji \ud83d"  # what JSON's "\\ud83d" decodes to: half a surrogate pair
    odd = post("1", text=cut, author_handle="b\udc00b", raw={"text": cut, "k\ud800": [cut]})
    assert store.store_page(db, KEY, [odd], Cursor("1")) == (1, 0)
    text, handle, raw = db.execute("SELECT text, author_handle, raw FROM posts").fetchone()
    assert (text, handle) == ("cut emoji \ufffd", "b\ufffdb")
    assert json.loads(raw) == {"text": "cut emoji \ufffd", "k\ufffd": ["cut emoji \ufffd"]}
    assert store.get_cursor(db, KEY) == Cursor("1")


def test_store_read_only_database_is_a_clear_error_and_check_writable_says_so(
    db: Database,
) -> None:
    store.check_writable(db)  # writable: passes, and changes nothing
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.execute("PRAGMA query_only = 1")  # SQLite refuses writes as for a read-only file
    with pytest.raises(store.StoreReadOnly) as caught:
        store.store_page(db, KEY, [post("1")], Cursor("1"))
    assert "store.db: the database cannot be written" in str(caught.value)
    assert "Fix:" in str(caught.value)
    with pytest.raises(store.StoreReadOnly):
        store.check_writable(db)
    db.execute("PRAGMA query_only = 0")
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
    assert store.get_cursor(db, KEY) == Cursor()


def fake_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """Point the mount lookup at a file of ``lines`` in /proc/mounts' format."""
    mounts = tmp_path / "mounts"
    mounts.write_text("".join(f"{line}\n" for line in lines))
    monkeypatch.setattr(fs, "MOUNTS", mounts)


def test_store_refuses_a_database_on_a_network_filesystem_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = tmp_path / "nas share"
    share.mkdir()
    escaped = str(share).replace(" ", "\\040")
    fake_mounts(
        tmp_path, monkeypatch, "/dev/vda / ext4 rw 0 0", f"nas:/export {escaped} nfs4 rw 0 0"
    )
    with pytest.raises(store.StoreError) as caught:
        store.open_db(share / "sub" / "touchpoint.db")
    message = str(caught.value)
    assert f"(nfs4 nas:/export mounted at {share})" in message, message
    assert (
        "WAL" in message and "Fix: put [store] path (or TOUCHPOINT_DB) on a local disk" in message
    )
    assert not (share / "sub").exists()  # not even the folder it would be in
    link = tmp_path / "looks-local"
    link.symlink_to(share)  # a symlink into the share is the share
    with pytest.raises(store.StoreError, match="nfs4"):
        store.open_db(link / "touchpoint.db")
    store.open_db(tmp_path / "touchpoint.db").conn.close()  # beside it, on the local disk: fine


def test_store_mount_of_a_path_is_the_longest_point_above_it_the_last_when_stacked() -> None:
    mounts = fs.parse_mounts(
        "/dev/vda / ext4 rw 0 0\n"
        "nas:/a /mnt/nfs nfs rw 0 0\n"
        "tmpfs /mnt/nfs/tmp tmpfs rw 0 0\n"
        "//srv/share /mnt/smb cifs rw 0 0\n"
        "overlay /mnt/smb overlay rw 0 0\n"
        "host:/b /srv/odd\\040name\\011x fuse.sshfs rw 0 0\n"
    )
    types = {
        path: (m.fstype if (m := fs.mount_of(path, mounts)) else None)
        for path in [
            "/mnt/nfs/db",
            "/mnt/nfsx/db",
            "/mnt/nfs/tmp/db",
            "/mnt/smb/db",
            "/srv/odd name\tx/db",
            "/",
        ]
    }
    assert types == {
        "/mnt/nfs/db": "nfs",
        "/mnt/nfsx/db": "ext4",  # /mnt/nfs is not above /mnt/nfsx
        "/mnt/nfs/tmp/db": "tmpfs",
        "/mnt/smb/db": "overlay",  # mounted over the share later
        "/srv/odd name\tx/db": "fuse.sshfs",
        "/": "ext4",
    }


def test_run_refuses_a_database_on_a_network_filesystem_before_its_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mounts(tmp_path, monkeypatch, "/dev/vda / ext4 rw 0 0", f"nas:/e {tmp_path} nfs rw 0 0")
    config = tmp_path / "touchpoint.toml"
    config.write_text('[[brands]]\nname = "a"\naccounts = {x = "a"}\n')
    environment = {"X_BEARER_TOKEN": "test-token"}
    result = CliRunner().invoke(cli, ["--config", str(config), "run"], env=environment)
    assert result.exit_code == 1 and "network filesystem (nfs nas:/e" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mounts", "touchpoint.toml"]


def test_store_write_lock_held_past_the_busy_timeout_is_a_clear_error(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program's long write
    db.execute("PRAGMA busy_timeout = 200")
    started = time.monotonic()
    with pytest.raises(store.StoreBusy) as caught:
        store.store_page(db, KEY, [post("1")], Cursor("1"))
    assert 0.15 < time.monotonic() - started < 5
    assert "held the database's write lock for over 0.2 s" in str(caught.value)
    assert "Fix:" in str(caught.value)
    other.execute("ROLLBACK")
    assert store.store_page(db, KEY, [post("1")], Cursor("1")) == (1, 0)  # the next one goes in


def test_store_keyword_hit_becomes_mention_but_not_back(db: Database) -> None:
    store.upsert_posts(db, [post("1", kind="keyword")])
    store.upsert_posts(db, [post("1", kind="mention")])
    store.upsert_posts(db, [post("1", kind="keyword")])
    assert db.execute("SELECT kind FROM posts").fetchone()[0] == "mention"


def roles(db: Database) -> set[tuple[str, str, str, int]]:
    return set(db.execute("SELECT post_id, brand, kind, is_brand FROM post_brands").fetchall())


def test_store_a_post_of_two_brands_is_each_ones_in_its_own_role(db: Database) -> None:
    # globex's post mentions acme: acme's mentions stream stores it first, then globex's posts
    as_mention = post("7", text="Proud to partner with @acme", author_handle="globex")
    as_post = dataclasses.replace(as_mention, brand="globex", is_brand=True, kind="post")
    first = clock.now()
    assert store.upsert_posts(db, [as_mention], now=first) == (1, 0)
    later = first + timedelta(minutes=5)
    assert store.upsert_posts(db, [as_post], now=later) == (1, 0)  # new to globex
    # the daemon's look for posts to label since its last pass finds it
    assert store.has_posts_to_label(db, collected_since=later)
    assert store.upsert_posts(db, [as_post, as_mention]) == (0, 0)
    assert roles(db) == {("x:7", "acme", "mention", 0), ("x:7", "globex", "post", 1)}
    assert db.execute("SELECT count(*), max(is_brand) FROM posts").fetchone() == (1, 1)
    # written by a brand: it gets a label, though first stored as another brand's mention
    (batch,) = store.iter_posts_to_label(db, model_version="m")
    assert batch == [("x:7", "Proud to partner with @acme")]
    exported = {(r["brand"], r["kind"], r["is_brand"]) for r in store.iter_posts(db)}
    assert exported == {("acme", "mention", 0), ("globex", "post", 1)}
    assert [r["kind"] for r in store.iter_posts(db, brand="globex")] == ["post"]
    assert store.count_posts(db) == {("acme", "x", "mention"): 1, ("globex", "x", "post"): 1}


def test_store_a_keyword_hit_of_one_brand_is_not_made_a_mention_by_another(db: Database) -> None:
    hit = post("1", kind="keyword")
    of_globex = dataclasses.replace(hit, brand="globex", kind="mention")
    assert store.upsert_posts(db, [hit]) == (1, 0)
    assert store.upsert_posts(db, [of_globex]) == (1, 0)
    assert roles(db) == {("x:1", "acme", "keyword", 0), ("x:1", "globex", "mention", 0)}
    # globex's keyword hit of acme's mention, seen later as globex's mention: updated once
    second = post("2", brand="globex", kind="keyword")
    store.upsert_posts(db, [post("2"), second])
    changed = dataclasses.replace(second, kind="mention", metrics={"likes": 9})
    assert store.upsert_posts(db, [changed]) == (0, 1)
    assert ("x:2", "globex", "mention", 0) in roles(db)
    metrics = db.execute("SELECT metrics FROM posts WHERE id = 'x:2'").fetchone()[0]
    assert json.loads(metrics) == {"likes": 9}


def test_store_migration_gives_the_posts_of_an_older_store_their_roles(tmp_path: Path) -> None:
    db = store.open_db(tmp_path / "old.db")
    store.upsert_posts(db, [post("1"), post("2", is_brand=True, kind="post")])
    with db.conn:  # as a store from before post_brands, with an alert of that time
        db.execute("DROP TABLE post_brands")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm008_create_post_brands'")
        db.execute(
            "INSERT INTO alerts (fingerprint, kind, brand, platform, subject, payload, "
            "created_at, state, updated_at, severity, title) VALUES ('unanswered_mention:x:1', "
            "'unanswered_mention', 'acme', 'x', '[]', '{}', '', 'open', '', 'warning', 't')"
        )
    db.conn.close()
    db = store.open_db(tmp_path / "old.db")
    assert roles(db) == {("x:1", "acme", "mention", 0), ("x:2", "acme", "post", 1)}
    # the open alert keeps its identity under the per-brand fingerprint (no second message)
    (alert,) = store.get_alerts(db)
    assert (alert.fingerprint, alert.state) == ("unanswered_mention:acme:x:1", "open")
    db.conn.close()


def test_store_stream_heads_follow_each_run_and_are_rebuilt_for_an_older_store(
    tmp_path: Path,
) -> None:
    """Status, deferrals and the daemon's start read each stream's head, not all its runs; a
    store from before the heads gets them from its runs, as the runs had set them."""
    db = store.open_db(tmp_path / "old.db")
    now = clock.now().replace(microsecond=0)  # as stored
    posts = StreamKey("acme", "x", "posts")
    for minutes, key, outcome, error in [
        (1, KEY, "ok", None),
        (2, KEY, "failed", "HTTP 500"),
        (3, KEY, "deferred", "HTTP 429"),
        (4, KEY, "auth_failed", "HTTP 401"),
        (5, KEY, "skipped", "deferred until later (rate limit)"),
        (1, posts, "failed", "HTTP 502"),
        (2, posts, "ok", None),
        (3, posts, "interrupted", None),
    ]:
        started = now + timedelta(minutes=minutes)
        run = RunResult(key, started, started, outcome, error=error)  # type: ignore[arg-type]
        store.record_run(db, run)
    status = {s.key: s for s in store.get_stream_status(db)}
    mentions = status[KEY]
    assert (mentions.outcome, mentions.consecutive_failures) == ("auth_failed", 2)
    assert mentions.last_error == "deferred until later (rate limit)"  # a skip's error shows
    assert status[posts].outcome == "interrupted" and status[posts].consecutive_failures == 0
    assert status[posts].last_error == "HTTP 502"
    assert store.last_run_starts(db)[("acme", "x", "mentions")] == now + timedelta(minutes=5)
    before = (store.get_stream_status(db), store.last_run_starts(db))
    with db.conn:  # as a store from before stream_heads
        db.execute("DROP TABLE stream_heads")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_create_stream_heads'")
    db.conn.close()
    db = store.open_db(tmp_path / "old.db")
    assert (store.get_stream_status(db), store.last_run_starts(db)) == before
    db.conn.close()


def test_store_cursor_keeps_its_account_and_an_older_store_gets_the_column(
    tmp_path: Path,
) -> None:
    """A cursor remembers the account its stream was walked for; one from before the column
    reads as no account (the pipeline resumes it, as before)."""
    db = store.open_db(tmp_path / "old.db")
    store.store_page(db, KEY, [post("1")], Cursor("1"), account="150")
    assert store.get_cursor(db, KEY).account == "150"
    with db.conn:  # as a store from before cursors.account
        db.execute("ALTER TABLE cursors DROP COLUMN account")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm010_add_cursor_account'")
    db.conn.close()
    db = store.open_db(tmp_path / "old.db")
    cursor = store.get_cursor(db, KEY)
    assert (cursor.position, cursor.account) == ("1", None)
    db.conn.close()


def test_store_prune_runs_deletes_old_runs_but_each_streams_latest(db: Database) -> None:
    """A stream failing for long keeps its last success however old, and the heads, so status,
    are the same after."""
    now = clock.now().replace(microsecond=0)
    posts = StreamKey("acme", "x", "posts")
    history: list[tuple[int, StreamKey, str]] = [  # days ago, in the order they ran
        (200, KEY, "ok"),
        (150, KEY, "ok"),
        (120, KEY, "ok"),
        (120, posts, "ok"),  # posts' last success: it fails from day 100 on
        (100, KEY, "ok"),
        (100, posts, "failed"),
        (95, KEY, "ok"),
        (10, KEY, "ok"),
        (5, KEY, "ok"),
        (2, posts, "failed"),
        (1, KEY, "ok"),
    ]
    for days, key, outcome in history:
        started = now - timedelta(days=days)
        error = None if outcome == "ok" else "HTTP 500"
        run = RunResult(key, started, started, outcome, error=error)  # type: ignore[arg-type]
        store.record_run(db, run)
    status = store.get_stream_status(db)
    # mentions from 200 to 95 days ago (5 runs) and posts' failure of day 100; batches of two
    assert store.prune_runs(db, before=now - timedelta(days=90), batch=2) == 6
    left = db.execute("SELECT stream, started_at FROM runs ORDER BY id").fetchall()
    assert left == [
        ("posts", iso(now - timedelta(days=120))),
        *[("mentions", iso(now - timedelta(days=d))) for d in (10, 5)],
        ("posts", iso(now - timedelta(days=2))),
        ("mentions", iso(now - timedelta(days=1))),
    ]
    assert store.get_stream_status(db) == status
    assert store.prune_runs(db, before=now - timedelta(days=90)) == 0


def test_store_page_rolls_back_posts_when_cursor_write_fails(db: Database) -> None:
    bad_cursor = Cursor("9", pending={"not json": object()})
    with pytest.raises(TypeError):
        store.store_page(db, KEY, [post("1")], bad_cursor)
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
    assert store.get_cursor(db, KEY) == Cursor()


def test_store_full_disk_is_a_clear_error_and_the_write_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    db = store.open_db(path)
    store.store_page(db, KEY, [post("1")], Cursor(position="1"))
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # a disk with no page left
    many = [post(str(n), text="x" * 2000) for n in range(2, 60)]
    with pytest.raises(store.StoreFull) as caught:
        store.store_page(db, KEY, many, Cursor(position="59"))
    assert str(caught.value).startswith(f"{path}: the disk is full")
    assert "Fix: free space" in str(caught.value)
    assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 1
    assert store.get_cursor(db, KEY).position == "1"  # posts and cursor rolled back together
    db.execute("PRAGMA max_page_count = 1073741823")  # space again: the same write goes through
    assert store.store_page(db, KEY, many, Cursor(position="59")) == (58, 0)
    db.conn.close()


def test_store_write_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = store.open_db(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO accounts (platform, handle, native_id) VALUES ('x', 'o', '1')")
    released = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    released.start()
    started = time.monotonic()
    # a read first, as the CLI does: with a deferred BEGIN this would be SQLITE_BUSY_SNAPSHOT
    db.execute("SELECT count(*) FROM posts").fetchone()
    assert store.store_page(db, KEY, [post("1")], Cursor("1")) == (1, 0)
    assert time.monotonic() - started >= 0.4
    released.join()
    other.close()


def test_store_status_counts_failures_since_last_success(db: Database) -> None:
    now = clock.now()
    for outcome in ("ok", "failed", "failed"):
        store.record_run(
            db,
            RunResult(
                key=KEY,
                started_at=now,
                finished_at=now,
                outcome=outcome,  # type: ignore[arg-type]
                error="boom" if outcome == "failed" else None,
            ),
        )
    store.store_page(db, KEY, [], Cursor("5"))
    (row,) = store.get_stream_status(db)
    assert row.key == KEY
    assert row.outcome == "failed"
    assert row.consecutive_failures == 2
    assert row.last_error == "boom"
    assert row.cursor_updated_at is not None


def test_store_deferral_is_the_last_runs_retry_time(db: Database) -> None:
    now = clock.now()
    store.record_run(db, RunResult(key=KEY, started_at=now, outcome="deferred", retry_at=now))
    assert store.get_deferral(db, KEY) == now.replace(microsecond=0)
    store.record_run(db, RunResult(key=KEY, started_at=now, outcome="ok"))
    assert store.get_deferral(db, KEY) is None


def test_store_posts_to_label_are_unlabelled_brand_posts_in_batches(db: Database) -> None:
    brand = [post(str(i), is_brand=True, kind="post") for i in range(5)]
    store.upsert_posts(db, [*brand, post("99")])  # "99" is someone else's mention
    batches = list(store.iter_posts_to_label(db, model_version="m1", batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    ids = [pid for batch in batches for pid, _ in batch]
    assert ids == sorted(p.id for p in brand)
    store.upsert_labels(
        db, [store.LabelRow(pid, "inspiring", 0.9, {"inspiring": 0.9}, "m1") for pid in ids[:3]]
    )
    assert [pid for b in store.iter_posts_to_label(db, model_version="m1") for pid, _ in b] == ids[
        3:
    ]
    relabel = [
        pid for b in store.iter_posts_to_label(db, model_version="m2", relabel=True) for pid, _ in b
    ]
    assert relabel == ids
    store.upsert_labels(
        db, [store.LabelRow(ids[0], "sales-pitch", 0.6, {"sales-pitch": 0.6}, "m2")]
    )
    assert store.count_labels(db) == {"inspiring": 2, "sales-pitch": 1}


def test_store_restarts_after_crash_are_starts_that_followed_no_clean_stop(db: Database) -> None:
    t0 = clock.now()
    at = [t0 + timedelta(minutes=m) for m in range(6)]
    store.record_daemon_start(db, pid=1, now=at[0])
    store.record_daemon_stop(db, pid=1, now=at[0])  # SIGTERM: a clean stop
    store.record_daemon_start(db, pid=2, now=at[1])  # after a clean stop: not a crash
    store.record_daemon_start(db, pid=3, now=at[2])  # pid 2 never said it stopped: killed
    store.record_daemon_start(db, pid=4, now=at[3])
    assert store.restarts_after_crash(db) == [
        at[2].replace(microsecond=0),
        at[3].replace(microsecond=0),
    ]
    store.record_daemon_stop(db, pid=4, now=at[4])
    store.record_daemon_start(db, pid=5, now=at[5])
    assert len(store.restarts_after_crash(db)) == 2  # the running daemon is no crash
    for pid in range(6, 40):  # only the last starts are kept
        store.record_daemon_start(db, pid=pid, now=at[5])
    assert len(store.restarts_after_crash(db)) == KEEP_STARTS - 1


def test_store_classification_failures_count_in_a_row_and_a_success_clears_them(
    db: Database,
) -> None:
    assert store.get_classifier_status(db) is None
    t0 = clock.now().replace(microsecond=0)
    store.record_classification(db, error="model refused", now=t0)
    store.record_classification(db, error="model refused again", now=t0 + timedelta(minutes=1))
    status = store.get_classifier_status(db)
    assert status is not None
    assert (status.failures, status.error, status.failing_since) == (2, "model refused again", t0)
    store.record_classification(db, error=None, now=t0 + timedelta(minutes=2))
    status = store.get_classifier_status(db)
    assert status is not None
    assert (status.failures, status.error, status.failing_since) == (0, None, None)


def test_store_wal_held_by_a_reader_is_not_shrunk_until_the_reader_closes(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = store.open_db(path)
    store.checkpoint(db)
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM posts").fetchone()  # holds its snapshot open
    store.upsert_posts(db, [post(str(i), text="x" * 2000) for i in range(600)])
    grown = store.wal_bytes(db)
    assert grown > 1_000_000
    started = time.monotonic()
    assert not store.shrink_wal(db)  # refused at once, not after the busy timeout
    assert time.monotonic() - started < 2
    assert store.wal_bytes(db) == grown
    reader.rollback()
    reader.close()
    assert store.shrink_wal(db)
    assert store.wal_bytes(db) == 0
    assert store.count_posts(db) == {("acme", "x", "mention"): 600}
    db.conn.close()
