"""CheckInProducer against a real broker: keys, wire format, ordering, failures."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer

from ingest.producer import CheckInProducer, DeliveryError, InvalidCheckIn, ProducerQueueFull, monitor_key
from schemas.messages import CheckInAttachmentMessage, CheckInMessage, decode_ingest_message
from schemas.topics import Topics


def consume_all(bootstrap: str, topic: str, expected: int,
                timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes, int]]:
    """Read ``expected`` messages from the start of ``topic``: (key, value, partition)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[tuple[bytes | None, bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            found.append((msg.key(), msg.value() or b"", msg.partition() or 0))
    finally:
        consumer.close()
    return found


@pytest.fixture
def producer(kafka_bootstrap: str, topics: Topics) -> Iterator[CheckInProducer]:
    with CheckInProducer(kafka_bootstrap, topics.ingest) as p:
        yield p


def test_a_check_in_is_published_with_the_monitor_key_and_the_sentry_wire_format(
    producer: CheckInProducer, kafka_bootstrap: str, topics: Topics
) -> None:
    outcomes: list[Exception | None] = []
    payload = {"check_in_id": uuid.uuid4().hex, "monitor_slug": "Nightly Backup", "status": "ok"}
    producer.send_check_in(42, payload, start_time=1700000000.5, sdk="test/1", on_delivery=outcomes.append)
    assert producer.flush(15) == 0

    [(key, value, _)] = consume_all(kafka_bootstrap, topics.ingest, 1)
    message = decode_ingest_message(value)
    assert key == b"42:nightly-backup"
    assert isinstance(message, CheckInMessage)
    assert (message.project_id, message.start_time, message.sdk, message.retention_days) == (42, 1700000000.5, "test/1", 90)
    assert orjson.loads(message.payload) == payload
    assert outcomes == [None]
    assert (producer.delivered, producer.failed) == (1, 0)


def test_a_payload_given_as_bytes_is_published_unchanged(
    producer: CheckInProducer, kafka_bootstrap: str, topics: Topics
) -> None:
    raw = b'{"check_in_id":"00000000000000000000000000000000","monitor_slug":"job","status":"ok","extra":1}'
    producer.send_check_in(7, raw)
    assert producer.close() == 0
    [(key, value, _)] = consume_all(kafka_bootstrap, topics.ingest, 1)
    message = decode_ingest_message(value)
    assert key == b"7:job"
    assert isinstance(message, CheckInMessage) and message.payload == raw


def test_an_attachment_follows_its_check_in_on_the_same_partition(
    producer: CheckInProducer, kafka_bootstrap: str, topics: Topics
) -> None:
    check_in_id = uuid.uuid4()
    for n in range(20):  # other monitors interleaved
        producer.send_check_in(1, {"check_in_id": uuid.uuid4().hex, "monitor_slug": f"other-{n}", "status": "ok"})
    producer.send_check_in(1, {"check_in_id": check_in_id.hex, "monitor_slug": "job", "status": "error"})
    producer.send_attachment(1, "job", check_in_id, b"stack trace\n", filename="job.log")
    assert producer.flush(15) == 0

    mine = [(v, p) for k, v, p in consume_all(kafka_bootstrap, topics.ingest, 22) if k == monitor_key(1, "job")]
    kinds = [type(decode_ingest_message(v)) for v, _ in mine]
    assert kinds == [CheckInMessage, CheckInAttachmentMessage]
    assert len({p for _, p in mine}) == 1
    attachment = decode_ingest_message(mine[1][0])
    assert isinstance(attachment, CheckInAttachmentMessage)
    assert (attachment.check_in_id, attachment.data, attachment.filename) == (check_in_id, b"stack trace\n", "job.log")


@pytest.mark.parametrize("payload", [b"not json", b"[1]", {"status": "ok"}, {"monitor_slug": 5}])
def test_a_payload_without_a_monitor_slug_is_refused_before_queueing(producer: CheckInProducer, payload: object) -> None:
    with pytest.raises(InvalidCheckIn):
        producer.send_check_in(1, payload)  # type: ignore[arg-type]
    assert len(producer) == 0


def test_a_full_local_queue_raises_producer_queue_full(kafka_bootstrap: str, topics: Topics) -> None:
    producer = CheckInProducer(kafka_bootstrap, topics.ingest,
                               config={"queue.buffering.max.messages": 3, "linger.ms": 1000})
    payload = {"check_in_id": uuid.uuid4().hex, "monitor_slug": "job", "status": "ok"}
    for _ in range(3):
        producer.send_check_in(1, payload)
    with pytest.raises(ProducerQueueFull):
        producer.send_check_in(1, payload)
    assert producer.close() == 0


def test_a_delivery_failure_reaches_the_callback_and_the_failure_counter(kafka_bootstrap: str) -> None:
    # A topic that does not exist (auto-creation is off) cannot take the message.
    producer = CheckInProducer(kafka_bootstrap, f"missing-{uuid.uuid4().hex}", config={"message.timeout.ms": 2000})
    outcomes: list[Exception | None] = []
    producer.send_check_in(1, {"check_in_id": uuid.uuid4().hex, "monitor_slug": "job", "status": "ok"},
                           on_delivery=outcomes.append)
    assert producer.flush(20) == 0
    assert len(outcomes) == 1 and isinstance(outcomes[0], DeliveryError)
    assert (producer.delivered, producer.failed) == (0, 1)


def test_an_unreachable_broker_fails_the_delivery_instead_of_dropping_it() -> None:
    producer = CheckInProducer("127.0.0.1:1", "ingest-monitors", config={"message.timeout.ms": 1500})
    outcomes: list[Exception | None] = []
    producer.send_check_in(1, {"check_in_id": uuid.uuid4().hex, "monitor_slug": "job", "status": "ok"},
                           on_delivery=outcomes.append)
    assert producer.flush(20) == 0
    assert len(outcomes) == 1 and isinstance(outcomes[0], DeliveryError)
    assert outcomes[0].code == "_MSG_TIMED_OUT"
