"""One run of a stream: fetch -> normalize -> store (posts and cursor in one transaction).

Classification and alerts hook in here as they arrive. A failure of one stream is recorded in
``runs`` and never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlite_utils import Database

from monitor import clock, store
from monitor.alerts import outbox
from monitor.config import BrandSettings, ConfigError, Settings
from monitor.logs import clean
from monitor.models import (
    ACCOUNT_STREAM,
    Cursor,
    Outcome,
    Post,
    RunResult,
    StreamKey,
    iso,
    parse_iso,
)
from monitor.platforms.base import (
    AuthError,
    Collector,
    CollectorError,
    RateLimited,
    Target,
)
from monitor.platforms.streams import brand_streams, build_collector, configured

if TYPE_CHECKING:  # scikit-learn and the model are imported only by the steps that classify
    import classifiers

logger = logging.getLogger(__name__)

ProgressHook = Callable[[RunResult, Sequence[Post]], None]


@dataclass(frozen=True)
class Stop:
    """Why a walk stops early. ``interrupted``: touchpoint itself is stopping or reloading, which
    says nothing about the stream (the run is recorded "interrupted", not counted as a failure);
    else the stream ran out of time (a job deadline: "failed")."""

    reason: str
    interrupted: bool = False

    def __str__(self) -> str:
        return self.reason


StopCheck = Callable[[], Stop | None]
"""Asked between pages: why to stop the walk early (a deadline, a shutdown), or None."""


BACKFILL = "backfill-"  # a backfill's streams: backfill-posts, with its window in the query


@dataclass(frozen=True)
class Selection:
    """Which brands, platforms and streams a command covers (None = all)."""

    brand: str | None = None
    platform: str | None = None
    stream: str | None = None


def run_stream(
    db: Database,
    collector: Collector,
    target: Target,
    *,
    on_page: ProgressHook | None = None,
    stop: StopCheck | None = None,
) -> RunResult:
    """Collect one stream until its last page (or its page budget, or ``stop`` says why not),
    committing page by page: a walk cut short resumes from its cursor on the next run."""
    key = target.key
    result = RunResult(key=key, started_at=clock.now())
    began = time.monotonic()
    try:
        cursor = _cursor_for(db, target)
        for page in collector.fetch(target, cursor):
            posts = collector.normalize(page.raw, target)
            new, updated = store.store_page(db, key, posts, page.cursor, account=target.account_id)
            result.items_new += new
            result.items_updated += updated
            result.pages += 1
            if page.gap:
                result.gap = clean(page.gap)
                logger.warning("%s: items may be missing: %s", key, result.gap)
            if on_page is not None:
                on_page(result, posts)
            reason = stop() if stop is not None else None
            if reason is not None:
                result.outcome = "interrupted" if reason.interrupted else "failed"
                result.error = f"stopped after {result.pages} pages: {reason}; resumes next run"
                break
    except RateLimited as exc:
        _fail(result, "deferred", exc)
        result.retry_at = exc.retry_at
    except AuthError as exc:
        _fail(result, "auth_failed", exc)
    except CollectorError as exc:
        _fail(result, "failed", exc)
    except store.StoreError as exc:  # full, busy, read-only: page and cursor rolled back
        _fail(result, "failed", exc)
    except Exception as exc:  # a bug must not end the other streams' runs
        logger.exception("%s: unexpected error", key)
        _fail(result, "failed", exc)
    result.finished_at = clock.now()
    _record(db, result)
    _log_run(result, time.monotonic() - began)
    return result


def _cursor_for(db: Database, target: Target) -> Cursor:
    """The stream's cursor; an empty one when it was walked for another account of the brand
    (moved to a new account: its positions say nothing of the new one's). A keyword search is
    the same whatever the account."""
    cursor = store.get_cursor(db, target.key)
    if cursor.account in (None, target.account_id) or target.stream == "keywords":
        return cursor
    logger.warning(
        "%s: the brand's account is another one now (@%s, id %s; the stream was walked for id "
        "%s): it is walked afresh",
        target.key,
        target.handle,
        target.account_id,
        cursor.account,
    )
    return Cursor()


def _fail(result: RunResult, outcome: Outcome, exc: Exception) -> None:
    result.outcome = outcome
    text = str(exc) or type(exc).__name__
    result.error = clean(
        text
        if isinstance(exc, CollectorError | store.StoreError)
        else f"{type(exc).__name__}: {text}"
    )


def _log_run(result: RunResult, seconds: float) -> None:
    # failures are recorded in `runs` and reported by the caller: the log line is the narrative
    fields = {
        "stream": str(result.key),
        "outcome": result.outcome,
        "new": result.items_new,
        "updated": result.items_updated,
        "pages": result.pages,
        "seconds": round(seconds, 3),
        "error": result.error,
    }
    logger.info(
        "run %s: %s, %d new, %d updated, %d pages, %.2fs%s",
        result.key,
        result.outcome,
        result.items_new,
        result.items_updated,
        result.pages,
        seconds,
        f", error: {result.error}" if result.error else "",
        extra={"run": fields},
    )


def _skipped(
    key: StreamKey, outcome: Outcome, error: str, retry_at: datetime | None = None
) -> RunResult:
    now = clock.now()
    return RunResult(
        key=key,
        started_at=now,
        finished_at=now,
        outcome=outcome,
        error=error,
        retry_at=retry_at,
    )


def iter_targets(
    settings: Settings, brand: BrandSettings, platform: str, collector: Collector, account_id: str
) -> Iterator[Target]:
    """Yield the stream targets of one brand account: posts, mentions and keyword search."""
    handle = brand.accounts[platform]
    for stream, query in brand_streams(collector, settings, brand, platform):
        key = StreamKey(brand.name, platform, stream, query)
        yield Target(
            key=key,
            stream=stream,
            handle=handle,
            account_id=account_id,
            query=query,
            max_pages=settings.collect.max_pages,
        )


def resolve_account(db: Database, collector: Collector, platform: str, handle: str) -> str:
    """Return the account id of a brand handle, asking the platform only the first time."""
    cached = store.get_account_id(db, platform, handle)
    if cached:
        return cached
    account_id = collector.resolve_account(handle)
    store.set_account_id(db, platform, handle, account_id)
    return account_id


def collect(
    db: Database,
    settings: Settings,
    selection: Selection = Selection(),
    *,
    collectors: dict[str, Collector] | None = None,
    backfill: tuple[datetime, datetime] | None = None,
    on_page: ProgressHook | None = None,
    stop: StopCheck | None = None,
) -> list[RunResult]:
    """Run every selected stream once; with ``backfill`` walk that window instead of what is new.

    ``stop`` is asked after each page (the daemon's job deadline and its shutdown).
    """
    results: list[RunResult] = []
    own = collectors is None
    built: dict[str, Collector] = collectors if collectors is not None else {}
    hooks = _Hooks(backfill, on_page, stop)
    try:
        for brand in settings.brands:
            if selection.brand not in (None, brand.name):
                continue
            for platform in settings.platforms_in_use():
                if platform not in brand.accounts or selection.platform not in (None, platform):
                    continue
                results.extend(
                    _collect_account(db, settings, brand, platform, built, selection, hooks)
                )
    finally:
        if own:
            for collector in built.values():
                collector.close()
    return results


@dataclass(frozen=True)
class _Hooks:
    backfill: tuple[datetime, datetime] | None
    on_page: ProgressHook | None
    stop: StopCheck | None


def _collect_account(
    db: Database,
    settings: Settings,
    brand: BrandSettings,
    platform: str,
    built: dict[str, Collector],
    selection: Selection,
    hooks: _Hooks,
) -> list[RunResult]:
    account_key = StreamKey(brand.name, platform, ACCOUNT_STREAM)
    try:
        if platform not in built:
            built[platform] = build_collector(platform, settings)
            built[platform].load_state(store.get_collector_state(db, platform))
        collector = built[platform]
    except ConfigError as exc:
        return [_account_failed(db, account_key, exc)]
    try:
        account_id = resolve_account(db, collector, platform, brand.accounts[platform])
        results = []
        for target in iter_targets(settings, brand, platform, collector, account_id):
            if selection.stream in (None, target.stream):
                results.append(_run_target(db, collector, target, hooks))
        for stream in configured(list(collector.left_out), settings, platform):
            reason = collector.left_out[stream]
            if selection.stream in (None, stream):
                results.append(_left_out(db, replace(account_key, stream=stream), reason, hooks))
        return results
    except (CollectorError, store.StoreError) as exc:
        return [_account_failed(db, account_key, exc)]
    finally:
        state = collector.dump_state()  # e.g. a session refreshed even by a failed run
        if state is not None:
            try:
                store.set_collector_state(db, platform, state)
            except store.StoreError as exc:  # full, busy, read-only: next run logs in again
                logger.error("%s: its session could not be kept: %s", account_key, exc)


def _account_failed(db: Database, key: StreamKey, exc: Exception) -> RunResult:
    result = _skipped(
        key, "auth_failed" if isinstance(exc, AuthError) else "failed", clean(str(exc))
    )
    _record(db, result)
    logger.info("%s: %s", key, result.error)
    return result


def _left_out(db: Database, key: StreamKey, reason: str, hooks: _Hooks) -> RunResult:
    """A stream the collector cannot offer (e.g. Reddit's inbox without a login): a collection
    records it as a skipped run with the reason, so that status and the digest say why; a
    backfill only reports it."""
    if hooks.backfill is not None:
        return _skipped(replace(key, stream=f"{BACKFILL}{key.stream}"), "skipped", reason)
    result = _skipped(key, "skipped", reason)
    _record(db, result)
    logger.info("%s: %s", key, reason)
    return result


def _record(db: Database, result: RunResult) -> None:
    """Append the run to ``runs``; when the store cannot take it (full, busy, read-only) say so in
    the log, the run goes on."""
    try:
        store.record_run(db, result)
    except store.StoreError as exc:
        logger.error("%s: the run could not be recorded: %s", result.key, exc)


def _run_target(db: Database, collector: Collector, target: Target, hooks: _Hooks) -> RunResult:
    backfill = hooks.backfill
    if backfill is not None:
        target = _backfill_target(target, *backfill)
    else:
        deferred = store.get_deferral(db, target.key)
        if deferred is not None and deferred > clock.now():
            reason = f"deferred until {iso(deferred)} (rate limit)"
            return _skipped(target.key, "skipped", reason, deferred)
    result = run_stream(db, collector, target, on_page=hooks.on_page, stop=hooks.stop)
    if backfill is not None and result.outcome == "ok":
        store.delete_cursor(db, target.key)  # the window is complete: nothing to resume
    return result


def _backfill_target(target: Target, since: datetime, until: datetime) -> Target:
    key = replace(
        target.key,
        stream=f"{BACKFILL}{target.key.stream}",
        query=f"{target.query} [{iso(since)}..{iso(until)}]".strip(),
    )
    return replace(target, key=key, since=since, until=until, max_pages=None)


def unfinished_backfill_end(
    db: Database, since: datetime, selection: Selection = Selection()
) -> datetime | None:
    """The end of the latest backfill window starting at ``since`` that was not walked to its
    end (a finished window's cursor is deleted), among the selected streams; None if none."""
    opening = f"[{iso(since)}.."  # the window ends the query, as _backfill_target writes it
    ends = []
    for s in store.get_stream_status(db):
        key = s.key
        if (
            s.cursor_updated_at is None
            or not key.stream.startswith(BACKFILL)
            or selection.brand not in (None, key.brand)
            or selection.platform not in (None, key.platform)
            or selection.stream not in (None, key.stream.removeprefix(BACKFILL))
        ):
            continue
        _, found, rest = key.query.rpartition(opening)
        if found and rest.endswith("]"):
            with contextlib.suppress(ValueError):
                ends.append(parse_iso(rest[:-1]))
    return max(ends, default=None)


def classify_pending(
    db: Database,
    classifier: classifiers.Classifier,
    *,
    relabel: bool = False,
    since: datetime | None = None,
    batch_size: int = 1000,
) -> int:
    """Label the brand's posts that have no label yet (or, with ``relabel``, one from another
    model version), a batch at a time; return how many were labelled. Records the success, so a
    classifier alert resolves once labelling works again, whoever labelled."""
    done = 0
    batches = store.iter_posts_to_label(
        db, model_version=classifier.version, relabel=relabel, since=since, batch_size=batch_size
    )
    for batch in batches:
        predictions = classifier.predict([text for _, text in batch])
        rows = [
            store.LabelRow(
                post_id,
                p.label,
                float(p.confidence),
                {k: float(v) for k, v in p.probabilities.items()},
                classifier.version,
            )
            for (post_id, _), p in zip(batch, predictions, strict=True)
        ]
        done += store.upsert_labels(db, rows)
    store.record_classification(db, error=None)
    return done


def load_classifier(settings: Settings) -> classifiers.Classifier:
    """The configured model (or the shipped one), loaded and verified once per process."""
    import classifiers

    return classifiers.load_default(settings.model_path, accurate=settings.accurate_classifier)


def classify_new(db: Database, settings: Settings) -> int | None:
    """Label new brand posts in batches; None if the model cannot be loaded (the error is logged
    and collection goes on)."""
    import classifiers

    try:
        classifier = load_classifier(settings)
    except classifiers.ModelLoadError as exc:
        logger.error("posts not classified: %s", exc)
        store.record_classification(db, error=clean(str(exc))[:500])
        return None
    return classify_pending(db, classifier)


@dataclass(frozen=True)
class AlertsReport:
    """What the alert step after a collection did."""

    evaluation: outbox.Evaluation
    delivery: outbox.DeliveryReport | None
    error: str | None = None

    def summary(self) -> str:
        """One line: alerts opened and resolved, messages queued, sent, retrying, given up."""
        e, d = self.evaluation, self.delivery
        line = f"{e.opened} new, {e.resolved} resolved, {e.queued} messages queued"
        if d is not None:
            line += f", {d.sent} sent, {d.retrying} to retry, {d.dead} given up"
        return line

    @property
    def eventful(self) -> bool:
        """Whether anything changed or was delivered (worth a log line in the daemon)."""
        d = self.delivery
        return bool(
            self.evaluation.opened or self.evaluation.resolved or self.evaluation.queued
        ) or (d is not None and bool(d.sent or d.retrying or d.dead))


def run_alerts(db: Database, settings: Settings) -> AlertsReport:
    """Evaluate the alert rules over the store and deliver what is due."""
    evaluation = outbox.evaluate(db, settings)
    try:
        channels = outbox.build_channels(settings)
    except ConfigError as exc:  # e.g. a channel's secret is missing: the outbox keeps the messages
        logger.warning("alerts not delivered: %s", exc)
        return AlertsReport(evaluation, None, str(exc))
    return AlertsReport(evaluation, outbox.deliver(db, channels))


def prune_runs(db: Database, settings: Settings) -> int:
    """Delete the runs older than ``[store] runs_keep_days`` (each stream's latest run, success
    and error stay, however old); return how many went."""
    days = settings.runs_keep_days
    pruned = store.prune_runs(db, before=clock.now() - timedelta(days=days))
    if pruned:
        logger.info("runs: %d older than %d days deleted", pruned, days)
    return pruned


def failures(results: Sequence[RunResult]) -> list[RunResult]:
    """Return the runs that did not succeed (deferrals and skips are not failures)."""
    return [r for r in results if r.outcome in ("failed", "auth_failed")]
