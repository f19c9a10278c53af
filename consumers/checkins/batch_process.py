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
(:func:`shared_limiter`): with batch processes the limiter lives in a small server
process of its own (``multiprocessing.managers``), called only for batches with dead
letters, so the limit still counts every dead letter of the worker.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.managers import BaseManager
from typing import cast

from consumers.checkins.batch import RawEvent, handle_batch_isolating_poison
from consumers.checkins.dlq import DeadLetter, DlqLimiter, DlqPolicy
from consumers.checkins.processing import ProcessorConfig
from consumers.context import BatchCommitted, WorkerContext, build_context
from schemas.settings import Settings
from schemas.topics import Topics

__all__ = ["BatchRunner", "LockedLimiter", "Row", "shared_limiter"]

#: One message as it crosses to the batch process: a :class:`RawEvent`'s fields, which
#: pickle faster as a tuple than as a dataclass.
Row = tuple[int, int, float, bytes | None, bytes]


@dataclass
class LockedLimiter(DlqLimiter):
    """A :class:`DlqLimiter` several threads may call at once (readers in one process, or
    the batch processes' calls served by the limiter's server, one thread each)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def admit(self, letters: Iterable[DeadLetter], now: float) -> set[int | None]:
        with self._lock:
            return super().admit(letters, now)

    def first_report(self, project: int | None, now: float) -> bool:
        with self._lock:
            return super().first_report(project, now)


class _LimiterServer(BaseManager):
    pass


_LimiterServer.register("LockedLimiter", LockedLimiter, exposed=("admit", "first_report"))


def shared_limiter(ctx: WorkerContext, readers: int) -> tuple[DlqLimiter | None, Callable[[], None]]:
    """The DLQ limiter every runner of the worker uses, and how to stop it. None for one
    batch process (it keeps its own, no server needed); with batch processes a proxy to
    the limiter in its server process, which exits with the worker even on SIGKILL."""
    if not ctx.batch_process:
        return LockedLimiter(ctx.dlq), lambda: None
    if readers == 1:
        return None, lambda: None
    server = _LimiterServer(ctx=multiprocessing.get_context("spawn"))
    server.start(initializer=_init_limiter_server, initargs=(os.getpid(),))
    proxy = server.LockedLimiter(ctx.dlq)  # type: ignore[attr-defined]
    return cast(DlqLimiter, proxy), server.shutdown


def _init_limiter_server(parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped by the parent, after the runners
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)


class BatchRunner:
    """Commits batches of :data:`Row` one after the other, off the caller's thread, with
    ``limiter`` (see :func:`shared_limiter`; None: a batch process's own)."""

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
    _exit_with_parent(os.getppid())
    global _CHILD
    ctx = build_context(settings, topics, consumer_group=group, processor=processor)
    ctx.dlq = dlq
    _CHILD = (ctx, limiter or DlqLimiter(dlq))


def _exit_with_parent(parent: int) -> None:
    """A killed worker (SIGKILL) cannot shut its batch process down: the child notices the
    new parent and exits (a transaction in flight rolls back; its batch is redelivered)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _handle_in_child(rows: list[Row]) -> BatchCommitted | None:
    assert _CHILD is not None, "the batch process was not initialized"
    ctx, limiter = _CHILD
    return _handle_rows(ctx, limiter, rows)
