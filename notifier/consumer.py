"""``monitors-incidents`` → delivery state, with the offsets stored beside it.

A confluent-kafka consumer in a thread reads batches; each batch's events, their
deliveries and the consumed offsets commit in one PostgreSQL transaction
(``store.record_events``). On every assignment the consumer seeks to the offsets
PostgreSQL holds, so a restart resumes exactly after the last committed batch, and an
event consumed twice (the relay publishes at least once) collapses on its event id.

Failures follow the consumers' rule (schemas.retry, on the boundary of schemas.database):
a transient one (database down) backs off and reads the batch again from the stored
offsets; a permanent one propagates and stops the notifier (notifier.service).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from notifier import store
from schemas.incident_events import IncidentEvent, IncidentEventError, decode_incident_event
from schemas.retry import Backoff, retry_blocking

__all__ = ["EventConsumer"]

log = logging.getLogger("cronpipe.notifier")

BATCH_SIZE = 1000
POLL_S = 0.25
#: Waits between attempts while the database is down: 0.5, 1, then every 2 s.
BACKOFF = Backoff(first_s=0.5, cap_s=2.0)


class EventConsumer:
    def __init__(self, bootstrap: str, topic: str, group: str, connect: Callable[[], Any],
                 on_commit: Callable[[set[int]], None]) -> None:
        """``on_commit`` is called (in this thread) after each committed batch with the ids
        of the channels that got new deliveries."""
        self._topic = topic
        self._group = group
        self._connect = connect
        self._on_commit = on_commit
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                   "session.timeout.ms": 10_000,
                                   # Deliver promptly at low rates (librdkafka waits 500 ms by default).
                                   "fetch.wait.max.ms": 20})
        self._consumer.subscribe([topic], on_assign=self._on_assign)
        #: Set by a batch that did not commit: the next attempt first seeks back to the
        #: stored offsets, so that batch is read again.
        self._rewind_first = False

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self._connect() as conn:
            stored = store.load_all_offsets(conn, self._group, self._topic)
        for tp in partitions:
            if tp.partition in stored:
                tp.offset = stored[tp.partition]
        consumer.assign(partitions)

    def run_once(self) -> bool:
        """Consume and record one batch; True when there were messages.

        Waits up to POLL_S for a first message, then takes only what is already fetched
        (``consume`` with a count waits out its whole timeout when fewer arrive): one
        event is recorded as soon as it arrives, a burst still in batches."""
        first = self._consumer.poll(POLL_S)
        if first is None:
            return False
        raw = [first, *self._consumer.consume(BATCH_SIZE - 1, 0)]
        events: list[IncidentEvent] = []
        offsets: dict[int, int] = {}
        for m in raw:
            if m.error() is not None:
                log.warning("notifier consumer: %s", m.error())
                continue
            partition, offset = m.partition(), m.offset()
            assert partition is not None and offset is not None
            offsets[partition] = max(offsets.get(partition, 0), offset + 1)
            try:
                events.append(decode_incident_event(m.value() or b""))
            except IncidentEventError as exc:
                log.error("undecodable incident event [%d]@%d skipped: %s", partition, offset, exc)
        if offsets:
            with self._connect() as conn:
                created = store.record_events(conn, events, group=self._group, topic=self._topic,
                                              next_offsets=offsets)
            self._on_commit(set(created))
        return bool(raw)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; a permanent failure (StoreError, a bug) propagates."""
        try:
            while not stop.is_set():
                retry_blocking("notifier batch", self._attempt, stop=[stop], backoff=BACKOFF,
                               on_retry=self._on_retry, logger=log)
        finally:
            self._consumer.close()

    def _on_retry(self, exc: BaseException) -> None:
        self._rewind_first = True

    def _attempt(self) -> bool:
        """One batch, after the rewind a failed one asked for (retried with it if the
        database is still down: a batch is never read past uncommitted)."""
        if self._rewind_first:
            self._rewind()
            self._rewind_first = False
        return self.run_once()

    def _rewind(self) -> None:
        """Seek back to the stored offsets, so the batch that did not commit is read again."""
        with self._connect() as conn:
            stored = store.load_all_offsets(conn, self._group, self._topic)
        for tp in self._consumer.assignment():
            self._consumer.seek(TopicPartition(self._topic, tp.partition, stored.get(tp.partition, 0)))
