"""Where a check-in batch runs: the worker's batch process, or a thread (tests).

``cronpipe worker`` writes each batch in **a child process** (``CRONPIPE_BATCH_PROCESS``,
default 1; spawn, its own pool and producer, the same
:func:`~consumers.checkins.batch.handle_batch_isolating_poison`), so that reading Kafka
and the processing use two cores instead of sharing one GIL. Tests run the same code in
a thread (``ctx.batch_process`` False). Either way one batch at a time, in the order
handed over; :meth:`BatchRunner.submit` returns a future at once.

The child ignores SIGTERM/SIGINT (the parent drains, then shuts it down) and exits by
itself when its parent dies (SIGKILL): a transaction in flight then rolls back and its
batch is redelivered. The stop deadline SIGKILLs it (``consumers.shutdown``).

Several readers (``CRONPIPE_CHECKIN_READERS``) have a runner each but one DLQ limit
(``consumers.checkins.dlq_server.shared_limiter``).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from consumers.checkins.batch import RawEvent, handle_batch_isolating_poison
from consumers.checkins.batch_state import ProcessorConfig
from consumers.checkins.dlq import DlqLimiter, DlqPolicy
from consumers.context import BatchCommitted, WorkerContext, build_context
from consumers.shutdown import exit_with_parent
from schemas.settings import Settings
from schemas.topics import Topics

__all__ = ["BatchRunner", "Row"]

#: One message as it crosses to the batch process: a :class:`RawEvent`'s fields, which
#: pickle faster as a tuple than as a dataclass.
Row = tuple[int, int, float, bytes | None, bytes]


class BatchRunner:
    """Commits batches of :data:`Row` one after the other, off the caller's thread, with
    ``limiter`` (``consumers.checkins.dlq_server.shared_limiter``; None: a batch
    process's own)."""

    def __init__(self, ctx: WorkerContext, limiter: DlqLimiter | None = None) -> None:
        self._executor: Executor
        if ctx.batch_process:
            # spawn, not fork: the parent already runs threads (librdkafka, faust's).
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_child,
                initargs=(ctx.settings, ctx.topics, ctx.consumer_group, ctx.processor, ctx.dlq, limiter))
            self._handle = _handle_in_child
            # Spawned now, from this (the main) thread, not at the first batch: its start-up
            # (imports, pool, producer) is off the first batch's latency, and it is a child of
            # the worker's main thread, where /proc/PID/task/PID/children lists it.
            self._executor.submit(_started).result()
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkin-batch")
            self._handle = functools.partial(_handle_rows, ctx, limiter or DlqLimiter(ctx.dlq))

    def submit(self, rows: list[Row]) -> Future[BatchCommitted | None]:
        """Start committing ``rows``; the future raises what the batch raised
        (StoreUnavailable: retry it; anything else stops the worker)."""
        return self._executor.submit(self._handle, rows)

    def shutdown(self) -> None:
        """Wait for the batch in flight, then end the process (or thread)."""
        self._executor.shutdown(wait=True)


def _started() -> None:
    pass


def _handle_rows(ctx: WorkerContext, limiter: DlqLimiter, rows: list[Row]) -> BatchCommitted | None:
    return handle_batch_isolating_poison(ctx, limiter, [RawEvent(*row) for row in rows])


_CHILD: tuple[WorkerContext, DlqLimiter] | None = None


def _init_child(settings: Settings, topics: Topics, group: str, processor: ProcessorConfig,
                dlq: DlqPolicy, limiter: DlqLimiter | None) -> None:
    # The parent decides when to stop: it lets the batch in flight finish, then shuts us down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[batch process]: %(message)s")
    exit_with_parent(os.getppid())
    global _CHILD
    ctx = build_context(settings, topics, consumer_group=group, processor=processor)
    ctx.dlq = dlq
    _CHILD = (ctx, limiter or DlqLimiter(dlq))


def _handle_in_child(rows: list[Row]) -> BatchCommitted | None:
    assert _CHILD is not None, "the batch process was not initialized"
    ctx, limiter = _CHILD
    return _handle_rows(ctx, limiter, rows)
