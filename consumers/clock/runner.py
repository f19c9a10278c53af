"""The clock's agents after the ticks: tick dispatch and task application.

* ``clock_dispatch`` — a faust agent on ``monitors-clock-tick``: each tick is dispatched
  (``consumers.clock.dispatch``), retried while PostgreSQL or Kafka is unavailable.
* ``clock_tasks-N`` — :data:`TASK_CONSUMERS` batch consumers of ``monitors-clock-tasks``
  (``consumers.batch_consumer``, each in its own thread with its own connection), each
  batch applied in one transaction (``consumers.clock.apply``) until it commits.

Failures follow ``consumers.retry``: transient ones back off and retry, a permanent one
(a missing table, a bug) stops the worker loudly. Once the worker begins to stop no new
tick or task batch starts; what is not committed is redelivered to the next worker.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Final

import faust
import psycopg

from consumers import metrics, retry
from consumers.batch_consumer import BatchConsumer, Record, stored_offsets_of
from consumers.clock import metrics as clock_metrics
from consumers.clock.apply import apply_task_batch, decode_task_message
from consumers.clock.dispatch import Guard, KafkaTaskSink, TaskSendError, dispatch_tick
from consumers.context import NO_JIT, WorkerContext
from schemas.clock import decode_clock_tick
from schemas.database import StoreError
from schemas.messages import MessageDecodeError

__all__ = ["TaskApplier", "register", "task_consumer"]

log = logging.getLogger("cronpipe.clock.tasks")

UTC = timezone.utc
TASK_BATCH_SIZE: Final = 5000
TASK_BATCH_WITHIN_S: Final = 0.2
#: Task consumers per worker (threads, each with its own connection and partitions).
TASK_CONSUMERS: Final = 2


class TaskApplier:
    """The batch handler of ``monitors-clock-tasks``: decode, apply in one transaction on
    its own connection (not the pool's: a long batch must not starve the processor),
    retry until committed or stopped."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self, records: Sequence[Record], stop: threading.Event) -> None:
        messages = [decode_task_message(r.partition, r.offset, r.value) for r in records]
        ctx = self._ctx
        started = time.perf_counter()

        def apply() -> Any:
            return apply_task_batch(self._connection(), messages, group=ctx.consumer_group,
                                    topic=ctx.topics.clock_tasks, retention_days=ctx.settings.retention_days_default,
                                    guard=ctx.settings.volume_guard)

        # No clock-task work after the stop began: the batch is redelivered.
        done = retry.retry_blocking(f"batch of {len(messages)} clock tasks", apply, stop=[stop, ctx.stopping],
                                    on_retry=self._failed, logger=log)
        if done is not None and (done.missed or done.timeouts):
            log.info("clock tasks: %d tasks -> %d missed, %d timeouts, %d incidents opened in %.2fs",
                     len(messages), done.missed, done.timeouts, done.incidents_opened,
                     time.perf_counter() - started)

    def _failed(self, exc: BaseException) -> None:
        clock_metrics.error(clock_metrics.TASKS, exc)
        self.close()  # the connection may be broken: a new one for the retry

    def _connection(self) -> psycopg.Connection[Any]:
        # jit off like the pools' connections (consumers.context.NO_JIT): the outbox insert of
        # a batch of 5,000 incident events is estimated in the millions and spent ≈ 1.4 s of
        # its ≈ 1.6 s compiling (BENCHMARKS.md, clock section).
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._ctx.settings.effective_database_url(), autocommit=True,
                                         application_name=f"cronpipe-{self._ctx.consumer_group}-clock-tasks",
                                         options=NO_JIT)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def task_consumer(ctx: WorkerContext, applier: TaskApplier) -> BatchConsumer:
    """A batch consumer of ``monitors-clock-tasks`` handing its batches to ``applier``."""
    topic = ctx.topics.clock_tasks
    return BatchConsumer(bootstrap=ctx.settings.kafka_bootstrap, topic=topic,
                         group_id=f"{ctx.consumer_group}-clock-tasks",
                         stored_offsets=stored_offsets_of(ctx.pool, ctx.consumer_group, topic),
                         handle=applier, batch_size=TASK_BATCH_SIZE, batch_within_s=TASK_BATCH_WITHIN_S,
                         stopping=ctx.stopping)


def _consume_tasks(ctx: WorkerContext, stop: threading.Event) -> None:
    applier = TaskApplier(ctx)
    try:
        task_consumer(ctx, applier).run(stop)
    finally:
        applier.close()


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Tick dispatch (a faust agent on ``monitors-clock-tick``) and task application
    (:data:`TASK_CONSUMERS` batch consumers of ``monitors-clock-tasks``, faust tasks)."""
    group = ctx.consumer_group
    tick_topic = app.topic(ctx.topics.clock_tick, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    sink = KafkaTaskSink(ctx.settings.kafka_bootstrap, ctx.topics.clock_tasks)
    settings = ctx.settings
    guard = Guard(settings.volume_abnormal_pct, settings.volume_incident_pct) if settings.volume_guard else None

    def dispatch(tick: datetime, partition: int, offset: int) -> None:
        with ctx.pool.connection() as conn:
            result = dispatch_tick(conn, sink, tick, group=group, topic=ctx.topics.clock_tick,
                                   partition=partition, offset=offset, guard=guard)
        if result is None:
            return  # a redelivery
        clock_metrics.TICKS_DISPATCHED.inc()
        clock_metrics.TASKS_DISPATCHED.labels("mark_missing").inc(result.missing)
        clock_metrics.TASKS_DISPATCHED.labels("mark_timeout").inc(result.timeouts)
        if guard is not None:
            metrics.observe_decision(result.decision)

    dispatch_failed = functools.partial(clock_metrics.error, clock_metrics.DISPATCH)

    @app.agent(tick_topic, concurrency=1, name=f"{group}-clock-dispatch")
    async def clock_dispatch(stream: faust.StreamT[bytes]) -> None:
        ctx.health.set_agent("clock_dispatch", "running")
        try:
            async for event in stream.events():
                message = event.message
                try:
                    tick = datetime.fromtimestamp(decode_clock_tick(message.value).ts, UTC)
                except MessageDecodeError as exc:
                    log.error("undecodable clock tick @%d skipped: %s", message.offset, exc)
                    clock_metrics.UNDECODABLE.labels("tick").inc()
                    continue
                work = functools.partial(asyncio.to_thread, dispatch, tick, message.partition, message.offset)
                try:
                    await retry.retry_async(f"tick {tick:%Y-%m-%dT%H:%M}", work, transient=(TaskSendError,),
                                            stopping=ctx.stopping, logger=log, on_retry=dispatch_failed)
                except StoreError as exc:  # permanent: a bug or a bad schema
                    dispatch_failed(exc)
                    await retry.stop_worker(app, ctx, "clock dispatch", exc, logger=log)
        finally:
            ctx.health.set_agent("clock_dispatch", "stopped")

    consumers = itertools.count()

    async def consume_tasks() -> None:
        name = f"clock_tasks-{next(consumers)}"
        ctx.health.set_agent(name, "running")
        try:
            await retry.run_in_own_thread(functools.partial(_consume_tasks, ctx), name="clock-tasks")
        except StoreError as exc:
            clock_metrics.error(clock_metrics.TASKS, exc)
            await retry.stop_worker(app, ctx, "clock tasks", exc, logger=log)
        except Exception as exc:  # a bug: never skip the batch
            clock_metrics.error(clock_metrics.TASKS, exc)
            await retry.stop_worker(app, ctx, "clock tasks", exc, logger=log, traceback=True)
        finally:
            ctx.health.set_agent(name, "stopped")

    # Several consumers of one group split the task partitions; tasks are keyed by
    # environment, so their batches never touch the same rows and run in parallel.
    for _ in range(TASK_CONSUMERS):
        app.task(consume_tasks)
