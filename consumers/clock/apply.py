"""Clock tasks applied in batches: one PostgreSQL transaction per batch.

The environments and check-ins a batch names are locked (id order), each task re-checks
its condition against the locked rows (``consumers.clock.decisions``), then the MISSED
check-ins, the TIMEOUT transitions, the new deadlines, the rollups, the incidents and the
consumed offsets are written together. A redelivered task is skipped by its stored
offset, and would change nothing anyway: its condition no longer holds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg

from consumers import rollups
from consumers.clock import metrics as clock_metrics
from consumers.clock import store as clock_store
from consumers.clock import volume_store
from consumers.clock.decisions import Deadlines, DueMissed, Task, TaskWrites, Unschedulable, decide, plan_writes
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from schemas import database
from schemas.clock import MarkTimeout, decode_clock_task
from schemas.enums import CheckInStatus
from schemas.messages import MessageDecodeError

__all__ = ["TaskBatch", "TaskMessage", "apply_task_batch", "decode_task_message"]

log = logging.getLogger("cronpipe.clock.tasks")

UTC = timezone.utc


@dataclass(frozen=True)
class TaskMessage:
    """A decoded task and where it was read."""

    partition: int
    offset: int
    #: None for a message that did not decode: only its offset counts.
    task: Task | None


def decode_task_message(partition: int, offset: int, value: bytes | None) -> TaskMessage:
    """A task and where it was read; an undecodable one keeps only its position (it is
    logged, and its offset commits with the batch, so it never blocks the partition)."""
    try:
        return TaskMessage(partition, offset, decode_clock_task(value or b""))
    except MessageDecodeError as exc:
        log.error("undecodable clock task [%d]@%d skipped: %s", partition, offset, exc)
        return TaskMessage(partition, offset, None)


@dataclass(frozen=True)
class TaskBatch:
    """What one applied batch did (for logs, tests and the benchmark)."""

    skipped: int
    missed: int
    timeouts: int
    incidents_opened: int
    #: Environments whose schedule could not be computed (deadline pushed forward).
    unschedulable: tuple[Unschedulable, ...] = ()


def apply_task_batch(conn: psycopg.Connection[Any], messages: Sequence[TaskMessage], *, group: str,
                     topic: str, retention_days: int = 90, guard: bool = True) -> TaskBatch:
    """Apply ``messages`` (in partition order) in one transaction with their offsets.

    ``conn`` must not be inside another transaction. Raises psycopg errors (nothing
    committed: the caller retries the same batch).
    """
    with conn.transaction():
        stored = database.load_offsets(conn, group, topic, {m.partition for m in messages})
        fresh = [m for m in messages if m.offset >= stored.get(m.partition, 0)]
        tasks = [m.task for m in fresh if m.task is not None]
        # Before the environments: a tick's resolution locks its decision, then environments.
        verdicts = volume_store.lock_decisions(
            conn, {datetime.fromtimestamp(t.ts, UTC) for t in tasks}) if guard else {}
        envs = clock_store.load_task_environments(conn, {t.monitor_environment_id for t in tasks})
        checkins = clock_store.load_timeout_checkins(
            conn, {t.checkin_id for t in tasks if isinstance(t, MarkTimeout)})
        unschedulable: list[Unschedulable] = []
        decisions, deadlines = decide(tasks, envs, checkins, unschedulable)
        ids = clock_store.allocate_checkin_ids(conn, sum(isinstance(d, DueMissed) for d in decisions))
        writes = plan_writes(decisions, envs, iter(ids), verdicts)
        _write(conn, writes, deadlines, retention_days)
        clock_store.insert_processing_errors(conn, [(u.env_id, u.reason) for u in unschedulable])
        database.save_offsets(conn, group, topic, _next_offsets(messages))
    for failure in unschedulable:
        log.warning("environment %d: %s", failure.env_id, failure.reason)
        clock_metrics.error(clock_metrics.TASKS, failure.error_type)
    _observe(fresh, tasks, writes)
    return TaskBatch(skipped=len(messages) - len(fresh), missed=len(writes.missed),
                     timeouts=len(writes.timeouts), incidents_opened=len(writes.opened),
                     unschedulable=tuple(unschedulable))


def _write(conn: psycopg.Connection[Any], writes: TaskWrites, deadlines: Deadlines, retention_days: int) -> None:
    clock_store.insert_missed(conn, writes.missed, retention_days)
    clock_store.mark_timeouts(conn, writes.timeouts)
    clock_store.mark_timeouts(conn, writes.unknowns, CheckInStatus.UNKNOWN)
    rollups.add_rollups(conn, writes.rollups, writes.unknown_rollups)
    incident_store.open_incidents(conn, writes.opened)
    outbox.write_events(conn, writes.events)
    volume_store.hold(conn, writes.held)
    clock_store.update_environments(conn, deadlines, writes.states)


def _observe(fresh: Sequence[TaskMessage], tasks: Sequence[Task], writes: TaskWrites) -> None:
    """Count what a committed batch did (consumers.clock.metrics)."""
    clock_metrics.TASKS_APPLIED.inc(len(tasks))
    clock_metrics.UNDECODABLE.labels("task").inc(len(fresh) - len(tasks))
    unknown_missed = sum(m.status == CheckInStatus.UNKNOWN for m in writes.missed)
    clock_metrics.CHECKINS_MARKED.labels("missed").inc(len(writes.missed) - unknown_missed)
    clock_metrics.CHECKINS_MARKED.labels("unknown").inc(unknown_missed + len(writes.unknowns))
    clock_metrics.CHECKINS_MARKED.labels("timeout").inc(len(writes.timeouts))


def _next_offsets(messages: Sequence[TaskMessage]) -> dict[int, int]:
    offsets: dict[int, int] = defaultdict(int)
    for m in messages:
        offsets[m.partition] = max(offsets[m.partition], m.offset + 1)
    return dict(offsets)
