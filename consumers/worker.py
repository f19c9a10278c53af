"""`cronpipe worker`: run the faust worker with some or all agents.

SIGTERM/SIGINT stop the worker gracefully: the batch in flight commits (see
``consumers.checkins.runner.CheckInBatches``), then the process exits 0 — within
``CRONPIPE_SHUTDOWN_TIMEOUT`` seconds; after that, or on a second signal, it abandons the
batch in flight and exits 3 (consumers.shutdown). ``CRONPIPE_WORKER_HEALTH_PORT`` serves
liveness and readiness (consumers.health). Tests use :func:`running_app` to run the same
agents in-process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import faust

from consumers import health, logfilter
from consumers.app import UnknownAgent, create_app, resolve_agents
from consumers.checkins.batch_state import ProcessorConfig
from consumers.context import WorkerContext, build_context, close_context
from consumers.shutdown import ShutdownGuard
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
    ctx = build_context(settings, topics, consumer_group=app_id, processor=processor_config(settings))
    ctx.batch_process = settings.batch_process
    ctx.batch_size = settings.checkin_batch_size
    logfilter.install()
    guard = ShutdownGuard(settings.shutdown_timeout_s, ctx.stopping)
    ctx.on_stop.append(guard.begin)
    try:
        with health.serve(ctx.health, settings.bind, settings.worker_health_port):
            try:
                app = create_app(ctx, names, app_id=app_id)
                worker = _Worker(app, guard, loglevel=loglevel, override_logging=False)
                try:
                    worker.execute_from_commandline()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                else:
                    code = 0
            finally:
                close_context(ctx)  # under the deadline too: the batch process may still be finishing
    finally:
        guard.cancel()
    if ctx.fatal is not None:
        log.error("worker stopped: %s", ctx.fatal)
        return 1
    return code


class _Worker(faust.Worker):
    """faust's worker, with the stop deadline started by the first signal (and a second
    signal abandoning at once): mode's own handler ignores repeated signals."""

    def __init__(self, app: faust.App, guard: ShutdownGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    def _on_sigterm(self) -> None:
        self._guard.signalled("SIGTERM")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._guard.signalled("SIGINT")
        super()._on_sigint()


def processor_config(settings: Settings) -> ProcessorConfig:
    """The check-in processor's limits: ``CRONPIPE_CHECKIN_RATE_LIMIT`` (check-ins per monitor
    environment and message minute, default 6, Sentry's; 0 turns the limit off, e.g. for load
    tests with few monitors), ``CRONPIPE_MAX_ENVIRONMENTS_PER_MONITOR`` (default 1000,
    Sentry's) and ``CRONPIPE_RETENTION_DAYS_DEFAULT``."""
    return ProcessorConfig(rate_limit=settings.checkin_rate_limit,
                           max_environments=settings.max_environments_per_monitor,
                           retention_days_default=settings.retention_days_default)


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
