"""A stopping worker never waits for PostgreSQL forever (issue #18.1), and recovers fast
when it returns (#18.4): the real `cronpipe worker` (all agents, batches in its child
process) against a throwaway PostgreSQL cluster of its own (stopped and started here,
never the shared one) and the shared Kafka."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from consumers.shutdown import EXIT_ABANDONED
from cronpipe.admin import create_org, create_project
from cronpipe.local import postgres
from schemas.messages import encode_check_in
from schemas.migrate import apply_migrations
from schemas.topics import Topics
from tests.e2e.gateway_processes import free_port
from tests.e2e.worker_processes import Worker, scalar, wait_for

CONFIG = {"schedule": {"type": "crontab", "value": "0 * * * *"}}
ABANDONED_LINE = "worker exiting without finishing its stop"


class Cluster:
    """A private PostgreSQL cluster on a free port, stopped and started by the test."""

    def __init__(self, home: Path) -> None:
        self.layout = postgres.layout_for(home, free_port())
        self.url = postgres.start(self.layout)
        apply_migrations(self.url)

    def stop(self) -> None:
        assert postgres.stop(self.layout)

    def start(self) -> None:
        postgres.start(self.layout)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "pg")
    with psycopg.connect(running.url, autocommit=True) as conn:
        create_org(conn, "acme")
        create_project(conn, "acme", "backend", project_id=1)
    yield running
    postgres.stop(running.layout)


class Load:
    """Check-ins with ids of their own, each to be stored exactly once."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.sent = 0

    def send(self, n: int) -> None:
        for _ in range(n):
            slug = f"job-{self.sent % 50}"
            self.producer.produce(self.topic, key=f"1:{slug}".encode(), value=encode_check_in(
                {"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "ok", "duration": 1.0,
                 "monitor_config": CONFIG}, project_id=1, start_time=time.time()))
            self.sent += 1
        assert self.producer.flush(30) == 0


@pytest.fixture
def start_worker(kafka_bootstrap: str, cluster: Cluster, make_topics: Callable[..., Topics],
                 tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    topics = make_topics()
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker({"CRONPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRONPIPE_DATABASE_URL": cluster.url,
                         "CRONPIPE_TOPIC_PREFIX": topics.prefix, "CRONPIPE_CHECKIN_RATE_LIMIT": "0",
                         "CRONPIPE_WORKER_HEALTH_PORT": str(free_port()), **env},
                        tmp_path / f"worker-{len(started)}.log", agents="checkins,clock,clock_tasks")
        started.append(worker)
        return worker

    start.topics = topics  # type: ignore[attr-defined]
    yield start
    for worker in started:
        worker.kill()


def stored(cluster: Cluster) -> int:
    return scalar(cluster.url, "SELECT count(DISTINCT guid) FROM checkins")


def ready(worker: Worker) -> bool:
    response = worker.health("/readyz")
    return response is not None and response.status_code == 200


def not_ready(worker: Worker) -> bool:
    response = worker.health("/readyz")
    return response is not None and response.status_code == 503


def test_sigterm_during_a_database_outage_exits_by_the_deadline_and_loses_nothing(
        kafka_bootstrap: str, cluster: Cluster, start_worker: Callable[..., Worker]) -> None:
    load = Load(kafka_bootstrap, start_worker.topics.ingest)  # type: ignore[attr-defined]
    worker = start_worker(CRONPIPE_SHUTDOWN_TIMEOUT="5")
    load.send(500)
    wait_for(lambda: stored(cluster) == 500, "the first check-ins to be stored", alive=worker)
    assert ready(worker)

    cluster.stop()
    load.send(500)  # a batch that cannot commit while the database is down
    wait_for(lambda: not_ready(worker), "the worker to report that batches do not commit", 120, alive=worker)
    health = worker.health()
    assert health is not None and health.json()["retrying"], health and health.text
    worker.signal(signal.SIGTERM)
    code = worker.wait(120)  # a generous bound: the deadline is 5 s

    assert code == EXIT_ABANDONED, worker.tail()
    assert ABANDONED_LINE in worker.log.read_text()
    cluster.start()
    successor = start_worker()
    wait_for(lambda: stored(cluster) == 1000, "every check-in after the database returned", alive=successor)
    successor.signal(signal.SIGTERM)
    assert successor.wait(90) == 0, successor.tail()
    assert scalar(cluster.url, "SELECT count(*) FROM checkins") == 1000


def test_a_second_signal_during_the_stop_exits_at_once(
        kafka_bootstrap: str, cluster: Cluster, start_worker: Callable[..., Worker]) -> None:
    load = Load(kafka_bootstrap, start_worker.topics.ingest)  # type: ignore[attr-defined]
    worker = start_worker(CRONPIPE_SHUTDOWN_TIMEOUT="3600")
    load.send(100)
    wait_for(lambda: stored(cluster) == 100, "the first check-ins to be stored", alive=worker)
    cluster.stop()
    load.send(100)
    wait_for(lambda: not_ready(worker), "the worker to report that batches do not commit", 120, alive=worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(3) is None, "the first signal alone stopped a worker whose batch cannot commit"
    worker.signal(signal.SIGINT)

    assert worker.wait(120) == EXIT_ABANDONED, worker.tail()  # long before the hour's deadline
    assert "second SIGINT" in worker.log.read_text()
