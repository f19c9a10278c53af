"""The worker's maintenance task: a retention pass every ``CRONPIPE_MAINTENANCE_INTERVAL``
seconds (0: never), the first one an interval after the worker starts.

Only faust's leader runs it (``on_leader``, like the clock pulses); the pass's advisory
lock also keeps a leader change or a concurrent ``cronpipe maintain`` from running a
second pass at the same time (that one returns ``skipped``).
The pass runs in a thread (DETACH ... CONCURRENTLY waits for older transactions); a stop
request lets the statement in flight finish and skips the rest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone

import faust

from consumers import retry
from consumers.context import WorkerContext
from consumers.maintenance.plan import config_from_settings
from consumers.maintenance.run import Summary, maintain

log = logging.getLogger("cronpipe.maintenance")


def register(app: faust.App, ctx: WorkerContext) -> None:
    interval = ctx.settings.maintenance_interval_s
    if interval <= 0:
        return

    # Leader only, as the clock's pulses: faust's leader election needs its leader topic.
    app.conf.topic_disable_leader = False

    async def maintenance() -> None:
        await run_pass(ctx)

    # Called, not used as a decorator: faust types its decorators loosely.
    app.timer(interval, on_leader=True)(maintenance)


async def run_pass(ctx: WorkerContext) -> Summary | None:
    """One pass in a thread; errors are logged, never fatal (the next pass retries)."""
    stop = threading.Event()
    return await retry.finish_even_if_cancelled(asyncio.to_thread(_pass, ctx, stop), on_cancel=stop.set)


def _pass(ctx: WorkerContext, stop: threading.Event) -> Summary | None:
    try:
        summary = maintain(ctx.settings.effective_database_url(), datetime.now(timezone.utc),
                           config_from_settings(ctx.settings), progress=log.info, should_stop=stop.is_set)
    except Exception:  # a failed pass must not stop ingestion; the next one starts over
        log.exception("maintenance pass failed")
        return None
    log.info("maintenance pass: %s", summary.as_json())
    return summary
