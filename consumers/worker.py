"""`cronpipe worker`: run the faust worker with some or all agents.

SIGTERM/SIGINT stop the worker gracefully: the batch in flight commits (see
``consumers.checkins.runner.CheckInProcessor``), then the process exits 0. Tests use
:func:`running_app` to run the same agents in-process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

import faust

from consumers.app import UnknownAgent, create_app, resolve_agents
from consumers.checkins.processing import DEFAULT_RATE_LIMIT, ProcessorConfig
from consumers.context import WorkerContext, build_context, close_context
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

log = logging.getLogger("cronpipe.worker")


def run_worker(settings: Settings, agents: list[str], loglevel: str) -> int:
    """Ensure topics, build the context and the app, run until stopped; the exit code."""
    try:
        names = resolve_agents(agents)
    except UnknownAgent as exc:
        log.error("%s", exc)
        return 2
    topics = Topics(prefix=settings.topic_prefix)
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    app_id = f"{settings.topic_prefix}cronpipe"
    ctx = build_context(settings, topics, consumer_group=app_id, processor=processor_config())
    ctx.batch_process = os.environ.get("CRONPIPE_BATCH_PROCESS", "1") != "0"
    try:
        app = create_app(ctx, names, app_id=app_id)
        worker = faust.Worker(app, loglevel=loglevel, override_logging=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    finally:
        close_context(ctx)
    if ctx.fatal is not None:
        log.error("worker stopped: %s", ctx.fatal)
        return 1
    return code


def processor_config() -> ProcessorConfig:
    """``CRONPIPE_CHECKIN_RATE_LIMIT``: check-ins per monitor environment and message minute
    (default 6, Sentry's; 0 turns the limit off, e.g. for load tests with few monitors)."""
    raw = os.environ.get("CRONPIPE_CHECKIN_RATE_LIMIT", str(DEFAULT_RATE_LIMIT))
    try:
        return ProcessorConfig(rate_limit=int(raw), retention_days_default=Settings().retention_days_default)
    except ValueError:
        raise SystemExit(f"CRONPIPE_CHECKIN_RATE_LIMIT must be an integer, not {raw!r}") from None


@contextlib.asynccontextmanager
async def running_app(ctx: WorkerContext, agents: list[str], *, app_id: str | None = None) -> AsyncIterator[faust.App]:
    """Start a faust app with ``agents`` in this event loop; stop it on exit."""
    app = create_app(ctx, agents, app_id=app_id or ctx.consumer_group)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


__all__ = ["build_context", "close_context", "run_worker", "running_app"]
