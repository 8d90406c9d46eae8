"""The store: one ``open_db()``, the schema migrations, and every SQL statement touchpoint runs.

Every write runs in a ``BEGIN IMMEDIATE`` transaction (a deferred one that reads and then writes
fails at once with SQLITE_BUSY_SNAPSHOT when another process committed in between); posts and the
cursor that covers them commit together.

All SQL lives in this package; callers use its names (``from monitor import store``,
``store.open_db(path)``), never a module of it, and the modules split it by subject:

- :mod:`.db`: ``open_db()``, the migrations (``m001_...``; recorded by name, so never renamed,
  reordered or removed), the pragmas, ``write_transaction()``, the WAL's ``checkpoint()``,
  ``wal_bytes()`` and ``shrink_wal()``, the SQLite version check, and the generic
  ``table_counts()``, ``stored_brands()`` and ``explain()``;
- :mod:`.posts`: the ingest upsert of posts and their roles for each brand (``upsert_posts``,
  ``store_page``, ``post_row``, ``role_row``, ``UPSERT_POST_SQL``, ``UPSERT_ROLE_SQL``),
  ``iter_posts`` and ``count_posts``;
- :mod:`.labels`: ``LabelRow`` and the classifier's reads and writes;
- :mod:`.alerts`: the mentions-with-answers query, alert states and the deliveries outbox;
- :mod:`.streams`: cursors, runs, stream status and deferrals, collector state and accounts;
- :mod:`.digest`: the daily digest's queries and ``digest_sends``;
- :mod:`.backup`: ``backup()``, a checked copy of the live store (``VACUUM INTO``), and
  ``prune()`` of older copies;
- :mod:`.service`: touchpoint's own state (the daemon's starts and clean stops, the last
  classification, alert channels held after a Retry-After).

Imports among them point one way: every module uses :mod:`.db`; :mod:`.posts` uses the cursor
write of :mod:`.streams` (a page and its cursor share a transaction); :mod:`.digest` reuses the
mentions query of :mod:`.alerts`; :mod:`.alerts` skips the channels :mod:`.service` holds.
"""

from __future__ import annotations

from monitor.store.alerts import (
    Delivery,
    Overdue,
    StoredAlert,
    ack_alert,
    claim_due_deliveries,
    count_deliveries,
    extend_claims,
    get_alerts,
    iter_labelled_posts,
    iter_mentions_with_answers,
    last_queued_at,
    mark_notified,
    overdue_deliveries,
    queue_delivery,
    record_delivery,
    sync_alerts,
)
from monitor.store.backup import (
    PARTIAL_SUFFIX,
    Backup,
    backup,
    backup_name,
    check_copy,
    prune,
    remove_partials,
    stamped_backups,
)
from monitor.store.db import (
    BUSY_TIMEOUT_SECONDS,
    StoreBusy,
    StoreError,
    StoreFull,
    StoreReadOnly,
    check_local_disk,
    check_writable,
    checkpoint,
    explain,
    migrations,
    open_db,
    shrink_wal,
    sqlite_version_warning,
    stored_brands,
    table_counts,
    wal_bytes,
    write_transaction,
)
from monitor.store.digest import (
    DIGEST_ACTIVITY_SQL,
    DIGEST_LAST_ACTIVITY_SQL,
    DIGEST_MENTIONS_SQL,
    DigestSend,
    claim_digest_send,
    get_digest_sends,
    get_last_activity,
    iter_brand_activity,
    iter_mentions_between,
    last_digest_day,
    recipient_key,
    record_digest_failed,
    record_digest_sent,
    send_is_due,
)
from monitor.store.labels import (
    LabelRow,
    count_labels,
    has_posts_to_label,
    iter_posts_to_label,
    upsert_labels,
)
from monitor.store.posts import (
    POST_COLUMNS,
    UPSERT_POST_SQL,
    UPSERT_ROLE_SQL,
    count_posts,
    iter_posts,
    post_row,
    role_row,
    store_page,
    upsert_posts,
)
from monitor.store.service import (
    ClassifierStatus,
    get_channel_holds,
    get_classifier_status,
    hold_channel,
    record_classification,
    record_daemon_start,
    record_daemon_stop,
    restarts_after_crash,
)
from monitor.store.streams import (
    RunGap,
    StreamStatus,
    delete_cursor,
    get_account_id,
    get_collector_state,
    get_cursor,
    get_deferral,
    get_gaps,
    get_stream_status,
    last_run_starts,
    record_run,
    set_account_id,
    set_collector_state,
)

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "DIGEST_ACTIVITY_SQL",
    "DIGEST_LAST_ACTIVITY_SQL",
    "DIGEST_MENTIONS_SQL",
    "PARTIAL_SUFFIX",
    "POST_COLUMNS",
    "UPSERT_POST_SQL",
    "UPSERT_ROLE_SQL",
    "Backup",
    "ClassifierStatus",
    "Delivery",
    "DigestSend",
    "LabelRow",
    "Overdue",
    "RunGap",
    "StoreBusy",
    "StoreError",
    "StoreFull",
    "StoreReadOnly",
    "StoredAlert",
    "StreamStatus",
    "ack_alert",
    "backup",
    "backup_name",
    "check_copy",
    "check_local_disk",
    "check_writable",
    "checkpoint",
    "claim_digest_send",
    "claim_due_deliveries",
    "last_queued_at",
    "count_deliveries",
    "count_labels",
    "count_posts",
    "delete_cursor",
    "explain",
    "extend_claims",
    "get_account_id",
    "get_alerts",
    "get_channel_holds",
    "get_classifier_status",
    "get_collector_state",
    "get_cursor",
    "get_deferral",
    "get_digest_sends",
    "get_gaps",
    "get_last_activity",
    "get_stream_status",
    "has_posts_to_label",
    "hold_channel",
    "iter_brand_activity",
    "iter_labelled_posts",
    "iter_mentions_between",
    "iter_mentions_with_answers",
    "iter_posts",
    "iter_posts_to_label",
    "last_digest_day",
    "last_run_starts",
    "mark_notified",
    "migrations",
    "open_db",
    "overdue_deliveries",
    "post_row",
    "prune",
    "remove_partials",
    "role_row",
    "queue_delivery",
    "recipient_key",
    "record_classification",
    "record_daemon_start",
    "record_daemon_stop",
    "record_delivery",
    "record_digest_failed",
    "record_digest_sent",
    "record_run",
    "restarts_after_crash",
    "send_is_due",
    "set_account_id",
    "set_collector_state",
    "shrink_wal",
    "sqlite_version_warning",
    "stamped_backups",
    "store_page",
    "sync_alerts",
    "stored_brands",
    "table_counts",
    "upsert_labels",
    "upsert_posts",
    "wal_bytes",
    "write_transaction",
]
