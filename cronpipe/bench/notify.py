"""`cronpipe bench notify`: incidents → outbox → relay → Kafka → notifier → a local webhook.

Two figures (issue 13), the steady one first (on a quiet pipeline):
1. mass outage: ``--incidents`` monitors (threshold 1) are all due at one tick; the tick
   opens every incident; measured: time from producing the tick to the receiver's last
   delivery, and commit→delivery percentiles;
2. steady rate: ERROR check-ins for fresh monitors at ``--rate`` per second (each opens an
   incident in the processor's transaction) for ``--seconds``; measured: commit→delivery
   p50/p99 (commit = the event's ``date_created``, the writing transaction's start, as in
   the first recorded runs), and where that time goes (:func:`stages`: the stamps each step
   stores, and the commit as a listener of the benchmark database observes it).

The worker (checkins, clock tasks, relay) and the notifier run as real ``cronpipe``
processes against a database and topics of their own (dropped afterwards unless
``--keep``); the receiver is a minimal asyncio HTTP server in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from cronpipe.bench.clock import T0, _stored
from cronpipe.bench.clock_database import create_database, drop
from cronpipe.seeding import seed_monitors
from schemas.argtypes import positive_float, positive_int
from schemas.settings import Settings

CRONPIPE = str(Path(sys.executable).with_name("cronpipe"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--incidents", type=positive_int, default=10_000,
                        help="mass outage: incidents opened by one tick (default 10000)")
    parser.add_argument("--rate", type=positive_float, default=100.0,
                        help="steady part: incidents opened per second (default 100)")
    parser.add_argument("--seconds", type=positive_int, default=30, help="steady part: duration (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and topics")


class Receiver:
    """Counts webhook deliveries: (event id, date_created, receive time) per request."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}
        #: event id → monitor slug
        self.slugs: dict[str, str] = {}
        self.requests = 0
        self.port = 0
        self._ready = threading.Event()

    def start(self) -> None:
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        self._ready.wait(10)

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time()
                event = orjson.loads(body)
                created = datetime.fromisoformat(event["date_created"]).timestamp()
                self.requests += 1
                self.seen.setdefault(event["event_id"], (created, now))
                self.slugs.setdefault(event["event_id"], event["monitor"]["slug"])
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# The benchmark's own database gets a trigger that NOTIFYs, at commit, the id range each
# outbox INSERT wrote (CommitWatcher): when the writing transaction committed, as seen
# by a listener, instead of when it started (date_created).
WATCH_COMMITS = """
CREATE FUNCTION bench_outbox_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM pg_notify('bench_outbox', (SELECT min(id) || ' ' || max(id) FROM new_rows));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_outbox_committed AFTER INSERT ON incident_outbox REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_outbox_committed();
"""


class CommitWatcher:
    """Stamps each outbox row with the time its transaction's commit was observed."""

    def __init__(self, url: str) -> None:
        self.committed: dict[str, float] = {}
        self._url = url
        self._stop = threading.Event()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(WATCH_COMMITS)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute("LISTEN bench_outbox")
            while not self._stop.is_set():
                # Collected first: the connection cannot run a query inside notifies().
                notes = list(conn.notifies(timeout=0.5, stop_after=1))
                at = time.time()
                for note in notes:
                    low, high = (int(x) for x in note.payload.split())
                    # Rows of the range that are visible now committed by now: the
                    # notifying transaction's, or earlier ones already stamped.
                    for (event_id,) in conn.execute("SELECT event_id::text FROM incident_outbox"
                                                    " WHERE id BETWEEN %s AND %s", (low, high)):
                        self.committed.setdefault(event_id, at)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# Where the time between the incident's transaction and the receiver goes, per event:
# every stamp is a transaction start (now()) of the step that wrote it.
STAGE_STAMPS = """
SELECT o.event_id::text, extract(epoch FROM o.sent_at)::float8, extract(epoch FROM e.date_received)::float8
  FROM incident_outbox o LEFT JOIN alert_events e ON e.event_id = o.event_id
 WHERE o.event_id = ANY(%(ids)s::uuid[])
"""


def stages(url: str, seen: dict[str, tuple[float, float]], produced: dict[str, float],
           slugs: dict[str, str], committed: dict[str, float]) -> dict[str, dict[str, float]]:
    """p50/p99 seconds of each step of the events in ``seen`` (event id → (date_created,
    received)): produced → the processor's transaction start (``produced`` by monitor slug),
    → its commit (``committed``), → the relay's step that published it, → the notifier's
    batch that consumed it, → the receiver; and commit → receiver."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(STAGE_STAMPS, {"ids": list(seen)}).fetchall()
    steps: dict[str, list[float]] = {"produced_to_transaction": [], "transaction_to_commit": [],
                                     "commit_to_relay": [], "relay_to_notifier": [], "notifier_to_received": [],
                                     "observed_commit_to_received": []}
    for event_id, relayed, consumed in rows:
        created, received = seen[event_id]
        if event_id in slugs and slugs[event_id] in produced:
            steps["produced_to_transaction"].append(created - produced[slugs[event_id]])
        commit = committed.get(event_id)
        if commit is not None:
            steps["transaction_to_commit"].append(commit - created)
            steps["observed_commit_to_received"].append(received - commit)
        if relayed is not None and consumed is not None:
            if commit is not None:
                steps["commit_to_relay"].append(relayed - commit)
            steps["relay_to_notifier"].append(consumed - relayed)
            steps["notifier_to_received"].append(received - consumed)
    return {name: {"p50_s": round(_percentile(v, 0.5), 3), "p99_s": round(_percentile(v, 0.99), 3)}
            for name, v in steps.items() if v}


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench notify: {what} not reached within {timeout_s:.0f}s")
        time.sleep(0.02)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from cronpipe.admin import create_org, create_project
    from notifier import store
    from schemas.clock import encode_clock_tick
    from schemas.messages import encode_check_in
    from schemas.topics import Topics, ensure_topics

    topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}-")
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    url = create_database(settings)
    receiver = Receiver()
    receiver.start()
    procs: list[subprocess.Popen[bytes]] = []
    watcher: CommitWatcher | None = None
    logs = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CRONPIPE_DATABASE_URL": url,
           "CRONPIPE_TOPIC_PREFIX": topics.prefix, "CRONPIPE_NOTIFY_ALLOW_PRIVATE": "1",
           "CRONPIPE_CHECKIN_RATE_LIMIT": "0"}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            create_org(conn, "bench")
            create_project(conn, "bench", "notify", project_id=1)
            with conn.transaction():
                seed_monitors(conn, args.incidents, next_checkin=T0)
            conn.execute("ANALYZE")
            store.create_channel(conn, "bench", "webhook", f"http://127.0.0.1:{receiver.port}/hook")
        watcher = CommitWatcher(url)
        for argv in (["worker", "--agents", "checkins,clock_tasks,relay"], ["notifier"]):
            with (logs / f"{argv[0]}.log").open("wb") as out:
                procs.append(subprocess.Popen([CRONPIPE, *argv], env=env, stdout=out, stderr=subprocess.STDOUT))
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 1})
        group = f"{topics.prefix}cronpipe"
        # Warm-up: a tick with nothing due, so assignment and connections are not timed.
        producer.produce(topics.clock_tick, value=encode_clock_tick(int(T0.timestamp())))
        producer.flush(10)
        _wait(lambda: _stored(url, group, topics.clock_tick).get(0, 0) >= 1, 180, "warm-up tick")
        time.sleep(5)  # the notifier's consumer joins its group
        # Steady part: fresh monitors, one ERROR each (threshold 1 opens an incident).
        before = len(receiver.seen)
        count = int(args.rate * args.seconds)
        produced: dict[str, float] = {}
        begin = time.monotonic()
        for i in range(count):
            due = begin + i / args.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            slug = f"steady-{i}"
            payload = {"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "error",
                       "monitor_config": {"schedule": {"type": "crontab", "value": "0 * * * *"}}}
            produced[slug] = time.time()
            producer.produce(topics.ingest, key=f"1:{slug}".encode(),
                             value=encode_check_in(payload, project_id=1, start_time=produced[slug]))
            producer.poll(0)
        producer.flush(10)
        _wait(lambda: len(receiver.seen) >= before + count, 300, f"{count} steady deliveries")
        steady_ids = list(receiver.seen)[before:]
        steady = [receiver.seen[i] for i in steady_ids]
        latencies = [a - c for c, a in steady]
        steady_figures = {"rate_per_s": args.rate, "seconds": args.seconds, "incidents": count,
                          "commit_to_delivery_p50_s": round(_percentile(latencies, 0.5), 3),
                          "commit_to_delivery_p99_s": round(_percentile(latencies, 0.99), 3),
                          "commit_to_delivery_max_s": round(max(latencies), 3),
                          "stages": stages(url, {i: receiver.seen[i] for i in steady_ids}, produced,
                                           receiver.slugs, watcher.committed)}
        # Mass outage: one tick makes every seeded monitor MISSED and opens its incident.
        before = len(receiver.seen)
        started = time.time()
        producer.produce(topics.clock_tick, value=encode_clock_tick(int((T0 + timedelta(minutes=1)).timestamp())))
        producer.flush(10)
        _wait(lambda: len(receiver.seen) >= before + args.incidents, 900, f"{args.incidents} deliveries")
        outage = list(receiver.seen.values())[before:]
        last = max(at for _, at in outage)
        outage_figures = {
            "incidents": args.incidents, "tick_to_last_delivery_s": round(last - started, 2),
            "commit_to_delivery_p50_s": round(_percentile([a - c for c, a in outage], 0.5), 3),
            "commit_to_delivery_p99_s": round(_percentile([a - c for c, a in outage], 0.99), 3)}
    finally:
        if watcher is not None:
            watcher.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            drop(settings, url, [t.name for t in topics.specs()])
    result = {"benchmark": "notify", "mass_outage": outage_figures, "steady": steady_figures,
              "requests": receiver.requests, "logs": str(logs),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "date": datetime.now(UTC).isoformat(timespec="seconds")}
    print(json.dumps(result))
    return 0
