"""Crash test: `cronpipe worker --agents checkins` killed with SIGKILL mid-run, restarted;
every produced check-in is stored exactly once and the rollups equal the check-ins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from cronpipe.admin import create_org, create_project
from schemas.messages import encode_check_in
from schemas.topics import Topics
from tests.e2e.worker_processes import wait_for

UTC = timezone.utc
T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
MONITORS = 5000
ROUNDS = 6  # per monitor: single-shot ok/error and in_progress→ok pairs, one per message minute
CRONTAB = {"schedule": {"type": "crontab", "value": "*/5 * * * *"}}
CRONPIPE = str(Path(sys.executable).with_name("cronpipe"))


def produce_workload(bootstrap: str, topic: str) -> tuple[int, dict[int, int]]:
    """Produce ROUNDS check-ins per monitor; returns (messages, expected final status counts)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 200_000})
    messages, statuses = 0, {1: 0, 2: 0}
    for rnd in range(ROUNDS):
        at = T0 + timedelta(minutes=rnd)
        for m in range(MONITORS):
            slug, guid = f"job-{m}", uuid.uuid4().hex
            kind = (m + rnd) % 3
            if kind == 2:  # a pair: in_progress, then ok 20 s later
                send(producer, topic, slug, guid, "in_progress", at, None)
                send(producer, topic, slug, guid, "ok", at + timedelta(seconds=20), None)
                messages += 2
                statuses[1] += 1
            else:
                status = "ok" if kind == 0 else "error"
                send(producer, topic, slug, guid, status, at, 1.5)
                messages += 1
                statuses[1 if status == "ok" else 2] += 1
    assert producer.flush(60) == 0
    return messages, statuses


def send(producer: Producer, topic: str, slug: str, guid: str, status: str, at: datetime,
         duration: float | None) -> None:
    payload: dict[str, object] = {"check_in_id": guid, "monitor_slug": slug, "status": status, "environment": "production",
               "monitor_config": CRONTAB}
    if duration is not None:
        payload["duration"] = duration
    producer.produce(topic, key=f"1:{slug}".encode(), timestamp=int(at.timestamp() * 1000),
                     value=encode_check_in(payload, project_id=1, start_time=at.timestamp()))
    producer.poll(0)


@pytest.fixture
def start_worker(kafka_bootstrap: str, database_url: str, tmp_path: Path
                 ) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(prefix: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRONPIPE_DATABASE_URL": database_url,
               "CRONPIPE_TOPIC_PREFIX": prefix}
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")
        proc = subprocess.Popen([CRONPIPE, "worker", "--agents", "checkins"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


STORED_OFFSETS = "SELECT sum(next_offset) FROM consumer_offsets"


def run_a_quarter(kafka_bootstrap: str, database_url: str, topics: Topics,
                  start_worker: Callable[[str], subprocess.Popen[bytes]]
                  ) -> tuple[subprocess.Popen[bytes], int, dict[int, int]]:
    """Produce the workload, start a worker and return it (still running) once it has
    committed a quarter of the messages; with the message count and the expected statuses."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_org(conn, "acme")
        create_project(conn, "acme", "backend", project_id=1)
    messages, statuses = produce_workload(kafka_bootstrap, topics.ingest)
    worker = start_worker(topics.prefix)
    wait_for(lambda: count(database_url, STORED_OFFSETS) > messages // 4, "a quarter of the messages", 300)
    return worker, messages, statuses


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_run_and_restarted_stores_every_check_in_exactly_once(
        kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics],
        start_worker: Callable[[str], subprocess.Popen[bytes]]) -> None:
    topics = make_topics()
    first, messages, statuses = run_a_quarter(kafka_bootstrap, database_url, topics, start_worker)
    children = child_pids(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert count(database_url, STORED_OFFSETS) < messages, "the worker finished before it was killed"
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
             "the killed worker's batch process to exit", 30)

    second = start_worker(topics.prefix)
    wait_for(lambda: count(database_url, STORED_OFFSETS) == messages, "every message to be stored", 600)
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0

    total = sum(statuses.values())
    assert count(database_url, "SELECT count(*) FROM checkins") == total
    assert count(database_url, "SELECT count(DISTINCT guid) FROM checkins") == total
    assert count(database_url, "SELECT count(*) FROM checkins WHERE status = 1") == statuses[1]
    assert count(database_url, "SELECT count(*) FROM checkins WHERE status = 2") == statuses[2]
    assert count(database_url, "SELECT count(*) FROM processing_errors") == 0
    for resolution in (3600, 86400):
        where = f"FROM checkin_rollups WHERE resolution = {resolution}"
        assert count(database_url, f"SELECT sum(ok) {where}") == statuses[1]
        assert count(database_url, f"SELECT sum(error) {where}") == statuses[2]
        assert count(database_url, f"SELECT sum(duration_count) {where}") == total
        assert count(database_url, f"SELECT sum(duration_sum_ms) {where}") == count(
            database_url, "SELECT sum(duration_ms) FROM checkins")


def test_sigterm_mid_run_commits_the_batch_in_flight_and_exits_zero(
        kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics],
        start_worker: Callable[[str], subprocess.Popen[bytes]]) -> None:
    topics = make_topics()
    worker, messages, _ = run_a_quarter(kafka_bootstrap, database_url, topics, start_worker)
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(60) == 0
    assert count(database_url, STORED_OFFSETS) < messages
    # Stopped at a batch boundary: what is stored is consistent with itself.
    for status, column in ((1, "ok"), (2, "error")):
        assert count(database_url, f"SELECT sum({column}) FROM checkin_rollups WHERE resolution = 3600") == count(
            database_url, f"SELECT count(*) FROM checkins WHERE status = {status}")
