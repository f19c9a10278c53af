"""The message-time clock: partition positions → one tick per minute, exactly once.

The check-in processor records, in the transaction of each batch, the newest message
timestamp it committed per partition of ``ingest-monitors`` (floored to the minute, table
``partition_clocks``), then calls :meth:`ClockAdvancer.advance` after the commit. The
global clock is the slowest partition; a partition never seen holds the clock back (the
leader's clock pulses, :func:`send_pulses`, keep idle partitions moving). Every minute
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
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Protocol

import psycopg

from consumers import clock_store
from schemas.clock import encode_clock_tick
from schemas.messages import encode_clock_pulse

__all__ = [
    "ClockAdvancer",
    "KafkaTickSink",
    "TickSendError",
    "TickSink",
    "advance_clock",
    "due_ticks",
    "floor_minute",
    "send_pulses",
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


def floor_minute(ts: datetime) -> datetime:
    """``ts`` truncated to its minute (aware UTC in, aware UTC out)."""
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


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
        clock_store.delete_pending_ticks(conn, name, ticks)
        sent.extend(ticks)
    return sent


@dataclass
class ClockAdvancer:
    """The processor's after-commit hook: ``advance()`` after every committed batch."""

    connect: Callable[[], psycopg.Connection[Any]]
    sink: TickSink
    topic: str
    partitions: int
    name: str | None = None
    _conn: psycopg.Connection[Any] | None = None

    def advance(self) -> list[datetime]:
        """Produce due ticks; errors are logged, never raised (the next batch retries)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.connect()
            return advance_clock(self._conn, self.sink, topic=self.topic, partitions=self.partitions,
                                 name=self.name)
        except (TickSendError, psycopg.Error) as exc:
            log.warning("clock not advanced (retried after the next batch): %s", exc)
            self._close()
            return []

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- pulses


async def send_pulses(send: Callable[[int, bytes], Any], partitions: int) -> None:
    """Send one ``clock_pulse`` to each partition; ``send(partition, value)`` may be async."""
    value = encode_clock_pulse()
    for partition in range(partitions):
        result = send(partition, value)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result
