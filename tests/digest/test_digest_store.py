"""The digest's side of the store: migrations m004 and m005 and the record of sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlite_utils import Database

from monitor import store

NOW = datetime(2026, 11, 21, 7, tzinfo=UTC)


def test_digest_store_migration_adds_the_sends_table_and_the_index(db: Database) -> None:
    table = db["digest_sends"]
    assert table.pks == ["brand", "day", "recipient"]  # type: ignore[union-attr]
    assert {"state", "attempts", "message_id", "next_attempt_at", "sent_at"} <= set(
        table.columns_dict
    )
    indexes = {tuple(i.columns) for i in db["posts"].indexes}  # type: ignore[union-attr]
    assert ("brand", "kind", "created_at") in indexes


def test_digest_store_records_failures_then_the_send(db: Database) -> None:
    later = NOW + timedelta(minutes=5)
    assert (
        store.record_digest_failed(
            db, "acme", "2026-11-20", "a@x.example", error="451", next_attempt_at=later, now=NOW
        )
        == 1
    )
    assert (
        store.record_digest_failed(
            db, "acme", "2026-11-20", "a@x.example", error="451", next_attempt_at=later, now=NOW
        )
        == 2
    )
    record = store.get_digest_sends(db, "acme", "2026-11-20")["a@x.example"]
    assert (record.state, record.attempts, record.next_attempt_at) == (
        "failed",
        2,
        "2026-11-21T07:05:00Z",
    )
    store.record_digest_sent(db, "acme", "2026-11-20", "a@x.example", message_id="<m>", now=NOW)
    # a late failure report cannot undo a send
    store.record_digest_failed(
        db, "acme", "2026-11-20", "a@x.example", error="x", next_attempt_at=None, now=NOW
    )
    record = store.get_digest_sends(db, "acme", "2026-11-20")["a@x.example"]
    assert (record.state, record.sent_at) == ("sent", "2026-11-21T07:00:00Z")
    assert store.get_digest_sends(db, "acme", "2026-11-19") == {}


def test_digest_store_knows_a_recipient_in_any_case(db: Database) -> None:
    anna = "Anna@Brand.example"
    store.record_digest_sent(db, "acme", "2026-11-20", anna, message_id="m", now=NOW)
    assert set(store.get_digest_sends(db, "acme", "2026-11-20")) == {"anna@brand.example"}
    later = NOW + timedelta(hours=1)
    claimed = store.claim_digest_send(
        db, "acme", "2026-11-20", "ANNA@brand.example ", now=NOW, lease_until=later
    )
    assert not claimed  # already sent, however the address is written now


def test_digest_store_migration_m005_folds_recorded_recipients(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(path)
    store.migrations.apply(old, stop_before="m005_fold_digest_recipients")
    rows = [  # one address in two spellings on the 20th (sent, then failed), one on the 21st
        ("2026-11-20", "Anna@Brand.example", "sent", "2026-11-21T07:00:00Z"),
        ("2026-11-20", "anna@brand.example", "failed", "2026-11-21T08:00:00Z"),
        ("2026-11-21", "Ops@Brand.example", "failed", "2026-11-22T07:00:00Z"),
    ]
    old["digest_sends"].insert_all(  # type: ignore[union-attr]
        {"brand": "acme", "day": d, "recipient": r, "state": s, "attempts": 1, "updated_at": u}
        for d, r, s, u in rows
    )
    old.conn.close()
    db = store.open_db(path)
    day_one = store.get_digest_sends(db, "acme", "2026-11-20")
    assert {r: s.state for r, s in day_one.items()} == {"anna@brand.example": "sent"}
    day_two = store.get_digest_sends(db, "acme", "2026-11-21")
    assert {r: s.state for r, s in day_two.items()} == {"ops@brand.example": "failed"}
    db.conn.close()
