"""Measure how fast `cronpipe worker` processes again after a PostgreSQL outage (issue #18.4).

A throwaway PostgreSQL cluster of its own (free port, temporary folder) and the Kafka at
CRONPIPE_KAFKA_BOOTSTRAP: the worker stores 200 check-ins, the cluster is stopped for
--outage seconds while 500 more are produced, then started again; printed (JSON): seconds
from the cluster accepting connections again to the worker's /readyz answering 200 and
to every check-in being stored. Extra worker settings: KEY=VALUE arguments, e.g.
CRONPIPE_POOL_RECONNECT_MAX=300 for psycopg_pool's own (uncapped) back-off.

    .venv/bin/python scripts/worker_recovery.py --outage 60 [CRONPIPE_<NAME>=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Producer

from cronpipe.admin import create_org, create_project
from cronpipe.local import postgres
from cronpipe.probes import free_port
from schemas.messages import encode_check_in
from schemas.migrate import apply_migrations
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

CONFIG = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


def send(producer: Producer, topic: str, n: int) -> None:
    for i in range(n):
        slug = f"job-{i % 50}"
        producer.produce(topic, key=f"1:{slug}".encode(), value=encode_check_in(
            {"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "ok", "duration": 1.0,
             "monitor_config": CONFIG}, project_id=1, start_time=time.time()))
    assert producer.flush(30) == 0


def stored(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM checkins").fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait(predicate: object, timeout_s: float) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"timed out after {timeout_s}s")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL stays down")
    parser.add_argument("settings", nargs="*", help="KEY=VALUE environment for the worker")
    args = parser.parse_args()
    bootstrap = Settings().kafka_bootstrap
    with tempfile.TemporaryDirectory(prefix="cronpipe-recovery-") as home:
        layout = postgres.layout_for(Path(home), free_port())
        url = postgres.start(layout)
        try:
            return measure(args, bootstrap, layout, url, Path(home))
        finally:
            postgres.stop(layout)


def measure(args: argparse.Namespace, bootstrap: str, layout: postgres.PostgresLayout, url: str, home: Path) -> int:
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        create_org(conn, "acme")
        create_project(conn, "acme", "backend", project_id=1)
    topics = Topics(prefix=f"recovery{uuid.uuid4().hex[:8]}-")
    ensure_topics(bootstrap, topics.specs())
    health_port = free_port()
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": bootstrap, "CRONPIPE_DATABASE_URL": url,
           "CRONPIPE_TOPIC_PREFIX": topics.prefix, "CRONPIPE_CHECKIN_RATE_LIMIT": "0",
           "CRONPIPE_WORKER_HEALTH_PORT": str(health_port), **dict(s.split("=", 1) for s in args.settings)}
    log = open(home / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "cronpipe.cli", "worker", "--agents", "checkins"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    try:
        send(producer, topics.ingest, 200)
        wait(lambda: stored(url) == 200, 180)
        postgres.stop(layout)
        down_at = time.monotonic()
        send(producer, topics.ingest, 500)
        wait(lambda: not ready(health_port), 120)
        time.sleep(max(0.0, args.outage - (time.monotonic() - down_at)))
        postgres.start(layout)
        to_ready = wait(lambda: ready(health_port), 600)
        to_stored = to_ready + wait(lambda: stored(url) == 700, 600)
        result = {"outage_s": round(time.monotonic() - down_at - to_stored, 1), "ready_after_s": round(to_ready, 1),
                  "all_stored_after_s": round(to_stored, 1), "settings": args.settings,
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        print(json.dumps(result))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
