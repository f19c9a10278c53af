"""One maintenance pass, run by ``cronpipe maintain`` and by the worker's task.

Order: finish what an interrupted pass left (pending detaches, detached tables), create
the partitions ahead, drop the expired partitions (guid rows and attachments first, in
batches, then DETACH CONCURRENTLY and DROP), trim shorter retentions in the partitions
that stay, prune old rollups and orphan attachments, then the alert tables (sent outbox
rows, the delivery log, finished deliveries, consumed events). Every batch commits on its own.

One pass at a time across every process: a session advisory lock; a second caller
returns at once with ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import psycopg

from consumers.maintenance import store
from consumers.maintenance.plan import Plan, RetentionConfig, plan

Progress = Callable[[str], None]


@dataclass
class Summary:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    dropped_checkins_guids: int = 0
    trimmed_checkins: int = 0
    #: Late check-ins written to a day while it was dropped, kept longer: moved back.
    rescued_checkins: int = 0
    attachments_deleted: int = 0
    hourly_rollups_deleted: int = 0
    daily_rollups_deleted: int = 0
    #: Sent incident_outbox rows, delivery log rows, finished deliveries, consumed events.
    outbox_deleted: int = 0
    delivery_log_deleted: int = 0
    deliveries_deleted: int = 0
    alert_events_deleted: int = 0
    skipped: str | None = None
    stopped: bool = False
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _quiet(_: str) -> None:
    pass


def _never() -> bool:
    return False


def maintain(database_url: str, now: datetime, config: RetentionConfig, *,
             progress: Progress = _quiet, should_stop: Callable[[], bool] = _never) -> Summary:
    """Run one pass for ``now``; ``should_stop`` is checked between batches."""
    started = time.perf_counter()
    summary = Summary()
    with psycopg.connect(database_url, autocommit=True,
                         application_name="cronpipe-maintain") as conn:
        if not store.try_lock(conn):
            summary.skipped = "another maintenance pass is running"
            return summary
        try:
            _Pass(conn, config, summary, progress, should_stop).run(now)
        finally:
            store.unlock(conn)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


@dataclass
class _Pass:
    conn: psycopg.Connection[Any]
    config: RetentionConfig
    summary: Summary
    progress: Progress
    should_stop: Callable[[], bool]
    today: date = date.min

    def run(self, now: datetime) -> None:
        self.today = now.astimezone(timezone.utc).date()
        self.finish_interrupted()
        partitions = store.load_partitions(self.conn)
        decided = plan(now, partitions.attached, store.load_retentions(self.conn), self.config)
        self.create(decided)
        for day in decided.drop:
            if self.stopping():
                return
            self.drop(partitions.attached[day])
        for day, r in decided.trim:
            if self.stopping():
                return
            self.trim(partitions.attached[day], day, r)
        self.prune(decided)

    def stopping(self) -> bool:
        if self.should_stop():
            self.summary.stopped = True
        return self.summary.stopped

    def finish_interrupted(self) -> None:
        partitions = store.load_partitions(self.conn)
        for part in partitions.detach_pending:
            self.progress(f"finishing the interrupted detach of {part}")
            store.finalize_detach(self.conn, part)
        for part in partitions.detach_pending + partitions.leftovers:
            self.progress(f"dropping {part}, detached by an interrupted pass")
            self.summary.rescued_checkins += store.drop_detached(self.conn, part, self.today)
            self.summary.dropped.append(part)

    def create(self, decided: Plan) -> None:
        if decided.create and store.ensure_partitions(self.conn, decided.create):
            names = [f"checkins_p{d:%Y%m%d}" for d in decided.create]
            self.progress(f"created {', '.join(names)}")
            self.summary.created.extend(names)

    def drop(self, part: str) -> None:
        self.progress(f"{part}: every row expired; forgetting its guids")
        while True:
            guids, attachments = store.forget_guids(self.conn, store.partition_day(part), self.config.batch_size)
            self.summary.dropped_checkins_guids += guids
            self.summary.attachments_deleted += attachments
            if not guids:
                break
        self.progress(f"{part}: detaching (concurrently) and dropping")
        store.detach_concurrently(self.conn, part)
        self.summary.rescued_checkins += store.drop_detached(self.conn, part, self.today)
        self.summary.dropped.append(part)

    def trim(self, part: str, day: Any, r: int) -> None:
        self.progress(f"{part}: deleting rows kept {r} days or less")
        after, n = 0, self.config.batch_size
        while True:
            last, deleted, attachments = store.trim(self.conn, part, r, after, n)
            self.summary.trimmed_checkins += deleted
            self.summary.attachments_deleted += attachments
            if last is None:
                break
            if self.stopping():
                return  # the retention row stays: the next pass trims again from the start
            after = last
        store.forget_retentions(self.conn, day, r)

    def prune(self, decided: Plan) -> None:
        n = self.config.batch_size
        for resolution, before, attr in ((3600, decided.hourly_rollups_before, "hourly_rollups_deleted"),
                                         (86400, decided.daily_rollups_before, "daily_rollups_deleted")):
            while not self.stopping() and (deleted := store.prune_rollups(self.conn, resolution, before, n)):
                setattr(self.summary, attr, getattr(self.summary, attr) + deleted)
        while not self.stopping() and (
                deleted := store.prune_orphan_attachments(self.conn, decided.orphan_attachments_before, n)):
            self.summary.attachments_deleted += deleted
        self.prune_alerts(decided)

    def prune_alerts(self, decided: Plan) -> None:
        n = self.config.batch_size
        # The log before the deliveries, the deliveries before their events (foreign keys).
        for attr, statement, before in (
                ("outbox_deleted", store.PRUNE_OUTBOX, decided.outbox_sent_before),
                ("delivery_log_deleted", store.PRUNE_DELIVERY_LOG, decided.deliveries_before),
                ("deliveries_deleted", store.PRUNE_DELIVERIES, decided.deliveries_before),
                ("alert_events_deleted", store.PRUNE_ALERT_EVENTS, decided.deliveries_before)):
            while not self.stopping() and (deleted := store.prune_alerts(self.conn, statement, before, n)):
                setattr(self.summary, attr, getattr(self.summary, attr) + deleted)
