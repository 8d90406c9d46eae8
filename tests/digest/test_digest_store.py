"""The digest's side of the store: migration m004 and the record of sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
