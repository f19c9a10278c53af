"""The faust application: one app per worker, agents added by name.

Each agent module exposes ``register(app, ctx)``; they are imported lazily so that a
worker running only some agents does not need the others' modules. Not every "agent" is
a faust agent: the check-in reader and the clock-task consumers are faust tasks running a
confluent-kafka batch consumer each (``consumers.batch_consumer``), the relay and the
maintenance are tasks reading no topic.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Sequence

import faust
from faust.app import BootStrategy
from faust.tables import TableManager

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
        # faust's consumer reads only the clock ticks, whose offsets live in PostgreSQL
        # (a redelivered tick is skipped): Kafka's offsets only say where to start reading.
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A killed worker's partitions move to its successor after this long (default 60 s).
        broker_session_timeout=20.0,
        producer_acks=-1,
        TableManager=TablelessManager,
    )
    for name in resolve_agents(agents):
        module_name, function = AGENTS[name].split(":")
        register = getattr(importlib.import_module(module_name), function)
        register(app, ctx)
    if not app.agents and app.conf.topic_disable_leader:
        # Nothing for faust's own consumer to subscribe to (e.g. `--agents checkins`):
        # started anyway, it crashes the worker ("provide either topics or pattern").
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    return app
