"""The message-time clock: partition positions → one tick per minute, exactly once.

The check-in processor records, in the transaction of each batch, the newest message
timestamp it committed per partition of ``ingest-monitors`` (floored to the minute, table
``partition_clocks``); after the commit its ``after_commit`` hook wakes a
:class:`ClockTicker`, which runs :func:`advance_clock` off the event loop. The
global clock is the slowest partition; a partition never seen holds the clock back (the
leader's clock pulses keep idle partitions moving). Every minute
boundary the global clock passes is ticked once to ``monitors-clock-tick``, in order,
skipped minutes backfilled.

Exactly once with several processor instances racing, and no tick lost in a crash:

1. In one short transaction: read the positions and ``clock_state.last_tick``, compute
   the due ticks (:func:`due_ticks`), compare-and-set ``last_tick`` from the value read to
   the newest due tick (``rowcount`` tells who won), and record the won ticks in
   ``clock_pending_ticks`` with a claim time. No lock is held after the commit.
2. Only the winner produces its ticks (flushing), then deletes their pending rows.
3. A crash between 1 and 2 leaves pending rows behind; any later advance (by any
   instance) reclaims rows whose claim is older than a lease and produces them again.
   That re-send may duplicate a tick that did reach Kafka before the crash: harmless,
   because dispatch is a "deadline <= T" sweep and every task re-checks its condition.

Order: one winner produces its ticks in order. Two instances that win consecutive CAS
within the same few milliseconds could interleave their produces; dispatch and tasks do
not depend on tick order (a tick T handles everything due by T, an older tick then finds
nothing), so this is documented rather than serialized with a lock across Kafka I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol

import faust
import psycopg
from psycopg_pool import ConnectionPool

from consumers import retry
from consumers.clock import metrics as clock_metrics
from consumers.clock import store as clock_store
from consumers.context import KafkaSender, WorkerContext
from schemas.clock import encode_clock_tick
from schemas.database import StoreError
from schemas.messages import encode_clock_pulse
from schemas.minutes import floor_minute

__all__ = [
    "ClockTicker",
    "KafkaTickSink",
    "TickSendError",
    "TickSink",
    "advance_clock",
    "due_ticks",
    "topic_partitions",
]

log = logging.getLogger("cronpipe.clock")

UTC = timezone.utc
MINUTE: Final = timedelta(minutes=1)
#: At most this many ticks per advance; a longer outage is caught up over several calls.
MAX_TICKS_PER_ADVANCE: Final = 1440
#: A pending tick claimed longer ago than this is presumed orphaned by a crash.
DEFAULT_LEASE: Final = timedelta(seconds=30)
#: Compare-and-set attempts per advance before leaving it to the next call.
CAS_ATTEMPTS: Final = 3
PULSE_INTERVAL_S: Final = 60.0


def due_ticks(positions: Mapping[int, datetime], partitions: int, last_tick: datetime | None,
              limit: int = MAX_TICKS_PER_ADVANCE) -> list[datetime]:
    """The ticks to produce, oldest first, given each partition's position.

    The global clock is the minimum position over partitions ``0..partitions-1``; if any
    of them has no position yet there is no clock and no tick. With no tick so far the
    first tick is the clock itself (no backfill from the beginning of time); otherwise one
    tick per minute after ``last_tick`` up to the clock, at most ``limit``.
    """
    if partitions < 1 or any(p not in positions for p in range(partitions)):
        return []
    clock = floor_minute(min(positions[p] for p in range(partitions)))
    if last_tick is None:
        return [clock]
    count = min(int((clock - last_tick) / MINUTE), limit)
    return [last_tick + MINUTE * i for i in range(1, count + 1)]


# --------------------------------------------------------------------------- producing


class TickSendError(RuntimeError):
    """Ticks could not be confirmed delivered; their pending rows stay for a retry."""


class TickSink(Protocol):
    def send_ticks(self, ticks: Sequence[datetime]) -> None:
        """Deliver the ticks in order; return only when Kafka acknowledged them all,
        raise :class:`TickSendError` otherwise."""


class KafkaTickSink:
    """Produces ticks to ``monitors-clock-tick`` with confluent-kafka (idempotent, acks=all)."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 15.0) -> None:
        from confluent_kafka import Producer

        self._topic = topic
        self._timeout_s = timeout_s
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "linger.ms": 0})

    def send_ticks(self, ticks: Sequence[datetime]) -> None:
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for tick in ticks:
            value = encode_clock_tick(int(tick.timestamp()))
            self._producer.produce(self._topic, value=value, on_delivery=on_delivery)
        if self._producer.flush(self._timeout_s) or errors:
            raise TickSendError(f"ticks not delivered to {self._topic}: {errors or 'flush timed out'}")

    def close(self) -> None:
        self._producer.flush(self._timeout_s)


def _claim_ticks(conn: psycopg.Connection[Any], name: str, topic: str, partitions: int,
                 lease: timedelta) -> list[datetime]:
    """Step 1 (one transaction): win due ticks by CAS and reclaim orphaned pending ones."""
    with conn.transaction():
        positions = clock_store.load_positions(conn, topic)
        clock_metrics.observe_positions(positions, partitions)
        last_tick = clock_store.load_last_tick(conn, name)
        ticks = due_ticks(positions, partitions, last_tick)
        won = bool(ticks) and clock_store.compare_and_set_last_tick(conn, name, last_tick, ticks[-1])
        if won:
            clock_store.add_pending_ticks(conn, name, ticks)
        orphaned = clock_store.reclaim_pending_ticks(conn, name, lease)
    return sorted(set(orphaned) | set(ticks if won else []))


def advance_clock(conn: psycopg.Connection[Any], sink: TickSink, *, topic: str, partitions: int,
                  name: str | None = None, lease: timedelta = DEFAULT_LEASE) -> list[datetime]:
    """Produce every tick the clock of ``topic`` has passed; return the ticks sent.

    ``conn`` must not be inside another transaction. Safe to call from any number of
    processes at once; raises :class:`TickSendError` (ticks stay pending) or psycopg errors.
    """
    name = name or topic
    sent: list[datetime] = []
    for _ in range(CAS_ATTEMPTS):
        ticks = _claim_ticks(conn, name, topic, partitions, lease)
        if not ticks:
            break
        sink.send_ticks(ticks)
        clock_metrics.observe_ticks(ticks)
        with conn.transaction():
            clock_store.delete_pending_ticks(conn, name, ticks)
        sent.extend(ticks)
    return sent


class ClockTicker:
    """Runs :func:`advance_clock` off the event loop whenever a batch of the ingest topic
    commits (the processor's ``after_commit`` hook only wakes it), and every few seconds
    anyway: that also reclaims orphaned pending ticks and serves workers that run the
    clock without the processor."""

    def __init__(self, pool: ConnectionPool, sink: TickSink, topic: str, partitions: Callable[[], int],
                 name: str | None = None, idle_s: float = 5.0) -> None:
        self._pool = pool
        self._sink = sink
        self._topic = topic
        self._partitions = partitions
        self._name = name
        self._idle_s = idle_s
        self._wake = asyncio.Event()

    def on_commit(self, committed: Any) -> None:
        """``after_commit`` hook (event loop thread): wake the ticker for ingest batches."""
        if getattr(committed, "topic", self._topic) == self._topic:
            self._wake.set()

    def advance(self) -> list[datetime]:
        """One advance (in the caller's thread); raises TickSendError or psycopg errors."""
        with self._pool.connection() as conn:
            return advance_clock(conn, self._sink, topic=self._topic, partitions=self._partitions(),
                                 name=self._name)

    async def run(self) -> None:
        """Loop until cancelled. A transient failure (PostgreSQL or Kafka unavailable)
        backs off and retries (consumers.retry); a permanent one (StoreError: a missing
        table, a bug) propagates, and the agent stops the worker."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_s)
            self._wake.clear()
            ticks = await retry.retry_async("clock advance", functools.partial(asyncio.to_thread, self.advance),
                                            transient=(TickSendError,), logger=log,
                                            on_retry=functools.partial(clock_metrics.error, clock_metrics.TICKS))
            if ticks:
                log.info("clock ticked %s", ", ".join(t.strftime("%Y-%m-%dT%H:%M") for t in ticks[-3:]))


# --------------------------------------------------------------------------- pulses


def topic_partitions(bootstrap: str, topic: str, default: int, timeout_s: float = 10.0) -> int:
    """The partition count of ``topic`` as the broker knows it (``default`` if unknown):
    the clock must wait for every partition that exists, not the ones we configured."""
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=timeout_s)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return len(found.partitions)
    except Exception as exc:  # KafkaException has no finer type; the configured count is a safe fallback
        log.warning("cannot read the partitions of %s (%s); assuming %d", topic, exc, default)
    return default


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Tick production (woken by the processor's commits) and the leader's clock pulses."""
    topic = ctx.topics.ingest
    partitions = functools.cache(lambda: topic_partitions(ctx.settings.kafka_bootstrap, topic,
                                                          ctx.topics.ingest_partitions))
    ticker = ClockTicker(ctx.pool, KafkaTickSink(ctx.settings.kafka_bootstrap, ctx.topics.clock_tick),
                         topic, partitions)
    ctx.after_commit.append(ticker.on_commit)
    # Pulses are leader-only, which needs faust's leader election (its leader topic).
    app.conf.topic_disable_leader = False

    async def clock_ticks() -> None:
        ctx.health.set_agent("clock_ticks", "running")
        try:
            await ticker.run()
        except StoreError as exc:  # permanent: retrying cannot help
            clock_metrics.error(clock_metrics.TICKS, exc)
            await retry.stop_worker(app, ctx, "clock", exc, logger=log)
        finally:
            ctx.health.set_agent("clock_ticks", "stopped")

    async def clock_pulses() -> None:
        await asyncio.to_thread(_send_pulses_now, ctx.producer, topic, partitions)

    # Called, not used as decorators: faust types these decorators loosely.
    app.task(clock_ticks)
    app.timer(PULSE_INTERVAL_S, on_leader=True)(clock_pulses)


def _send_pulses_now(producer: KafkaSender, topic: str, partitions: Callable[[], int]) -> None:
    value = encode_clock_pulse()
    for partition in range(partitions()):
        producer.produce(topic, value, partition=partition)
    if producer.flush(10.0):
        log.warning("clock pulses to %s not all delivered; the next minute sends more", topic)
