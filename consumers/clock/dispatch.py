"""Tick dispatch: one ``monitors-clock-tick`` message → the tasks it makes due.

For tick T: monitor environments with ``next_checkin_latest <= T`` → ``mark_missing``;
IN_PROGRESS check-ins with ``timeout_at <= T`` → ``mark_timeout``; disabled monitors and
environments get none. Both sweeps use their partial indexes in keyset order and stop at
a bound; a bounded sweep saves its cursor and the next tick continues after it (so tasks
still in flight are not sent twice), a complete sweep resets it.

Idempotence: the tasks are produced (and flushed) first, then the cursors and the tick's
offset commit in one transaction. A crash in between redelivers the tick and re-sends
the same tasks, which is harmless because each task re-checks its condition under a row
lock; a tick whose offset is stored is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, Protocol

import psycopg

from consumers.clock import store as clock_store
from consumers.clock import volume_store
from consumers.clock.volume import Decision
from schemas import database
from schemas.clock import MarkMissing, MarkTimeout, encode_clock_task, task_key

__all__ = ["DispatchResult", "Guard", "KafkaTaskSink", "TaskSendError", "TaskSink", "dispatch_tick", "plan_tasks"]

log = logging.getLogger("cronpipe.clock.dispatch")

UTC = timezone.utc
#: Tasks per kind and tick before the sweep continues on the next tick.
DEFAULT_LIMIT: Final = 200_000
#: Rows read (and tasks sent) per round trip of a sweep.
CHUNK: Final = 5000
MISSING: Final = "missing"
TIMEOUT: Final = "timeout"

Task = MarkMissing | MarkTimeout


class TaskSendError(RuntimeError):
    """Tasks could not be confirmed delivered; the tick is not committed and comes back."""


class TaskSink(Protocol):
    def send_tasks(self, tasks: Sequence[Task]) -> None:
        """Queue the tasks (keyed by environment) for delivery; may return before delivery."""

    def flush(self) -> None:
        """Wait until every queued task is delivered; raise :class:`TaskSendError` otherwise."""


class KafkaTaskSink:
    """Produces tasks to ``monitors-clock-tasks`` with confluent-kafka, keyed by environment."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 30.0) -> None:
        from confluent_kafka import Producer

        self._topic = topic
        self._timeout_s = timeout_s
        self._errors: list[str] = []
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "linger.ms": 5, "queue.buffering.max.messages": 1_000_000})

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send_tasks(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            self._produce(task_key(task), encode_clock_task(task))
        self._producer.poll(0)

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(self._topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.1)

    def flush(self) -> None:
        undelivered = self._producer.flush(self._timeout_s)
        errors, self._errors = self._errors, []
        if undelivered or errors:
            raise TaskSendError(f"tasks not delivered to {self._topic}: {errors[:3] or 'flush timed out'}")


@dataclass(frozen=True)
class DispatchResult:
    missing: int
    timeouts: int
    bounded: bool
    decision: Decision = Decision.NORMAL


@dataclass(frozen=True)
class Guard:
    """The volume-anomaly guard's thresholds (drops, in percent)."""

    abnormal_pct: float = 10.0
    incident_pct: float = 30.0


def plan_tasks(tick_ts: int, environments: Sequence[tuple[int, datetime]],
               timeouts: Sequence[clock_store.DueTimeout]) -> list[Task]:
    """The tasks of one tick: missing first, then timeouts, each in deadline order."""
    tasks: list[Task] = [MarkMissing(ts=tick_ts, monitor_environment_id=env_id) for env_id, _ in environments]
    tasks.extend(MarkTimeout(ts=tick_ts, monitor_environment_id=t.env_id, checkin_id=t.checkin_id)
                 for t in timeouts)
    return tasks


def _next_cursor(last: Sequence[tuple[datetime, int]], count: int, limit: int) -> clock_store.Cursor:
    """Continue after the last row when the sweep hit its bound; else start over."""
    return last[-1] if last and count >= limit else None


def dispatch_tick(conn: psycopg.Connection[Any], sink: TaskSink, tick: datetime, *, group: str,
                  topic: str, partition: int, offset: int, limit: int = DEFAULT_LIMIT,
                  chunk: int = CHUNK, guard: Guard | None = None) -> DispatchResult | None:
    """Dispatch tick ``tick`` read at (``topic``, ``partition``, ``offset``).

    Tasks are sent chunk by chunk as the sweeps read them, so the task consumers start
    while the sweep is still running; the cursors and the offset commit after the flush.
    With ``guard``, the tick's volume decision is made (and its transition applied) in the
    first transaction, before any task is sent, so every task of the tick finds it.
    Returns None when the offset was already committed (a redelivery). ``conn`` must not
    be inside another transaction. Raises TaskSendError or psycopg errors (nothing
    committed; the tick is retried).
    """
    with conn.transaction():
        if database.load_offsets(conn, group, topic, [partition]).get(partition, 0) > offset:
            return None
        missing_after = clock_store.load_cursor(conn, group, MISSING)
        timeout_after = clock_store.load_cursor(conn, group, TIMEOUT)
        decision = Decision.NORMAL
        if guard is not None:
            decision = volume_store.decide_tick(conn, tick, abnormal_pct=guard.abnormal_pct,
                                                incident_pct=guard.incident_pct)
    tick_ts = int(tick.timestamp())
    last_env: list[tuple[datetime, int]] = []
    last_timeout: list[tuple[datetime, int]] = []
    missing = timeouts = 0
    with conn.transaction():  # one snapshot for both sweeps
        for envs in clock_store.iter_due_environments(conn, tick, missing_after, limit, chunk):
            sink.send_tasks(plan_tasks(tick_ts, envs, []))
            missing += len(envs)
            last_env = [(envs[-1][1], envs[-1][0])]
        for due in clock_store.iter_due_timeouts(conn, tick, timeout_after, limit, chunk):
            sink.send_tasks(plan_tasks(tick_ts, [], due))
            timeouts += len(due)
            last_timeout = [(due[-1].timeout_at, due[-1].checkin_id)]
    sink.flush()
    with conn.transaction():
        clock_store.save_cursor(conn, group, MISSING, _next_cursor(last_env, missing, limit))
        clock_store.save_cursor(conn, group, TIMEOUT, _next_cursor(last_timeout, timeouts, limit))
        database.save_offsets(conn, group, topic, {partition: offset + 1})
    bounded = missing >= limit or timeouts >= limit
    if bounded:
        log.info("tick %s bounded at %d tasks per kind; continuing on the next tick", tick, limit)
    return DispatchResult(missing=missing, timeouts=timeouts, bounded=bounded, decision=decision)
