"""The notifier's event consumer when PostgreSQL fails: back off and read the batch again
(database unreachable), or stop (a permanent error). Real Kafka and PostgreSQL; the
"unreachable" database is a real connection attempt to a port nobody listens on."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from cronpipe.admin import create_org
from notifier.consumer import EventConsumer
from schemas.database import StoreError
from schemas.examples import load_example
from schemas.topics import Topics

#: A loopback port with no server: connecting fails at once with OperationalError.
UNREACHABLE = "postgresql://cronpipe@127.0.0.1:9/cronpipe?connect_timeout=2"


class Database:
    """A connect() for the consumer whose database can be made unreachable and back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.down = threading.Event()
        self.refused = 0

    def connect(self) -> psycopg.Connection[Any]:
        if self.down.is_set():
            self.refused += 1
            return psycopg.connect(UNREACHABLE, autocommit=True)
        return psycopg.connect(self.url, autocommit=True)


def publish(bootstrap: str, topic: str, org_id: int, n: int) -> list[str]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    ids = []
    for _ in range(n):
        event = load_example("incident_opened")
        event.update({"event_id": str(uuid.uuid4()), "organization": {"id": org_id, "slug": "acme"}})
        producer.produce(topic, key=b"42", value=orjson.dumps(event))
        ids.append(event["event_id"])
    assert producer.flush(60) == 0
    return ids


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def stored_events(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT event_id FROM alert_events ORDER BY event_id")]


def start(consumer: EventConsumer, stop: threading.Event) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run(stop)
        except BaseException as exc:  # what stops the notifier (exit 1) must reach the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


@pytest.fixture
def org_id(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return create_org(conn, "acme").id


def test_events_consumed_while_the_database_is_unreachable_are_read_again_and_stored_once(
        kafka_bootstrap: str, topics: Topics, database_url: str, org_id: int) -> None:
    db = Database(database_url)
    consumer = EventConsumer(kafka_bootstrap, topics.incidents, f"g-{uuid.uuid4().hex[:8]}", db.connect,
                             on_commit=lambda channels: None)
    stop = threading.Event()
    thread, raised = start(consumer, stop)
    try:
        first = publish(kafka_bootstrap, topics.incidents, org_id, 1)
        wait_until(lambda: stored_events(database_url) == sorted(first), "the first event (assignment done)")
        db.down.set()
        later = publish(kafka_bootstrap, topics.incidents, org_id, 3)
        wait_until(lambda: db.refused >= 1, "the consumer to fail against the unreachable database")
        assert stored_events(database_url) == sorted(first)
        db.down.clear()
        # Consumed before the failure, so only a rewind to the stored offsets reads them again.
        wait_until(lambda: stored_events(database_url) == sorted(first + later), "the batch read again")
    finally:
        stop.set()
        thread.join(30)
    assert raised == []
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM alert_events").fetchone() or (0,)
    assert count == 4


def test_a_permanent_database_error_stops_the_consumer_instead_of_retrying_forever(
        kafka_bootstrap: str, topics: Topics, database_url: str, org_id: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE alert_events RENAME TO alert_events_moved")  # a broken schema
    consumer = EventConsumer(kafka_bootstrap, topics.incidents, f"g-{uuid.uuid4().hex[:8]}",
                             lambda: psycopg.connect(database_url, autocommit=True), on_commit=lambda channels: None)
    stop = threading.Event()
    thread, raised = start(consumer, stop)
    try:
        publish(kafka_bootstrap, topics.incidents, org_id, 1)
        wait_until(lambda: not thread.is_alive(), "the consumer to stop on the permanent error")
    finally:
        stop.set()
        thread.join(30)
    assert len(raised) == 1
    assert isinstance(raised[0], StoreError)
    assert "alert_events" in str(raised[0])
