"""What every agent of the faust worker shares: settings, topics, the database pool, a
Kafka producer, and the hooks run after each committed batch.

Built once per worker by :func:`build_context`; tests build one against their own
database and topics and may swap the producer for their own :class:`KafkaSender`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from confluent_kafka import Producer
from psycopg_pool import ConnectionPool

from consumers.checkins.batch_state import ProcessorConfig
from consumers.checkins.dlq import DlqLimitExceeded, DlqPolicy
from consumers.health import WorkerHealth
from consumers.pools import CappedPool
from schemas.settings import Settings
from schemas.topics import Topics

#: Kafka message headers, as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]


class KafkaSender(Protocol):
    """The small producer surface the consumers need (DLQ messages, clock ticks)."""

    def produce(self, topic: str, value: bytes, *, key: bytes | None = None,
                headers: Headers | None = None, partition: int | None = None) -> None: ...

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every queued message; return how many are still undelivered."""
        ...


class ConfluentSender:
    """KafkaSender on confluent-kafka: idempotent, acks=all, lz4."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "compression.type": "lz4", "linger.ms": 5})

    def produce(self, topic: str, value: bytes, *, key: bytes | None = None,
                headers: Headers | None = None, partition: int | None = None) -> None:
        if partition is None:
            self._producer.produce(topic, value=value, key=key, headers=headers)
        else:
            self._producer.produce(topic, value=value, key=key, headers=headers, partition=partition)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout))


@dataclass(frozen=True)
class BatchCommitted:
    """One batch of ``topic`` has committed: its partitions' next offsets and clock minutes."""

    topic: str
    #: partition → next offset to consume (the stored consumer offset).
    next_offsets: dict[int, int]
    #: partition → newest message timestamp of the batch, floored to the minute (UTC).
    clocks: dict[int, datetime]
    #: project (None: unattributed) → dead letters the batch sent (for the worker's health).
    dead_letters: dict[int | None, int] = field(default_factory=dict)


@dataclass
class WorkerContext:
    settings: Settings
    topics: Topics
    pool: ConnectionPool
    producer: KafkaSender
    #: Run after each batch commits, in order, on the worker's event loop thread.
    after_commit: list[Callable[[BatchCommitted], None]] = field(default_factory=list)
    #: The name offsets are stored under in ``consumer_offsets`` (and the faust app id).
    consumer_group: str = "cronpipe"
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    dlq: DlqPolicy = field(default_factory=DlqPolicy)
    batch_size: int = 2000
    batch_within_s: float = 0.2
    #: Run each check-in batch in a child process (``cronpipe worker`` does; tests run in-process).
    batch_process: bool = False
    #: Set when an agent stops the worker on purpose (e.g. the DLQ limit); the exit cause.
    fatal: BaseException | None = None
    #: Called by :func:`close_context`, last added first (e.g. the batch process's shutdown).
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Set when the worker begins to stop: no new clock-task work starts after it.
    stopping: threading.Event = field(default_factory=threading.Event)
    #: Called with the reason when the stop begins (``cronpipe worker``: the shutdown deadline).
    on_stop: list[Callable[[str], None]] = field(default_factory=list)
    #: Liveness and readiness, served by ``cronpipe worker`` (consumers.health).
    health: WorkerHealth = field(default_factory=WorkerHealth)

    def notify_committed(self, committed: BatchCommitted) -> None:
        self.health.committed(committed.dead_letters, time.time())
        for hook in self.after_commit:
            hook(committed)

    def begin_stop(self, reason: str) -> None:
        self.stopping.set()
        self.health.stop(reason)
        for hook in self.on_stop:
            hook(reason)

    def stop_fatally(self, exc: BaseException) -> None:
        """An agent stops the worker on purpose (the DLQ limit, a bug): the exit cause."""
        self.fatal = self.fatal or exc
        self.health.fail(f"{type(exc).__name__}: {exc}", dlq_exceeded=isinstance(exc, DlqLimitExceeded))
        self.begin_stop(f"{type(exc).__name__}: {exc}")


#: PostgreSQL's JIT compiles a plan whose *estimated* cost passes jit_above_cost (100,000):
#: the outbox insert of a batch with a few hundred incident events was estimated in the
#: millions and spent 1-3 s per batch compiling (BENCHMARKS.md, "the outbox regression")
#: for an execution of milliseconds. The consumers' statements are all short index work.
#: Every connection the worker opens for them takes it: the pools' and the clock tasks' own
#: (``consumers.clock.runner.TaskApplier``, whose batch of 5,000 incident events compiled ≈ 1.4 s).
NO_JIT = "-c jit=off"


def build_context(settings: Settings, topics: Topics, *, consumer_group: str = "cronpipe",
                  processor: ProcessorConfig | None = None, pool_size: int = 4) -> WorkerContext:
    """A context with a real pool and producer; close it with :func:`close_context`."""
    pool = CappedPool(settings.effective_database_url(), max_delay_s=settings.pool_reconnect_max_s,
                      min_size=1, max_size=pool_size, open=True,
                      kwargs={"application_name": f"cronpipe-{consumer_group}", "options": NO_JIT})
    return WorkerContext(settings=settings, topics=topics, pool=pool,
                         producer=ConfluentSender(settings.kafka_bootstrap), consumer_group=consumer_group,
                         processor=processor or ProcessorConfig(),
                         dlq=DlqPolicy(settings.dlq_limit, settings.dlq_window_s, settings.dlq_project_budget),
                         health=WorkerHealth(settings.dlq_limit, settings.dlq_window_s, settings.dlq_project_budget))


def close_context(ctx: WorkerContext) -> None:
    for close in reversed(ctx.closers):
        close()
    ctx.producer.flush(10)
    ctx.pool.close()
