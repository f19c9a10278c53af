"""Alerts end to end: real `cronpipe worker` and `cronpipe notifier` processes, real Kafka
and PostgreSQL, a local HTTP receiver. Time is message time: check-ins carry chosen
CreateTime stamps and the test produces the clock ticks itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from cronpipe.admin import create_org, create_project
from schemas.clock import encode_clock_tick
from schemas.messages import encode_check_in
from schemas.topics import Topics
from tests.e2e.worker_processes import wait_for
from tests.integration.alert_receiver import Receiver

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CRONPIPE = str(Path(sys.executable).with_name("cronpipe"))
CONFIG = {"schedule": {"type": "crontab", "value": "* * * * *"}, "failure_issue_threshold": 2,
          "recovery_threshold": 2}


class Stack:
    """The processes under test, their environment, and the inputs the test drives."""

    def __init__(self, bootstrap: str, database_url: str, topics: Topics, logs: Path) -> None:
        self.topics = topics
        self.database_url = database_url
        self.logs = logs
        self.env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": bootstrap, "CRONPIPE_DATABASE_URL": database_url,
                    "CRONPIPE_TOPIC_PREFIX": topics.prefix, "CRONPIPE_NOTIFY_ALLOW_PRIVATE": "1",
                    "CRONPIPE_NOTIFY_RETRY_BASE": "0.2", "CRONPIPE_NOTIFY_RETRY_MAX": "1",
                    "CRONPIPE_NOTIFY_TIMEOUT": "3", "CRONPIPE_BATCH_PROCESS": "0"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})
        with psycopg.connect(database_url, autocommit=True) as conn:
            create_org(conn, "acme")
            create_project(conn, "acme", "backend", project_id=1)

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{argv[0]}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([CRONPIPE, *argv], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def worker(self, agents: str = "checkins,clock_tasks,relay") -> subprocess.Popen[bytes]:
        return self.start("worker", "--agents", agents)

    def cli(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CRONPIPE, *argv], env=env or self.env, capture_output=True, text=True, timeout=60)

    def channel(self, url: str) -> dict[str, Any]:
        done = self.cli("channel", "create", "--org", "acme", "--kind", "webhook", "--url", url)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def check_in(self, slug: str, status: str, at: datetime) -> None:
        payload = {"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": status, "monitor_config": CONFIG}
        self.producer.produce(self.topics.ingest, key=f"1:{slug}".encode(), timestamp=int(at.timestamp() * 1000),
                              value=encode_check_in(payload, project_id=1, start_time=at.timestamp()))
        assert self.producer.flush(15) == 0

    def tick(self, *moments: datetime) -> None:
        for moment in moments:
            self.producer.produce(self.topics.clock_tick, value=encode_clock_tick(int(moment.timestamp())))
        assert self.producer.flush(15) == 0

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def stack(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics],
          tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(kafka_bootstrap, database_url, make_topics(ingest_partitions=1), tmp_path)
    yield stack
    stack.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.received]


def env_status(stack: Stack, slug: str) -> int | None:
    rows = stack.rows("SELECT me.status FROM monitor_environments me JOIN monitors m ON m.id = me.monitor_id"
                      " WHERE m.slug = %s", (slug,))
    return int(rows[0][0]) if rows else None


@pytest.mark.timeout(600)
def test_two_misses_open_one_incident_an_error_adds_a_failure_and_two_oks_resolve_it(
        stack: Stack, receiver: Receiver) -> None:
    channel = stack.channel(receiver.url)
    stack.worker()
    stack.start("notifier")
    stack.check_in("nightly", "ok", T)
    wait_for(lambda: env_status(stack, "nightly") == 4, "the monitor to exist")
    stack.tick(T + 2 * M, T + 3 * M)  # MISSED at T+1m and T+2m
    wait_for(lambda: len(receiver.received) >= 1, "the opened event")
    stack.check_in("nightly", "error", T + 3 * M + timedelta(seconds=5))
    wait_for(lambda: len(receiver.received) >= 2, "the failure event")
    stack.check_in("nightly", "ok", T + 4 * M)
    stack.check_in("nightly", "ok", T + 5 * M)
    wait_for(lambda: len(receiver.received) >= 3, "the resolved event")
    time.sleep(2)  # anything extra would arrive now

    got = events(receiver)
    assert [(e["type"], e["reason"]) for e in got] == [
        ("opened", "2 missed check-ins detected"), ("failure", "An error check-in was detected"),
        ("resolved", "Resolved by 2 consecutive OK check-ins")]
    assert len({e["incident_id"] for e in got}) == 1
    assert [c["status"] for c in got[0]["failing_checkins"]] == ["missed", "missed"]
    for request in receiver.received:
        digest = hmac.new(channel["secret"].encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Cronpipe-Signature"] == f"sha256={digest}"
        assert request.headers["X-Cronpipe-Event-Id"] == orjson.loads(request.body)["event_id"]
    log = stack.cli("channel", "log", channel["id"], "--org", "acme")
    assert [a["outcome"] for a in json.loads(log.stdout)["attempts"]] == ["delivered"] * 3


@pytest.mark.timeout(600)
def test_killed_worker_and_notifier_still_deliver_every_event_with_stable_ids(
        stack: Stack, receiver: Receiver) -> None:
    slugs = [f"job-{i}" for i in range(20)]
    hang_first = {"done": False}

    def answer(n: int) -> int | None:
        if not hang_first["done"]:
            hang_first["done"] = True
            return None  # the notifier is killed while this request hangs
        return 200

    receiver.answer = answer
    stack.channel(receiver.url)
    # A worker without the relay: incidents commit with their outbox rows, nothing is published.
    worker = stack.worker("checkins,clock_tasks")
    for slug in slugs:
        stack.check_in(slug, "ok", T)
    wait_for(lambda: all(env_status(stack, s) == 4 for s in slugs), "the monitors to exist")
    stack.tick(T + 2 * M, T + 3 * M)
    wait_for(lambda: stack.rows("SELECT count(*) FROM incident_outbox")[0][0] == len(slugs), "the outbox rows")
    worker.send_signal(signal.SIGKILL)  # between commit and publish
    worker.wait(10)
    assert stack.rows("SELECT count(*) FROM incident_outbox WHERE sent_at IS NOT NULL")[0][0] == 0

    notifier = stack.start("notifier")
    stack.worker()  # the restarted worker's relay publishes what the killed one committed
    wait_for(lambda: len(receiver.received) >= 1, "the first (hanging) delivery")
    notifier.send_signal(signal.SIGKILL)  # mid-delivery
    notifier.wait(10)
    stack.start("notifier")
    wait_for(lambda: len({r.headers["X-Cronpipe-Event-Id"] for r in receiver.received}) == len(slugs)
             and stack.rows("SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'")[0][0] == len(slugs),
             "every event delivered")

    outbox_ids = {str(r[0]) for r in stack.rows("SELECT event_id FROM incident_outbox")}
    by_id: dict[str, list[bytes]] = {}
    for r in receiver.received:
        by_id.setdefault(r.headers["X-Cronpipe-Event-Id"], []).append(r.body)
    assert set(by_id) == outbox_ids
    assert all(len(set(bodies)) == 1 for bodies in by_id.values())  # a duplicate is the same event
    assert all(orjson.loads(b[0])["type"] == "opened" for b in by_id.values())


def test_channel_create_refuses_a_loopback_url_unless_private_destinations_are_allowed(
        stack: Stack, receiver: Receiver) -> None:
    strict = {k: v for k, v in stack.env.items() if k != "CRONPIPE_NOTIFY_ALLOW_PRIVATE"}
    refused = stack.cli("channel", "create", "--org", "acme", "--kind", "webhook", "--url", receiver.url, env=strict)
    assert refused.returncode == 1 and "CRONPIPE_NOTIFY_ALLOW_PRIVATE=1" in refused.stderr
    created = stack.channel(receiver.url)
    assert set(created) == {"id", "kind", "url", "secret"}
    listed = json.loads(stack.cli("channel", "list", "--org", "acme").stdout)["channels"]
    assert [c["id"] for c in listed] == [created["id"]]
    assert created["secret"] not in json.dumps(listed)
    test = stack.cli("channel", "test", created["id"], "--org", "acme")
    assert test.returncode == 0 and json.loads(test.stdout)["delivered"] is True
    assert receiver.received[-1].headers["X-Cronpipe-Test"] == "1"
    assert stack.cli("channel", "delete", created["id"], "--org", "acme").returncode == 0
    assert json.loads(stack.cli("channel", "list", "--org", "acme").stdout)["channels"] == []
