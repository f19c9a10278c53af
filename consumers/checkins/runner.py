"""The check-in reader: ``ingest-monitors`` → the batch process → PostgreSQL, inside the
faust worker but outside faust's per-event path.

faust spends ≈ 100 µs of CPU per event (``cronpipe bench ceilings``: ≈ 9,000–11,000
events/s for a do-nothing agent), below the pipeline's target on its own. So, like the
clock tasks, ``ingest-monitors`` is read by a confluent-kafka
:class:`~consumers.batch_consumer.BatchConsumer` (batches from C, offsets in PostgreSQL,
seek on assignment, Kafka's committed offsets never used) running in a thread of a faust
task. Each batch is handed to the batch process (``consumers.checkins.batch_process``)
and waited for after the next poll, so that librdkafka's fetching and the consumer's own
work overlap the processing of the batch in flight.

:class:`CheckInBatches` is the consumer's handler and carries the failure rule
(``consumers.retry``): a transient failure (PostgreSQL or the DLQ producer unavailable)
backs off and retries the same batch; anything else (the DLQ limit, a permanent database
error, a dead batch process, a bug) propagates and the task stops the worker loudly
(``/livez`` 503, exit 1) without committing the batch. After each commit the worker's
``after_commit`` hooks run on the event loop thread (``ctx.notify_committed``).

Stopping: once ``ctx.stopping`` is set no new batch is handed over; the batch in flight
commits (or is abandoned by the stop deadline, ``consumers.shutdown``) before the
consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Final

import faust

from consumers import metrics, retry
from consumers.batch_consumer import BatchConsumer, Record, stored_offsets_of
from consumers.checkins.batch_process import BatchRunner, Row
from consumers.checkins.dlq import DlqLimitExceeded
from consumers.checkins.dlq_server import shared_limiter
from consumers.context import BatchCommitted, WorkerContext
from schemas.database import StoreError

__all__ = ["CheckInBatches", "checkin_consumer", "register"]

log = logging.getLogger("cronpipe.checkins")
#: librdkafka prefetches up to 64 MB per consumer by default; 16 MB is still several
#: seconds of the target rate (≈ 300 bytes a message) and keeps the worker's RSS down.
PREFETCH: Final = {"queued.max.messages.kbytes": 16_384}


class CheckInBatches:
    """The ``ingest-monitors`` batch handler (an ``OverlappingHandler``): hand a batch to
    the batch runner, then wait until it committed, retrying transient failures."""

    def __init__(self, ctx: WorkerContext, runner: BatchRunner, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._runner = runner
        self._loop = loop
        self._in_flight: tuple[list[Row], Future[BatchCommitted | None]] | None = None

    def submit(self, records: Sequence[Record], stop: threading.Event) -> None:
        rows = [row_of(record) for record in records]
        self._in_flight = (rows, self._runner.submit(rows))

    def wait(self, stop: threading.Event) -> None:
        """Until the batch in flight committed, retrying transient failures also once the
        stop began (the drain): the batch may still commit if the database returns in
        time; the stop deadline (consumers.shutdown) is what abandons it, uncommitted."""
        if self._in_flight is None:
            return
        rows, first = self._in_flight
        self._in_flight = None
        attempts = [first]

        def attempt() -> BatchCommitted | None:
            return (attempts.pop() if attempts else self._runner.submit(rows)).result()

        committed = retry.retry_blocking(f"batch of {len(rows)}", attempt, stop=(), on_retry=self._retrying,
                                         on_recovered=self._ctx.health.recovered, logger=log)
        if committed is not None:
            self._loop.call_soon_threadsafe(self._ctx.notify_committed, committed)

    def _retrying(self, exc: BaseException) -> None:
        metrics.BATCH_RETRIES.inc()
        self._ctx.health.retry(str(exc), time.time())


def row_of(record: Record) -> Row:
    # A broker always stamps a message (CreateTime or LogAppendTime); "now" is only the
    # fallback for a record without one, never 1970 (a day partition per check-in's date).
    timestamp = time.time() if record.timestamp is None else record.timestamp
    return (record.partition, record.offset, timestamp, record.key, record.value or b"")


def checkin_consumer(ctx: WorkerContext, handler: CheckInBatches, group_id: str) -> BatchConsumer:
    """A batch consumer of ``ingest-monitors`` (Kafka group ``group_id``) handing its batches
    to ``handler``; offsets are the ones stored under ``ctx.consumer_group``."""
    topic = ctx.topics.ingest
    return BatchConsumer(bootstrap=ctx.settings.kafka_bootstrap, topic=topic, group_id=group_id,
                         stored_offsets=stored_offsets_of(ctx.pool, ctx.consumer_group, topic),
                         handle=handler, batch_size=ctx.batch_size, batch_within_s=ctx.batch_within_s,
                         stopping=ctx.stopping, config=PREFETCH)


def _read_checkins(ctx: WorkerContext, runner: BatchRunner, loop: asyncio.AbstractEventLoop, group_id: str,
                   stop: threading.Event) -> None:
    checkin_consumer(ctx, CheckInBatches(ctx, runner, loop), group_id).run(stop)


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Add ``ctx.settings.checkin_readers`` check-in readers: faust tasks, each running a
    batch consumer in its own thread with its own batch runner (started here, shut down
    by close_context) and one DLQ limit for all. Several readers split the partitions of
    one Kafka group, named after the app (a new app id is a fresh group: the offsets
    that count are in PostgreSQL, under ctx.consumer_group)."""
    readers = ctx.settings.checkin_readers
    limiter, stop_limiter = shared_limiter(ctx, readers)
    ctx.closers.append(stop_limiter)  # closers run last added first: after the runners
    for _ in range(readers):
        runner = BatchRunner(ctx, limiter)
        ctx.closers.append(runner.shutdown)
        app.task(_reader_task(app, ctx, runner))


def _reader_task(app: faust.App, ctx: WorkerContext, runner: BatchRunner) -> Callable[[], Awaitable[None]]:
    """The faust task of one reader. All readers report as the one agent ``checkins`` in
    the worker's health: running while all run, stopped once one stopped."""
    group_id = f"{app.conf.id}-checkins"

    async def read_checkins() -> None:
        ctx.health.set_agent("checkins", "running")
        read = functools.partial(_read_checkins, ctx, runner, asyncio.get_running_loop(), group_id)
        try:
            await retry.run_in_own_thread(read, name="checkins")
        except (DlqLimitExceeded, StoreError) as exc:
            await retry.stop_worker(app, ctx, "check-in processor", exc, logger=log)
        except Exception as exc:  # a dead batch process or a bug outside handle_batch: never skip the batch
            await retry.stop_worker(app, ctx, "check-in processor", exc, logger=log, traceback=True)
        finally:
            ctx.health.set_agent("checkins", "stopped")

    return read_checkins
