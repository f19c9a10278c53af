"""No sequence of messages from one project may stop processing for another (issue #10.1),
end to end: the real `cronpipe worker` process (batches in its child process), real Kafka,
real PostgreSQL. Project A sends 2,000 hostile messages interleaved with project B's valid
check-ins: B's are all stored, the worker keeps running (its health endpoint says so), and
every one of A's messages is accounted for as a dead letter or a processing error."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from cronpipe.admin import create_org, create_project
from cronpipe.probes import high_watermarks
from schemas.enums import ProcessingErrorType
from schemas.messages import encode_check_in
from schemas.topics import Topics
from tests.e2e.gateway_processes import free_port
from tests.e2e.worker_processes import Worker, scalar, wait_for

A, B = 1, 2
CONFIG = {"schedule": {"type": "crontab", "value": "0 * * * *"}}
#: 9999-12-31T23:58:20Z: a valid float the schema accepts, whose timeout (start + 30 min)
#: is past the last instant Python's datetime has: processing raises (a poison message).
EDGE_OF_TIME = 253402300700.0


def hostile(producer: Producer, topic: str, n: int) -> dict[str, int]:
    """Project A's ``n`` hostile messages, in three kinds; returns how many of each."""
    kinds = {"undecodable": 0, "poison": 0, "invalid": 0}
    for i in range(n):
        slug = f"job-a-{i % 20}"
        key = f"{A}:{slug}".encode()
        if i % 40 == 39:  # a payload the schema rejects: a processing error for A's users
            kinds["invalid"] += 1
            value = encode_check_in({"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "bogus"},
                                    project_id=A, start_time=1.7e9)
        elif i % 2:  # bytes that are not a message at all, keyed to A
            kinds["undecodable"] += 1
            value = b"\xc1 not msgpack " + str(i).encode()
        else:  # decodes, then makes the processing raise
            kinds["poison"] += 1
            value = encode_check_in({"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "in_progress",
                                     "monitor_config": CONFIG}, project_id=A, start_time=EDGE_OF_TIME)
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    return kinds


def valid(producer: Producer, topic: str, n: int) -> set[str]:
    ids = set()
    for i in range(n):
        slug, guid = f"job-b-{i % 10}", uuid.uuid4().hex
        ids.add(guid)
        producer.produce(topic, key=f"{B}:{slug}".encode(), value=encode_check_in(
            {"check_in_id": guid, "monitor_slug": slug, "status": "ok", "duration": 1.5, "monitor_config": CONFIG},
            project_id=B, start_time=1.7e9 + i))
        producer.poll(0)
    return ids


def dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """(key, headers) of every message in the DLQ topic; waits until ``expected`` are read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    letters: list[tuple[bytes | None, dict[str, bytes]]] = []
    try:
        for _ in range(600):
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    letters.append((msg.key(), headers_of(msg.headers())))
            if len(letters) >= expected:
                break
    finally:
        consumer.close()
    return letters


def headers_of(raw: object) -> dict[str, bytes]:
    items = raw.items() if isinstance(raw, dict) else raw or []
    return {str(k): v if isinstance(v, bytes) else str(v or "").encode() for k, v in items}  # type: ignore[attr-defined]


def produced_total(bootstrap: str, topic: str) -> int:
    return sum(high_watermarks(bootstrap, topic).values())


def test_two_thousand_hostile_messages_of_one_project_never_stop_another_projects_check_ins(
        kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics], tmp_path: Path) -> None:
    topics = make_topics()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for org, project in (("org-a", A), ("org-b", B)):
            create_org(conn, org)
            create_project(conn, org, "backend", project_id=project)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True})
    b_ids: set[str] = set()
    kinds = {"undecodable": 0, "poison": 0, "invalid": 0}
    for _ in range(4):  # interleaved: B's valid check-ins before, between and after A's
        b_ids |= valid(producer, topics.ingest, 100)
        for kind, n in hostile(producer, topics.ingest, 500).items():
            kinds[kind] += n
    b_ids |= valid(producer, topics.ingest, 100)
    assert producer.flush(60) == 0
    total = produced_total(kafka_bootstrap, topics.ingest)
    assert total == 2500 and sum(kinds.values()) == 2000

    worker = Worker({"CRONPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRONPIPE_DATABASE_URL": database_url,
                     "CRONPIPE_TOPIC_PREFIX": topics.prefix, "CRONPIPE_CHECKIN_RATE_LIMIT": "0",
                     "CRONPIPE_WORKER_HEALTH_PORT": str(free_port())}, tmp_path / "worker.log")
    try:
        wait_for(lambda: scalar(database_url, "SELECT sum(next_offset) FROM consumer_offsets") == total,
                 "every message to be consumed", 600, alive=worker)
        health = worker.health()
        assert worker.process.poll() is None, worker.tail()
        assert health is not None and health.status_code == 200, health and health.text
        state = health.json()
        assert state["live"] and state["agents"] == {"checkins": "running"}
        assert state["dlq"]["exceeded"] is False and state["dlq"]["counted"] <= 100

        stored = {g.hex for (g,) in psycopg.connect(database_url).execute(
            "SELECT guid FROM checkins WHERE project_id = %s", (B,))}
        assert stored == b_ids
        assert scalar(database_url, "SELECT count(*) FROM checkins WHERE project_id = %s", (A,)) == 0
        assert scalar(database_url, "SELECT count(*) FROM processing_errors WHERE project_id = %s", (B,)) == 0
        errors = [t for (t,) in psycopg.connect(database_url).execute(
            "SELECT type FROM processing_errors WHERE project_id = %s", (A,))]
        assert errors == [ProcessingErrorType.CHECKIN_VALIDATION_FAILED] * kinds["invalid"]

        letters = dead_letters(kafka_bootstrap, topics.dlq, kinds["undecodable"] + kinds["poison"])
        places = {(h["original_partition"], h["original_offset"]) for _, h in letters}
        assert len(places) == kinds["undecodable"] + kinds["poison"]
        assert {key.split(b":")[0] for key, _ in letters if key} == {str(A).encode()}
        reasons = [h["reason"] for _, h in letters]
        assert sum(r.startswith(b"processing failed") for r in reasons) == kinds["poison"]
    finally:
        worker.signal()
        code = worker.wait(90)
        if code is None:
            worker.kill()
    assert code == 0, worker.tail()

