"""The outbox relay: ``incident_outbox`` → ``monitors-incidents``, at least once.

One step (:meth:`OutboxRelay.run_once`) runs in one transaction: take the relay's
advisory lock (so several workers are safe and only one publishes at a time, which keeps
each environment's events in order), read the oldest unsent rows, publish them (key: the
monitor environment id), wait for Kafka's acknowledgement of every one, then mark them
sent and commit. A crash or a broker error before the commit leaves the rows unsent and
the next step publishes them again, with the same ``event_id``: duplicates are possible,
losses are not. Rows of transactions that rolled back never existed.

Between steps the relay waits for the outbox trigger's NOTIFY (sent when a transaction
that wrote or released outbox rows commits), not for a poll interval: a committed event
is picked up within milliseconds, and an idle relay sends no queries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import faust
import psycopg
from confluent_kafka import KafkaError, Message, Producer

from consumers import retry
from consumers.context import WorkerContext
from schemas.database import StoreError
from schemas.incident_events import IncidentEventError, complete_event

__all__ = ["OutboxRelay", "RelayError", "register"]

log = logging.getLogger("cronpipe.relay")

#: pg_try_advisory_xact_lock key of the relay ("relay" in ASCII).
RELAY_LOCK: Final = 0x72656C6179
BATCH_SIZE: Final = 2000
#: Channel the outbox trigger (0012_alert_routing.sql) NOTIFYs when a transaction that
#: wrote or released outbox rows commits.
OUTBOX_CHANNEL: Final = "cronpipe_outbox"
#: Longest wait without a notification before the relay looks anyway (a safety net: a
#: notification sent while the relay was reconnecting is covered by the step it runs first).
POLL_INTERVAL_S: Final = 1.0
#: Back-off after a failed step: 0.5, 1, 2, 4, then every 5 s (consumers.retry).
RETRY_BACKOFF: Final = retry.Backoff(first_s=0.5, cap_s=5.0)

UNSENT = """
SELECT id, event_id, monitor_environment_id, payload FROM incident_outbox
 WHERE sent_at IS NULL AND NOT held ORDER BY id LIMIT %(limit)s
"""
MARK_SENT = "UPDATE incident_outbox SET sent_at = now() WHERE id = ANY(%(ids)s::bigint[])"


class RelayError(RuntimeError):
    """Kafka did not acknowledge every event of a step (nothing was marked sent)."""


class OutboxRelay:
    """Publishes the outbox; ``run_once`` is one step (True: more rows are waiting)."""

    def __init__(self, database_url: str, bootstrap: str, topic: str, *, batch_size: int = BATCH_SIZE) -> None:
        self._url = database_url
        self._topic = topic
        self._batch_size = batch_size
        self._conn: psycopg.Connection[Any] | None = None
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "linger.ms": 2, "compression.type": "lz4"})

    def run_once(self) -> bool:
        conn = self._connection()
        with conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RELAY_LOCK,)).fetchone()
            if not (locked and locked[0]):
                return False  # another worker's relay is publishing
            rows = conn.execute(UNSENT, {"limit": self._batch_size}).fetchall()
            if rows:
                self._publish(rows)
                conn.execute(MARK_SENT, {"ids": [r[0] for r in rows]})
        return len(rows) == self._batch_size

    def _publish(self, rows: list[tuple[Any, ...]]) -> None:
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for _id, event_id, env_id, payload in rows:
            try:
                value = complete_event(payload).to_json()
            except IncidentEventError as exc:
                # A bug in the outbox query, not the broker's fault: skip the row (it is
                # marked sent with the others) rather than block every later event.
                log.error("outbox row %s (event %s) is not a valid event, not published: %s", _id, event_id, exc)
                continue
            self._producer.produce(self._topic, value=value, key=str(env_id).encode(),
                                   headers=[("event_id", str(event_id).encode())], on_delivery=delivered)
            self._producer.poll(0)
        if self._producer.flush(30.0) or errors:
            raise RelayError(f"Kafka did not acknowledge {len(rows)} events: {errors[:1] or 'timeout'}")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, application_name="cronpipe-relay")
            self._conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        return self._conn

    def wait_for_rows(self, timeout_s: float = POLL_INTERVAL_S) -> None:
        """Return when an outbox change has committed since the last step (notifications
        received during a step are kept by psycopg and count), or after ``timeout_s``."""
        conn = self._connection()
        for _ in conn.notifies(timeout=timeout_s, stop_after=1):
            pass
        for _ in conn.notifies(timeout=0):  # the rest of the backlog: one step covers them all
            pass

    def close(self) -> None:
        self._producer.flush(5.0)
        self._disconnect()

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; database and broker errors, the wait for a
        notification's included, back off and retry (consumers.retry), a permanent
        database error propagates."""
        try:
            while not stop.is_set():
                retry.retry_blocking("outbox relay step", self._step, stop=[stop], transient=(RelayError,),
                                     backoff=RETRY_BACKOFF, on_retry=lambda _exc: self._disconnect(), logger=log)
        finally:
            self.close()

    def _step(self) -> None:
        """Publish what is unsent; when nothing was left, wait for the next commit."""
        if not self.run_once():
            self.wait_for_rows()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Run the relay as a faust task of the worker, in its own thread."""
    async def relay() -> None:
        outbox_relay = OutboxRelay(ctx.settings.effective_database_url(), ctx.settings.kafka_bootstrap,
                                   ctx.topics.incidents)
        try:
            await retry.run_in_own_thread(outbox_relay.run, name="relay")
        except StoreError as exc:  # permanent: a bug or a bad schema
            await retry.stop_worker(app, ctx, "outbox relay", exc, logger=log)

    app.task(relay)
