"""One small object that writes ``ingest-monitors`` messages to Kafka.

Everything in cronpipe that publishes check-ins (the HTTP gateway, ``cronpipe loadgen``,
tests) goes through :class:`CheckInProducer`, so the wire format, the message key and the
delivery guarantees live in one place:

* key ``f"{project_id}:{monitor_slug}"`` (the slug as Sentry slugifies it), so every
  message of one monitor lands on one partition, in order — an attachment sent after its
  check-in is consumed after it;
* idempotent producer (``acks=all``, no duplicates or reordering on retry), lz4, a short
  linger that batches without adding visible latency;
* a delivery failure is never silent: it reaches the caller's ``on_delivery`` callback and
  the :attr:`CheckInProducer.failed` counter;
* a full local queue raises :class:`ProducerQueueFull` at once, so a server can answer 503
  instead of blocking.

Delivery callbacks run inside :meth:`~CheckInProducer.poll` / :meth:`~CheckInProducer.flush`,
on the thread that calls them (librdkafka's rule).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas.json_object import NotAnObject, load_object
from schemas.messages import encode_attachment, encode_check_in
from schemas.wire_fields import slugify_monitor_slug

__all__ = [
    "DEFAULT_CONFIG",
    "CheckInProducer",
    "DeliveryCallback",
    "DeliveryError",
    "InvalidCheckIn",
    "ProducerQueueFull",
    "monitor_key",
]

DeliveryCallback = Callable[[Exception | None], None]
"""Called once per message: ``None`` when Kafka acknowledged it, else a :class:`DeliveryError`."""

#: librdkafka settings; ``config=`` overrides any of them.
DEFAULT_CONFIG: Final[dict[str, Any]] = {
    "enable.idempotence": True,  # implies acks=all and ordered, duplicate-free retries
    "compression.type": "lz4",
    # A few ms of batching multiplies throughput and stays far below an HTTP p99 budget.
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 200_000,
    "queue.buffering.max.kbytes": 262_144,
    # Bounded: a caller waiting for the delivery report learns of an outage in seconds,
    # not after librdkafka's default five minutes.
    "message.timeout.ms": 30_000,
    "socket.keepalive.enable": True,
}


class ProducerQueueFull(RuntimeError):
    """The local queue is full (Kafka slow or unreachable); nothing was queued. Retry later."""


class InvalidCheckIn(ValueError):
    """The payload cannot be keyed: it is not a JSON object with a ``monitor_slug`` string."""


class DeliveryError(RuntimeError):
    """Kafka did not accept a message; ``.code`` is librdkafka's error code name."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code: str = error.name()
        self.retriable: bool = bool(error.retriable())
        self.fatal: bool = bool(error.fatal())


def monitor_key(project_id: int, monitor_slug: str) -> bytes:
    """The ``ingest-monitors`` message key of a monitor: ``b"<project_id>:<slug>"``."""
    return f"{project_id}:{slugify_monitor_slug(monitor_slug)}".encode()


def _payload_slug(payload: Mapping[str, Any] | bytes) -> str:
    data = payload if isinstance(payload, Mapping) else _loads_object(payload)
    slug = data.get("monitor_slug")
    if not isinstance(slug, str):
        raise InvalidCheckIn("payload: monitor_slug must be a string")
    return slug


def _loads_object(raw: bytes) -> Mapping[str, Any]:
    try:
        return load_object(raw, "payload")
    except NotAnObject as exc:
        raise InvalidCheckIn(exc.reason) from None


class CheckInProducer:
    """Publishes check-ins and attachments to one ``ingest-monitors`` topic.

    Thread-safe for sending; call :meth:`poll` regularly (or from one dedicated thread)
    so delivery callbacks run. :meth:`close` flushes; the object is a context manager.
    """

    def __init__(self, bootstrap: str, topic: str, *, config: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._delivered = 0
        self._failed = 0
        self._fatal: DeliveryError | None = None
        # librdkafka's own log lines go to Python logging instead of raw stderr.
        settings = {"logger": logging.getLogger("cronpipe.kafka"), **DEFAULT_CONFIG, **(config or {}),
                    "bootstrap.servers": bootstrap, "error_cb": self._on_error}
        self._producer = Producer(settings)
        self.queue_limit = int(settings["queue.buffering.max.messages"])
        """Messages the local queue holds before sends raise ProducerQueueFull."""

    # ------------------------------------------------------------------ counters

    @property
    def delivered(self) -> int:
        """Messages Kafka acknowledged so far."""
        return self._delivered

    @property
    def failed(self) -> int:
        """Messages whose delivery failed so far (each also reported to its callback)."""
        return self._failed

    @property
    def fatal_error(self) -> DeliveryError | None:
        """Set when librdkafka reported a fatal error: this producer cannot send any more."""
        return self._fatal

    def broker_reachable(self, timeout: float = 1.0) -> bool:
        """True when a broker answered a metadata request for the topic within ``timeout``
        seconds (blocking: call it from a thread)."""
        try:
            self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        return True

    def __len__(self) -> int:
        """Messages queued or in flight, not yet delivered or failed."""
        return len(self._producer)

    # ------------------------------------------------------------------ sending

    def send_check_in(
        self,
        project_id: int,
        payload: Mapping[str, Any] | bytes,
        *,
        start_time: float | None = None,
        retention_days: int = 90,
        sdk: str | None = None,
        on_delivery: DeliveryCallback | None = None,
        monitor_slug: str | None = None,
    ) -> None:
        """Queue one ``check_in`` message; ``payload`` is the check-in JSON (bytes or mapping).

        ``start_time`` defaults to now. ``monitor_slug`` spares re-reading the payload for
        the key when the caller has already parsed it. Raises :class:`InvalidCheckIn` when the payload has
        no ``monitor_slug`` (the key needs it), pydantic's ValidationError for out-of-range
        fields, :class:`ProducerQueueFull` when the local queue is full.
        """
        key = monitor_key(project_id, monitor_slug if monitor_slug is not None else _payload_slug(payload))
        value = encode_check_in(payload, project_id=project_id,
                                start_time=time.time() if start_time is None else start_time,
                                retention_days=retention_days, sdk=sdk)
        self.send_raw(value, key=key, on_delivery=on_delivery)

    def send_attachment(
        self,
        project_id: int,
        monitor_slug: str,
        check_in_id: uuid.UUID | str,
        data: bytes,
        *,
        filename: str = "output.txt",
        content_type: str = "text/plain",
        start_time: float | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one ``check_in_attachment`` message on the monitor's key.

        Sent after its check-in by the same producer, it is consumed after it (same key,
        idempotent producer). Raises pydantic's ValidationError when ``data`` exceeds
        100 KiB, :class:`ProducerQueueFull` when the local queue is full.
        """
        value = encode_attachment(project_id=project_id, monitor_slug=slugify_monitor_slug(monitor_slug),
                                  check_in_id=check_in_id, filename=filename, content_type=content_type,
                                  data=data, start_time=time.time() if start_time is None else start_time)
        self.send_raw(value, key=monitor_key(project_id, monitor_slug), on_delivery=on_delivery)

    def send_raw(
        self,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue an already-encoded value (clock pulses, deliberately bad messages in tests).

        Raises :class:`ProducerQueueFull`, or :class:`DeliveryError` after a fatal error.
        """
        if self._fatal is not None:
            raise self._fatal
        report = self._reporter(on_delivery)
        try:
            if partition is None:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=report)
            else:
                self._producer.produce(self.topic, value=value, key=key, partition=partition, on_delivery=report)
        except BufferError:
            raise ProducerQueueFull(f"local producer queue full ({len(self._producer)} messages)") from None
        except KafkaException as exc:
            raise DeliveryError(exc.args[0]) from None

    def _reporter(self, on_delivery: DeliveryCallback | None) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, _message: Message) -> None:
            outcome = None if error is None else DeliveryError(error)
            with self._lock:  # callbacks may run on several polling threads
                if outcome is None:
                    self._delivered += 1
                else:
                    self._failed += 1
            if on_delivery is not None:
                on_delivery(outcome)

        return report

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors (broker down) are retried by librdkafka and surface as failed
        # deliveries after message.timeout.ms; only a fatal error changes what we do.
        if error.fatal():
            self._fatal = DeliveryError(error)

    # ------------------------------------------------------------------ driving

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks, waiting up to ``timeout`` seconds; returns how many ran."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds for every queued message; return how many are still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 30.0) -> int:
        """Flush (see :meth:`flush`) and return the number of messages left undelivered."""
        return self.flush(timeout)

    def __enter__(self) -> CheckInProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
