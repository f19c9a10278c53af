"""A confluent-kafka consumer that hands batches of messages to a handler, in its own
thread, with the consumed offsets kept in PostgreSQL (not in Kafka).

Why not a faust stream: faust spends about 100 µs of Python per event (measured with
``cronpipe bench clock`` and a do-nothing apply: 100,000 clock tasks took 14.5 s), more
than handling a message costs when a tick covers 100,000 monitors. confluent-kafka hands
over thousands of messages per call from C. The consumer still runs inside the faust
worker (a faust task running :meth:`BatchConsumer.run` in a dedicated thread, see
:func:`consumers.retry.run_in_own_thread`).

The contract with the handler, which makes a stream exactly once:

* the handler commits each batch's effects and its next offsets in one PostgreSQL
  transaction (``schemas.database.save_offsets``), and skips messages whose offset is
  below the stored one (a redelivery);
* on every partition assignment the consumer seeks to the stored offsets
  (``stored_offsets``), so a restart or a rebalance resumes exactly after the last
  committed batch. If they cannot be read (the database is down) it starts from the
  earliest message instead: slower, still correct, because redeliveries are skipped;
* Kafka's own committed offsets are never used (``enable.auto.commit`` off).

Nothing here knows what the messages mean: a stream is a topic, a consumer group and a
batch handler. A handler either applies each batch before it returns (a
:data:`BatchHandler`, the clock tasks) or hands it to another process and is waited for
after the next poll (an :class:`OverlappingHandler`, the check-ins), so that reading the
next batch overlaps processing this one; either way one batch per consumer is in flight
and each commits before the next one starts. ``run_once`` can be stepped by tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from schemas import database
from schemas.database import StoreUnavailable, wrap_exceptions

__all__ = ["BatchConsumer", "BatchHandler", "OverlappingHandler", "Record", "stored_offsets_of"]

log = logging.getLogger("cronpipe.batch_consumer")

DEFAULT_BATCH_SIZE: Final = 5000
DEFAULT_BATCH_WITHIN_S: Final = 0.2


@dataclass(frozen=True)
class Record:
    """One Kafka message as a batch handler sees it."""

    partition: int
    offset: int
    #: The message timestamp in seconds (CreateTime unless the topic says otherwise), None if absent.
    timestamp: float | None
    key: bytes | None
    value: bytes | None


#: ``handle(records, stop)``: apply one batch (in partition order) and commit it with its
#: offsets; return once committed, or without committing when ``stop`` is set (the batch
#: is then redelivered to the next owner of the partitions). Raises what must stop the worker.
BatchHandler = Callable[[Sequence[Record], threading.Event], None]


@runtime_checkable
class OverlappingHandler(Protocol):
    """A handler whose batches run elsewhere (another process) while the consumer polls.

    ``submit(records, stop)`` hands one batch over and returns at once; ``wait(stop)``
    blocks until the batch submitted last has committed, or was given up uncommitted
    because of ``stop`` (it is then redelivered to the next owner), and returns at once
    when none is in flight. The consumer calls ``wait`` before every ``submit``, so the
    batches of a partition commit in order. Both raise what must stop the worker.
    """

    def submit(self, records: Sequence[Record], stop: threading.Event) -> None: ...

    def wait(self, stop: threading.Event) -> None: ...


class _Blocking:
    """A :data:`BatchHandler` as an :class:`OverlappingHandler` that overlaps nothing."""

    def __init__(self, handle: BatchHandler) -> None:
        self._handle = handle

    def submit(self, records: Sequence[Record], stop: threading.Event) -> None:
        self._handle(records, stop)

    def wait(self, stop: threading.Event) -> None:
        pass


def stored_offsets_of(pool: Any, group: str, topic: str) -> Callable[[], Mapping[int, int]]:
    """A ``stored_offsets`` loader reading ``consumer_offsets`` through a connection pool."""
    def load() -> Mapping[int, int]:
        with wrap_exceptions(), pool.connection() as conn:
            return database.load_all_offsets(conn, group, topic)

    return load


class BatchConsumer:
    """Reads ``topic`` as member of Kafka group ``group_id`` and hands each batch to ``handle``.

    ``stored_offsets`` returns the next offset per partition as stored in PostgreSQL
    (raising StoreUnavailable when it cannot be read); ``stopping``, when set, means the
    worker began to stop: no batch is handed over after it and :meth:`run` returns.
    ``config`` adds or overrides librdkafka settings.
    """

    def __init__(self, *, bootstrap: str, topic: str, group_id: str,
                 stored_offsets: Callable[[], Mapping[int, int]], handle: BatchHandler | OverlappingHandler,
                 batch_size: int = DEFAULT_BATCH_SIZE, batch_within_s: float = DEFAULT_BATCH_WITHIN_S,
                 stopping: threading.Event | None = None, config: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self._stored_offsets = stored_offsets
        self._handler = handle if isinstance(handle, OverlappingHandler) else _Blocking(handle)
        self._batch_size = batch_size
        self._batch_within_s = batch_within_s
        self._stopping = stopping or threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            **(config or {}),
        })
        self._consumer.subscribe([topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            stored = self._stored_offsets()
        except StoreUnavailable as exc:  # earliest instead: the handler skips redeliveries
            log.warning("%s: stored offsets unavailable on assignment (%s); starting from the earliest",
                        self.topic, exc)
            stored = {}
        for tp in partitions:
            if tp.partition in stored:
                tp.offset = stored[tp.partition]
        consumer.assign(partitions)

    def poll_batch(self) -> list[Record]:
        """Up to ``batch_size`` messages, waiting at most ``batch_within_s`` for them."""
        records: list[Record] = []
        for m in self._consumer.consume(self._batch_size, self._batch_within_s):
            partition, offset = m.partition(), m.offset()
            if m.error() is not None or partition is None or offset is None:
                log.warning("%s consumer: %s", self.topic, m.error() or "a message without a position")
                continue
            kind, ms = m.timestamp()
            timestamp = ms / 1000.0 if kind and ms >= 0 else None
            records.append(Record(partition, offset, timestamp, m.key(), m.value()))
        return records

    def run_once(self, stop: threading.Event) -> bool:
        """Read one batch, wait for the one in flight, hand the new one over; True when
        there were messages. (librdkafka keeps fetching in its own threads meanwhile.)"""
        records = self.poll_batch()
        self._handler.wait(stop)
        if records and not self._stopping.is_set():  # uncommitted: redelivered after the restart
            self._handler.submit(records, stop)
        return bool(records)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` or ``stopping`` is set (the batch in flight finishes
        first), then leave the group."""
        try:
            while not stop.is_set() and not self._stopping.is_set():
                self.run_once(stop)
            self._handler.wait(stop)
        finally:
            self._consumer.close()
