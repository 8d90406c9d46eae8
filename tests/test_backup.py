"""`touchpoint backup` (monitor.store.backup): a checked copy of the live store, and nothing left
half-made (reliability plan #43, #44)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from monitor import store
from monitor.cli import cli
from tests.test_store import post

BATCH = 200  # posts per write transaction of the writer


def fill(db: Database, count: int, start: int = 0) -> None:
    for first in range(start, start + count, BATCH):
        batch = [post(str(i), text=f"hello {i} " + "x" * 200) for i in range(first, first + BATCH)]
        store.upsert_posts(db, batch)


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count(path: Path, table: str = "posts") -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def run_backup(
    *args: str, limit_bytes: int | None = None, patch: str = ""
) -> subprocess.Popen[str]:
    """``touchpoint backup`` in its own process; ``patch`` is Python run before the CLI."""
    script = textwrap.dedent(patch) + "\nfrom monitor.cli import main\nmain()\n"

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )


def test_backup_is_a_checked_private_copy_that_opens_as_a_store(
    db: Database, tmp_path: Path
) -> None:
    fill(db, 400)
    dest = tmp_path / "copies" / "one.db"

    done = store.backup(db, dest)

    assert done.path == dest and done.posts == 400 and done.size == dest.stat().st_size
    assert dest.stat().st_mode & 0o777 == 0o600  # it keeps the Bluesky session, as the store does
    copy = store.open_db(dest)
    try:
        assert store.table_counts(copy, ("posts", "post_brands")) == {
            "posts": 400,
            "post_brands": 400,
        }
        assert not store.migrations.pending(copy)
    finally:
        copy.conn.close()
    assert not list(dest.parent.glob(f"*{store.PARTIAL_SUFFIX}"))


def test_backup_during_heavy_writes_is_one_point_in_time_and_blocks_no_writer(
    tmp_path: Path,
) -> None:
    """#43: 10,000 posts upserted by another connection while backups run: each copy holds a
    whole number of the writer's transactions (posts and their roles alike), and the writer
    never waits out the busy timeout."""
    path = tmp_path / "store.db"
    reader = store.open_db(path)
    first_commit = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        writer = store.open_db(path)
        try:
            for first in range(0, 10_000, BATCH):
                fill(writer, BATCH, first)
                first_commit.set()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            first_commit.set()
            writer.conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    assert first_commit.wait(30)
    copies = []
    while thread.is_alive() and len(copies) < 200:
        done = store.backup(reader, tmp_path / f"copy-{len(copies)}.db")
        copies.append(done)
    thread.join(60)
    reader.conn.close()

    assert not errors, errors
    assert count(path) == 10_000
    assert copies
    for done in copies:
        assert done.posts % BATCH == 0, done.posts  # never half a transaction
        assert count(done.path, "post_brands") == done.posts  # posts and roles of one instant
    assert any(0 < done.posts < 10_000 for done in copies)  # taken while the writes went on


def test_backup_killed_half_way_leaves_no_file_by_that_name_and_the_next_clears_it(
    db: Database, tmp_path: Path
) -> None:
    """#44: SIGKILL after the copy is written but before it takes its name."""
    fill(db, 400)
    folder = tmp_path / "backups"
    good = store.backup(db, folder / "good.db").path
    before = digest_of(good)
    db_path = tmp_path / "store.db"

    killed = run_backup(
        "--db",
        str(db_path),
        "backup",
        f"{folder}/",
        patch="""
            import os, signal
            os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    killed.communicate(timeout=60)

    assert killed.returncode == -signal.SIGKILL
    partials = sorted(p.name for p in folder.iterdir() if p.name.endswith(store.PARTIAL_SUFFIX))
    assert len(partials) == 1  # the kill landed with the copy written, before the rename
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["good.db"]
    assert digest_of(good) == before

    result = CliRunner().invoke(cli, ["--db", str(db_path), "backup", f"{folder}/"])

    assert result.exit_code == 0, result.output
    assert f"removed {folder / partials[0]} (left by a backup that did not finish)" in result.output
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and "good.db" in names
    assert not any(n.endswith(store.PARTIAL_SUFFIX) for n in names)
    assert digest_of(good) == before


def test_a_partial_still_being_written_is_left_alone(tmp_path: Path) -> None:
    busy = tmp_path / f".other.db{store.PARTIAL_SUFFIX}"
    dead = tmp_path / f".dead.db{store.PARTIAL_SUFFIX}"
    busy_journal = Path(f"{busy}-journal")
    dead_journal = Path(f"{dead}-journal")
    orphan = tmp_path / f".gone.db{store.PARTIAL_SUFFIX}-journal"  # its partial was removed
    for path in (busy, dead, busy_journal, dead_journal, orphan):
        path.write_bytes(b"half")
    mine = tmp_path / "mine.partial"  # not a touchpoint partial: never touched
    mine.write_bytes(b"mine")
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running backup holds it

        assert sorted(store.remove_partials(tmp_path)) == sorted([dead, dead_journal, orphan])
        assert busy.exists() and busy_journal.exists() and mine.exists()
    finally:
        os.close(fd)


def test_a_copy_that_is_not_sound_fails_the_check(db: Database, tmp_path: Path) -> None:
    fill(db, 2_000)
    copy = store.backup(db, tmp_path / "copy.db").path
    assert store.check_copy(copy) == 2_000
    conn = sqlite3.connect(copy)  # an index that no longer matches its table
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        """UPDATE sqlite_master SET sql = replace(sql, '"collected_at"', '"created_at"') """
        "WHERE name = 'idx_posts_collected_at'"
    )
    conn.commit()
    conn.close()

    with pytest.raises(sqlite3.DatabaseError, match="integrity_check: .*index"):
        store.check_copy(copy)


def test_backup_that_cannot_be_written_whole_says_so_and_leaves_nothing(
    db: Database, tmp_path: Path
) -> None:
    """A write error half-way (here the file size limit: SQLite's I/O error; a full disk is
    its "disk is full") removes the partial copy."""
    fill(db, 4_000)  # some MB: more than the file size limit below
    db.conn.close()
    folder = tmp_path / "backups"

    full = run_backup(
        "--db", str(tmp_path / "store.db"), "backup", f"{folder}/", limit_bytes=256 * 1024
    )
    out, err = full.communicate(timeout=60)

    assert full.returncode == 1, (out, err)
    assert f"{folder}/store-" in err  # the file it was writing
    assert "the backup failed (disk I/O error); nothing was kept" in err
    assert "Traceback" not in err
    assert list(folder.iterdir()) == []
    assert count(tmp_path / "store.db") == 4_000


def test_backup_refuses_to_replace_a_file_unless_told(db: Database, tmp_path: Path) -> None:
    fill(db, 200)
    dest = tmp_path / "touchpoint-copy.db"
    dest.write_bytes(b"an older copy")
    runner = CliRunner()

    refused = runner.invoke(cli, ["--db", str(tmp_path / "store.db"), "backup", str(dest)])

    assert refused.exit_code == 1
    assert "a file is already there; nothing was written" in refused.output
    assert "--overwrite" in refused.output
    assert dest.read_bytes() == b"an older copy"

    replaced = runner.invoke(
        cli, ["--db", str(tmp_path / "store.db"), "backup", str(dest), "--overwrite"]
    )

    assert replaced.exit_code == 0, replaced.output
    assert count(dest) == 200


def test_backup_refuses_the_store_itself_even_with_overwrite(db: Database, tmp_path: Path) -> None:
    """A copy renamed over the live store would pull it from under a running daemon."""
    fill(db, 200)
    live = tmp_path / "store.db"
    (tmp_path / "link.db").symlink_to(live)
    before = digest_of(live)
    runner = CliRunner()
    for target in ("store.db", "link.db", "store.db-wal", "x/../store.db"):
        dest = f"{tmp_path}/{target}"
        refused = runner.invoke(cli, ["--db", str(live), "backup", dest, "--overwrite"])
        assert refused.exit_code == 1, (target, refused.output)
        assert "that is the database itself" in refused.output
    assert digest_of(live) == before and count(live) == 200
    assert not list(tmp_path.glob(".*partial*"))


def test_backup_keep_removes_only_the_oldest_time_named_copies(
    db: Database, tmp_path: Path
) -> None:
    fill(db, 200)
    folder = tmp_path / "backups"
    folder.mkdir()
    db_path = tmp_path / "store.db"
    old = [folder / f"store-2026110{d}T030000Z.db" for d in range(1, 5)]
    for path in old:
        path.write_bytes(b"old")
    other = [folder / "store-manual.db", folder / "notes.txt", folder / "other-20261101T030000Z.db"]
    for path in other:
        path.write_bytes(b"keep me")

    result = CliRunner().invoke(cli, ["--db", str(db_path), "backup", str(folder), "--keep", "2"])

    assert result.exit_code == 0, result.output
    stamped = store.stamped_backups(folder, db_path)
    assert len(stamped) == 2 and stamped[0] == old[-1]  # the newest old one, and the new one
    assert count(stamped[1]) == 200
    assert all(path.exists() for path in other)
    for path in old[:3]:
        assert not path.exists()
        assert f"removed {path} (older than the 2 newest)" in result.output


def test_backup_default_is_a_time_named_copy_in_backups_beside_the_store(
    db: Database, tmp_path: Path
) -> None:
    fill(db, 200)

    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "store.db"), "backup"])

    assert result.exit_code == 0, result.output
    (copy,) = store.stamped_backups(tmp_path / "backups", tmp_path / "store.db")
    assert f"backup: {copy} (" in result.output and "200 posts, checked)" in result.output


def test_backup_keep_with_a_file_and_a_missing_store_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()

    keep = runner.invoke(cli, ["--db", "store.db", "backup", "copy.db", "--keep", "3"])
    missing = runner.invoke(cli, ["--db", "nothing.db", "backup"])

    assert keep.exit_code == 2 and "DEST names a file" in keep.output
    assert missing.exit_code == 1 and "no database at nothing.db yet" in missing.output
    assert not (tmp_path / "nothing.db").exists() and not (tmp_path / "backups").exists()


def test_backup_to_a_path_with_a_quote_in_it(db: Database, tmp_path: Path) -> None:
    """The target goes to SQLite as a bound parameter, never spliced into the statement."""
    fill(db, 200)
    dest = tmp_path / "it's a copy'); DROP TABLE posts; --.db"

    store.backup(db, dest)

    assert count(dest) == 200
    assert count(tmp_path / "store.db") == 200
