"""One rule for every consumer's failures, and the shielded drain they share.

* **Transient** (:class:`~schemas.database.StoreUnavailable`: connection lost,
  serialization failure, deadlock, a partition dropped meanwhile; plus whatever a caller
  names, e.g. a Kafka producer that could not confirm delivery): nothing was committed, so
  the same work is tried again after a capped exponential back-off (:class:`Backoff`),
  each retry logged as a warning.
* **Permanent** (:class:`~schemas.database.StoreError`: a missing table, a bad schema, a
  bug in the SQL): retrying cannot help. It propagates out of the retry helpers and the
  agent stops the worker loudly with :func:`stop_worker` (CRITICAL line, ``ctx.fatal``,
  ``/livez`` 503, exit 1), the offsets stay where the last commit left them.

:func:`retry_async` retries work awaited on the event loop, :func:`retry_blocking` work
in a thread that owns its loop (a confluent-kafka consumer, the outbox relay; it and
:class:`Backoff` live in :mod:`schemas.retry`, shared with the notifier). Both run
the work inside :func:`~schemas.database.wrap_exceptions`, so no caller sees psycopg's
error types.

:func:`finish_even_if_cancelled` is the drain: a stop request (cancellation) waits for
the work in flight instead of abandoning a transaction half way; :func:`run_in_own_thread`
is the same for a loop running in a dedicated thread, told to stop by a
:class:`threading.Event`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from schemas.database import StoreUnavailable, wrap_exceptions
from schemas.retry import DEFAULT_BACKOFF, Backoff, Transient, retry_blocking

if TYPE_CHECKING:
    import faust

    from consumers.context import WorkerContext

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "finish_even_if_cancelled",
    "retry_async",
    "retry_blocking",
    "run_in_own_thread",
    "stop_worker",
]

log = logging.getLogger("cronpipe.retry")

T = TypeVar("T")




async def retry_async(what: str, work: Callable[[], Awaitable[T]], *, transient: Transient = (),
                      backoff: Backoff = DEFAULT_BACKOFF, stopping: threading.Event | None = None,
                      on_retry: Callable[[BaseException], None] | None = None,
                      on_recovered: Callable[[], None] | None = None,
                      logger: logging.Logger = log) -> T:
    """Await ``work()`` until it succeeds; transient errors back off and retry.

    ``work`` is a factory: each attempt awaits a fresh awaitable. StoreUnavailable and
    the ``transient`` types are retried; anything else (StoreError included) propagates.
    With ``stopping``, once it is set no attempt starts: this waits to be cancelled (the
    work stays uncommitted and is redelivered to the next worker). ``on_retry`` runs
    after each transient failure, ``on_recovered`` after a success that needed retries.
    """
    retried: Transient = (StoreUnavailable, *transient)
    for attempt in itertools.count():
        if stopping is not None and stopping.is_set():
            await _wait_to_be_cancelled()
        try:
            with wrap_exceptions():
                result = await work()
        except retried as exc:
            delay = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(exc)
            logger.warning("%s not committed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            continue
        if attempt and on_recovered is not None:
            on_recovered()
        return result
    raise AssertionError("unreachable")  # itertools.count() never ends


async def finish_even_if_cancelled(work: Awaitable[T], *, on_cancel: Callable[[], None] | None = None,
                                   draining: str | None = None, logger: logging.Logger = log) -> T:
    """Await ``work``; if this is cancelled meanwhile (a stop request), call ``on_cancel``,
    wait for ``work`` to finish (logging ``draining`` if given), then re-raise the
    cancellation. The work in flight is never abandoned half way: SIGTERM drains."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if draining:
            logger.info("%s", draining)
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait([task])
        raise


async def run_in_own_thread(run: Callable[[threading.Event], T], *, name: str) -> T:
    """Run ``run(stop)`` in a dedicated thread; on cancellation set ``stop`` and wait for
    it to return (it finishes its batch first) before re-raising."""
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        work = asyncio.get_running_loop().run_in_executor(pool, run, stop)
        return await finish_even_if_cancelled(work, on_cancel=stop.set)


async def stop_worker(app: faust.App, ctx: WorkerContext, component: str, exc: BaseException, *,
                      logger: logging.Logger = log, traceback: bool = False) -> NoReturn:
    """Stop the worker because of ``exc`` (permanent: retrying cannot help), loudly.

    Logs CRITICAL, records the exit cause (``ctx.stop_fatally``: ``/livez`` answers 503,
    ``cronpipe worker`` exits 1), crashes the faust app, and waits here until the worker
    cancels the caller: it never returns to its stream (which would acknowledge the
    failed work, and faust's supervisor would restart the agent past it). The next start
    resumes from the offsets stored in PostgreSQL.
    """
    if traceback:
        logger.critical("%s stopped by an unexpected error", component, exc_info=exc)
    else:
        logger.critical("%s stopped: %s", component, exc)
    ctx.stop_fatally(exc)
    await app.crash(exc)
    await _wait_to_be_cancelled()


async def _wait_to_be_cancelled() -> NoReturn:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
