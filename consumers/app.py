"""The faust application: one app per worker, agents added by name.

Each agent module exposes ``register(app, ctx)``; they are imported lazily so that a
worker running only some agents does not need the others' modules.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import AsyncGenerator, Sequence
from typing import cast

import faust
from faust.tables import TableManager
from faust.types import EventT

from consumers.context import WorkerContext

#: Agent name → "module:function" registering it.
AGENTS: dict[str, str] = {
    "checkins": "consumers.checkins.runner:register",
    "clock": "consumers.clock.ticks:register",
    "clock_tasks": "consumers.clock.runner:register",
    "relay": "consumers.incidents.relay:register",
    "maintenance": "consumers.maintenance.agent:register",
}


class UnknownAgent(ValueError):
    """An agent name that is not in :data:`AGENTS`."""


def resolve_agents(names: Sequence[str]) -> list[str]:
    """Expand ``all`` and check the names; raises UnknownAgent."""
    wanted = list(AGENTS) if "all" in names else [n.strip() for n in names if n.strip()]
    unknown = [n for n in wanted if n not in AGENTS]
    if unknown:
        raise UnknownAgent(f"unknown agent(s) {', '.join(unknown)}; choose from {', '.join(AGENTS)} or all")
    return wanted


class TablelessManager(TableManager):
    """faust's TableManager for an app that declares no tables.

    faust's ``TableManager.on_start`` first sleeps 1 s, so that tables declared after
    the app has started can still register; only then does it mark the tables
    registered (the conductor waits for that before the consumer subscribes) and start
    the recovery service (which resumes the streams after each assignment). This app
    declares no tables, and every agent is registered in :func:`create_app` before the
    app starts, so the wait only delays each worker start by a second. With no tables,
    the same steps run at once; should a table ever be declared, faust's own start
    (with its wait) runs unchanged. Plugged in through faust's documented
    ``TableManager`` setting.
    """

    async def on_start(self) -> None:
        if len(self):  # tables declared: faust's start, wait included
            await super().on_start()
            return
        await self._update_channels()
        await self.recovery.start()


def create_app(ctx: WorkerContext, agents: list[str], *, app_id: str = "cronpipe") -> faust.App:
    """A faust app (in-memory tables, no web server) with ``agents`` registered.

    faust insists on a data directory; it gets a temporary one, removed by close_context.
    """
    datadir = tempfile.mkdtemp(prefix=f"faust-{app_id}-")
    ctx.closers.append(lambda: shutil.rmtree(datadir, ignore_errors=True))
    app = faust.App(
        app_id,
        broker=f"kafka://{ctx.settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=datadir,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4096, ctx.batch_size * 2),
        broker_commit_interval=1.0,
        # A killed worker's partitions move to its successor after this long (default 60 s).
        broker_session_timeout=20.0,
        # Offsets live in PostgreSQL; Kafka's are only a hint resynced on assignment.
        producer_acks=-1,
        TableManager=TablelessManager,
    )
    for name in resolve_agents(agents):
        module_name, function = AGENTS[name].split(":")
        register = getattr(importlib.import_module(module_name), function)
        register(app, ctx)
    return app


def take_batches(stream: faust.StreamT[bytes], size: int, within_s: float) -> AsyncGenerator[Sequence[EventT[bytes]], None]:
    """Batches of up to ``size`` events, each closed after ``within_s``: faust's
    ``Stream.take_events``, which the ``StreamT`` protocol an agent is typed with lacks."""
    return cast("faust.Stream[bytes]", stream).take_events(size, within_s)

