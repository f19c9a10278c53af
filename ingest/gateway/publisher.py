"""Kafka for an asyncio server: ``await publish_check_in(...)`` returns once Kafka has
acknowledged the message, or raises GatewayError(503).

One :class:`~ingest.producer.CheckInProducer` per process; a daemon thread serves its
delivery reports (librdkafka needs ``poll()`` to run callbacks) and hands them to the
event loop in batches, one wake-up per poll instead of one per message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ingest.gateway.errors import GatewayError
from ingest.gateway.metrics import Metrics
from ingest.producer import CheckInProducer, DeliveryError, ProducerQueueFull

log = logging.getLogger("cronpipe.gateway.publisher")

@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


class _TimedOut(Exception):
    """Marks a wait the sweeper ended: Kafka did not answer within the delivery timeout."""


_TIMED_OUT: Final = _TimedOut()
#: Readiness asks a broker for metadata at most this often.
_PROBE_EVERY_S: Final = 1.0
_Settled = tuple["asyncio.Future[Exception | None]", Exception | None, float]


def unavailable(reason: str, detail: str) -> GatewayError:
    return GatewayError(503, reason, detail, {"Retry-After": "5"})


class Publisher:
    def __init__(self, make_producer: Callable[[], CheckInProducer], metrics: Metrics, *,
                 delivery_timeout: float) -> None:
        self._make_producer = make_producer
        self._producer = make_producer()
        self._metrics = metrics
        self._timeout = delivery_timeout
        self._settled: list[_Settled] = []
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._waiting: deque[tuple[float, asyncio.Future[Exception | None]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        self._probe_lock = asyncio.Lock()
        self._probed_at = -_PROBE_EVERY_S
        self._reachable = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._thread.start()
        self._sweeper = loop.create_task(self._expire_overdue())

    def stop(self, timeout: float = 30.0) -> int:
        """Stop polling and flush; return the number of messages left undelivered."""
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._thread is not None:
            self._thread.join()
        left = self._producer.close(timeout)
        if left:
            log.error("%d message(s) still undelivered at shutdown", left)
        return left

    @property
    def healthy(self) -> bool:
        return self._producer.fatal_error is None

    async def kafka_state(self) -> str:
        """``ok``, or why check-ins would get a 503 now: ``unreachable`` (no broker answered
        a metadata request within a second; asked at most once a second), ``queue_full``
        (the local queue is ≥ 90 % full), ``fatal_error`` (the producer is being replaced)."""
        if not self.healthy:
            self._replace_if_fatal()
            return "fatal_error"
        if len(self._producer) >= 0.9 * self._producer.queue_limit:
            return "queue_full"
        async with self._probe_lock:  # one probe at a time, whoever asks how often
            if time.monotonic() - self._probed_at >= _PROBE_EVERY_S:
                self._reachable = await asyncio.to_thread(self._producer.broker_reachable, 1.0)
                self._probed_at = time.monotonic()
        return "ok" if self._reachable else "unreachable"

    # ------------------------------------------------------------------ publishing

    async def publish_check_in(self, project_id: int, payload: bytes, monitor_slug: str, check_in_id: uuid.UUID,
                               *, start_time: float, sdk: str | None, attachment: Attachment | None = None) -> None:
        """Publish one check-in, and its attachment right after it on the same key (so the
        processor sees them in that order); return once Kafka acknowledged both.

        If the attachment cannot be queued (queue full), the check-in may still reach
        Kafka; the caller gets a 503 all the same — never a success for something not in Kafka.
        """
        futures = [self._send(lambda report: self._producer.send_check_in(
            project_id, payload, monitor_slug=monitor_slug, start_time=start_time, sdk=sdk, on_delivery=report))]
        if attachment is not None:
            futures.append(self._queue_attachment(project_id, monitor_slug, check_in_id, attachment, start_time))
        await self._confirm(futures)

    async def publish_attachment(self, project_id: int, monitor_slug: str, check_in_id: uuid.UUID,
                                 attachment: Attachment, *, start_time: float) -> None:
        """Publish one ``check_in_attachment`` and wait for Kafka's acknowledgement."""
        await self._confirm([self._queue_attachment(project_id, monitor_slug, check_in_id, attachment, start_time)])

    def _queue_attachment(self, project_id: int, monitor_slug: str, check_in_id: uuid.UUID,
                          attachment: Attachment, start_time: float) -> asyncio.Future[Exception | None]:
        return self._send(lambda report: self._producer.send_attachment(
            project_id, monitor_slug, check_in_id, attachment.data, filename=attachment.filename,
            content_type=attachment.content_type, start_time=start_time, on_delivery=report))

    def _send(self, send: Callable[[Callable[[Exception | None], None]], None]) -> asyncio.Future[Exception | None]:
        self._replace_if_fatal()
        assert self._loop is not None, "Publisher.start() was not called"
        future: asyncio.Future[Exception | None] = self._loop.create_future()
        started = time.perf_counter()
        self._waiting.append((time.monotonic() + self._timeout, future))

        def report(error: Exception | None) -> None:
            # Runs on the poll thread; only appends (list.append is atomic under the GIL).
            self._settled.append((future, error, started))

        try:
            send(report)
        except ProducerQueueFull:
            raise unavailable("queue_full", "Kafka is not keeping up; retry later") from None
        except DeliveryError as exc:
            raise unavailable("kafka_error", f"Kafka producer error: {exc.code}") from None
        return future

    async def _confirm(self, futures: list[asyncio.Future[Exception | None]]) -> None:
        for future in futures:
            error = await future
            if error is _TIMED_OUT:
                raise unavailable("delivery_timeout", "Kafka did not acknowledge in time; retry later")
            if error is not None:
                raise unavailable("delivery_failed", f"Kafka did not accept the message: {error}")

    async def _expire_overdue(self) -> None:
        """Time out waits that Kafka has not answered within the delivery timeout.

        One sweeper instead of ``asyncio.wait_for`` per request: a wait_for costs a task
        and a timer each, a large share of a check-in's CPU budget. Futures are queued
        in creation order, so the overdue ones are always at the front.
        """
        while True:
            await asyncio.sleep(min(0.25, self._timeout / 4))
            now = time.monotonic()
            while self._waiting:
                deadline, future = self._waiting[0]
                if not future.done() and deadline > now:
                    break
                self._waiting.popleft()
                if not future.done():
                    future.set_result(_TIMED_OUT)

    def _replace_if_fatal(self) -> None:
        fatal = self._producer.fatal_error
        if fatal is not None:
            # A fatal idempotence error poisons the producer for good; start a new one.
            log.error("replacing the Kafka producer after a fatal error: %s", fatal)
            self._producer = self._make_producer()

    # ------------------------------------------------------------------ poll thread

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            producer = self._producer
            producer.poll(0.05)
            if self._settled:
                # Callbacks only run inside poll() on this thread, so nothing appends now.
                batch, self._settled = self._settled, []
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._settle, batch)
                except RuntimeError:
                    return  # the loop is closed: shutting down

    def _settle(self, batch: list[_Settled]) -> None:
        now = time.perf_counter()
        for future, error, started in batch:
            self._metrics.produce_seconds.observe(now - started)
            if not future.done():  # a request that timed out no longer waits
                future.set_result(error)
