"""``monitors-incidents`` → delivery state, with the offsets stored beside it.

A confluent-kafka consumer in a thread reads batches; each batch's events, their
deliveries and the consumed offsets commit in one PostgreSQL transaction
(``store.record_events``). On every assignment the consumer seeks to the offsets
PostgreSQL holds, so a restart resumes exactly after the last committed batch, and an
event consumed twice (the relay publishes at least once) collapses on its event id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from notifier import store
from schemas.incident_events import IncidentEvent, IncidentEventError, decode_incident_event

__all__ = ["EventConsumer"]

log = logging.getLogger("cronpipe.notifier")

BATCH_SIZE = 1000
POLL_S = 0.25


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

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self._connect() as conn:
            stored = store.load_offsets(conn, self._group, self._topic)
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
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except Exception as exc:  # database down: nothing committed, back off
                    log.warning("notifier batch not committed (%s); retrying", exc)
                    stop.wait(1.0)
                    self._rewind()
        finally:
            self._consumer.close()

    def _rewind(self) -> None:
        """After a failed commit, seek back to the stored offsets so the batch is read again."""
        try:
            with self._connect() as conn:
                stored = store.load_offsets(conn, self._group, self._topic)
            from confluent_kafka import TopicPartition

            for tp in self._consumer.assignment():
                self._consumer.seek(TopicPartition(self._topic, tp.partition, stored.get(tp.partition, 0)))
        except Exception as exc:  # still down: the next attempt rewinds again
            log.warning("cannot rewind to the stored offsets yet (%s)", exc)
