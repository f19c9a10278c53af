"""`cronpipe bench clock --under-load`: how late MISSED is written under a steady check-in load.

Issue 4's second target: "MISSED is written within 2 ticks of next_checkin_latest under a
20,000 check-ins/s load". The clock runs on message time, so the bench compresses time:
CreateTime topics, and one message minute of check-ins (one per monitor) is produced every
``monitors / rate`` wall seconds (10,000 monitors at 5,000/s: a message minute every 2 s,
30x faster than real time). Message time starts two minutes after the wall clock and only
runs ahead of it, so the real worker's leader pulses (stamped with the wall clock) are
older than every partition's position and move nothing.

For every MISSED row of a silent monitor the bench records, when it first sees the row
(polling every 0.2 s): its tick (``date_clock``), the load's message-time frontier (the
newest minute produced: the "present" of the compressed world) and the wall seconds since
the load first reached the deadline minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from cronpipe.bench.clock_database import create_database, drop, scalar
from schemas.enums import CheckInStatus
from schemas.minutes import floor_minute
from schemas.settings import Settings

UTC = timezone.utc
MISSED = int(CheckInStatus.MISSED)

LOAD_CONFIG = {"schedule": {"type": "crontab", "value": "* * * * *"}, "checkin_margin": 1}
LOAD_MARGIN = timedelta(minutes=1)
WARM_UP_MINUTES = 2
POLL_S = 0.2


class LoadClock:
    """What the producer has reached, shared with the poller thread (plain attributes: one
    writer, GIL-atomic assignments)."""

    def __init__(self) -> None:
        self.frontier: datetime | None = None
        self.minute_started: dict[datetime, float] = {}


def _load_topics(settings: Settings) -> Any:
    from dataclasses import replace

    from schemas.topics import Topics, ensure_topics

    topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}-", timestamp_type="CreateTime", ingest_partitions=8)
    # Stamps run up to an hour ahead of the broker's clock: keep Kafka from rejecting or
    # deleting them (message.timestamp.after.max.ms defaults to one hour since Kafka 4.0).
    extra = {"retention.ms": "-1", "message.timestamp.after.max.ms": str(7 * 24 * 3600 * 1000)}
    ensure_topics(settings.kafka_bootstrap, [replace(s, config={**s.config, **extra}) for s in topics.specs()])
    return topics


def _start_worker(settings: Settings, url: str, prefix: str) -> tuple[Any, str]:
    import subprocess
    from pathlib import Path

    log_path = f"/tmp/{prefix}worker.log"
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CRONPIPE_DATABASE_URL": url,
           "CRONPIPE_TOPIC_PREFIX": prefix}
    cronpipe = str(Path(sys.executable).with_name("cronpipe"))
    with open(log_path, "wb") as out:
        worker = subprocess.Popen([cronpipe, "worker", "--agents", "all", "--loglevel", "warn"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    return worker, log_path


def _stop_worker(worker: Any) -> int | None:
    import signal
    import subprocess

    if worker.poll() is not None:
        return int(worker.returncode)
    worker.send_signal(signal.SIGTERM)
    try:
        return int(worker.wait(60))
    except subprocess.TimeoutExpired:
        worker.kill()
        return int(worker.wait(10))


class LoadProducer:
    """Check-ins and pulses with chosen message times, keyed like the gateway's."""

    def __init__(self, bootstrap: str, topics: Any) -> None:
        from confluent_kafka import Producer

        from ingest.loadgen import PRODUCER_CONFIG

        self.topics = topics
        self.producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
        self.sent = 0

    def check_in(self, slug: str, at: datetime, *, config: bool) -> None:
        from schemas.messages import encode_check_in

        payload: dict[str, Any] = {"check_in_id": uuid.uuid4().hex, "monitor_slug": slug, "status": "ok"}
        if config:  # like the load generator: the first check-in creates the monitor
            payload["monitor_config"] = LOAD_CONFIG
        value = encode_check_in(payload, project_id=1, start_time=at.timestamp())
        while True:
            try:
                self.producer.produce(self.topics.ingest, key=f"1:{slug}".encode(), value=value,
                                      timestamp=int(at.timestamp() * 1000))
                break
            except BufferError:
                self.producer.poll(0.05)  # back-pressure: let librdkafka drain its queue
        self.sent += 1
        if self.sent % 1000 == 0:
            self.producer.poll(0)

    def pulse_all(self, at: datetime) -> None:
        from schemas.messages import encode_clock_pulse

        for partition in range(self.topics.ingest_partitions):
            self.producer.produce(self.topics.ingest, value=encode_clock_pulse(), partition=partition,
                                  timestamp=int(at.timestamp() * 1000))

    def flush(self) -> None:
        if self.producer.flush(60):
            raise RuntimeError("load messages not delivered within 60 s")


def _committed(conn: psycopg.Connection[Any], topic: str) -> int:
    row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = %s",
                       (topic,)).fetchone()
    return int(row[0]) if row else 0


async def _until(predicate: Any, timeout_s: float, what: str, worker: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(POLL_S)


class MissedPoller:
    """Polls the silent monitors' MISSED rows and the committed offsets from a thread."""

    def __init__(self, url: str, topic: str, clock: LoadClock) -> None:
        self.url = url
        self.topic = topic
        self.clock = clock
        self.env_ids: list[int] = []
        #: (env id, expected_time) → (tick, wall time seen, load frontier when seen)
        self.seen: dict[tuple[int, datetime], tuple[datetime, float, datetime | None]] = {}
        self.committed: list[tuple[float, int]] = []
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop:
                self.poll(conn)
                time.sleep(POLL_S)

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        frontier = self.clock.frontier
        self.committed.append((now, _committed(conn, self.topic)))
        if not self.env_ids:
            return
        rows = conn.execute("SELECT monitor_environment_id, expected_time, date_clock FROM checkins"
                            f" WHERE status = {MISSED} AND monitor_environment_id = ANY(%s)", (self.env_ids,))
        for env_id, expected, tick in rows:
            self.seen.setdefault((int(env_id), expected), (tick, now, frontier))


def _silent_slugs(monitors: int, silent: int) -> list[str]:
    step = max(monitors // max(silent, 1), 1)
    return [f"load-{i * step + step // 2}" for i in range(min(silent, monitors))]


def _produce_minute(producer: LoadProducer, clock: LoadClock, minute: datetime, slugs: list[str],
                    rate: float, started: float, skip: set[str], *, config: bool = False) -> None:
    """One message minute: each monitor's check-in spread over its first 55 s, paced at
    ``rate``/s since ``started``, then a pulse on every partition (idle-partition guard)."""
    clock.minute_started.setdefault(minute, time.monotonic())
    spread = 55.0 / len(slugs)
    for i, slug in enumerate(slugs):
        at = minute + timedelta(seconds=i * spread)
        if i % 500 == 0:
            clock.frontier = at
            while producer.sent > rate * (time.monotonic() - started):
                time.sleep(0.002)
        if slug not in skip:
            producer.check_in(slug, at, config=config)
    producer.pulse_all(minute + timedelta(seconds=56))
    clock.frontier = minute + timedelta(seconds=56)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _lateness(poller: MissedPoller, clock: LoadClock, last_tick: datetime) -> dict[str, Any]:
    """Per MISSED row of a silent monitor whose deadline the clock reached: ticks late."""
    by_row, by_load, wall = [], [], []
    for (_, expected), (tick, seen_at, frontier) in poller.seen.items():
        deadline = expected + LOAD_MARGIN
        by_row.append((tick - deadline) / timedelta(minutes=1))
        if frontier is not None:
            by_load.append((frontier - deadline) / timedelta(minutes=1))
        reached = clock.minute_started.get(deadline)
        if reached is not None:
            wall.append(seen_at - reached)
    summary = {"max": None, "p50": None}

    def stats(values: list[float]) -> dict[str, float | None]:
        return {"p50": _round(_percentile(values, 0.5)), "max": _round(max(values) if values else None)}

    return {"rows": len(poller.seen), "ticks_late_by_row_tick": stats(by_row) if by_row else summary,
            "ticks_late_vs_load_frontier": stats(by_load) if by_load else summary,
            "wall_s_from_load_reaching_deadline": stats(wall) if wall else summary,
            "last_tick": last_tick.isoformat()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _load_rate(samples: list[tuple[float, int]], from_count: int, to_count: int) -> float | None:
    """Committed ingest messages per wall second between the first samples at or past
    ``from_count`` and ``to_count`` (the warm-up's monitor creation is not counted)."""
    start = next((s for s in samples if s[1] >= from_count), None)
    end = next((s for s in samples if s[1] >= to_count), samples[-1] if samples else None)
    if start is None or end is None or end[0] <= start[0]:
        return None
    return round((end[1] - start[1]) / (end[0] - start[0]))


async def _drive_load(settings: Settings, topics: Any, url: str, args: argparse.Namespace,
                      worker: Any) -> dict[str, Any]:
    import threading

    slugs = [f"load-{i}" for i in range(args.load_monitors)]
    silent = _silent_slugs(args.load_monitors, args.silent)
    producer = LoadProducer(settings.kafka_bootstrap, topics)
    clock = LoadClock()
    t0 = floor_minute(datetime.now(UTC)) + timedelta(minutes=2)
    with psycopg.connect(url, autocommit=True) as conn:
        # The worker is up when it has committed a pulse on every ingest partition.
        producer.pulse_all(t0 - timedelta(seconds=30))
        producer.flush()
        await _until(lambda: scalar(conn.execute("SELECT count(*) FROM consumer_offsets WHERE topic = %s",
                                          (topics.ingest,))) >= topics.ingest_partitions,
                     120, "worker start", worker)
        poller = MissedPoller(url, topics.ingest, clock)
        thread = threading.Thread(target=poller.run, name="missed-poller", daemon=True)
        thread.start()
        started = time.monotonic()
        for k in range(WARM_UP_MINUTES):
            _produce_minute(producer, clock, t0 + timedelta(minutes=k), slugs, args.rate, started, set(),
                            config=k == 0)
        warm_up_messages = producer.sent
        load_started = time.monotonic()
        load_start_count = producer.sent
        for k in range(WARM_UP_MINUTES, WARM_UP_MINUTES + args.minutes):
            _produce_minute(producer, clock, t0 + timedelta(minutes=k), slugs, args.rate, started, set(silent))
            if not poller.env_ids:
                poller.env_ids = [int(r[0]) for r in conn.execute(
                    "SELECT e.id FROM monitor_environments e JOIN monitors m ON m.id = e.monitor_id"
                    " WHERE m.slug = ANY(%s)", (silent,))]
        end = t0 + timedelta(minutes=WARM_UP_MINUTES + args.minutes)
        producer.pulse_all(end)  # the clock ticks the last minute of load
        producer.flush()
        load_s = time.monotonic() - started
        offered = (producer.sent - load_start_count) / (time.monotonic() - load_started)
        total = producer.sent + 8 * (WARM_UP_MINUTES + args.minutes + 2)
        await _until(lambda: _committed(conn, topics.ingest) >= total, 90, "the processor draining", worker)
        last_minute = end - timedelta(minutes=1)
        await _until(lambda: (conn.execute("SELECT last_tick FROM clock_state WHERE name = %s",
                                           (topics.ingest,)).fetchone() or [t0])[0] >= end,
                     60, "the last tick", worker)
        # Deadlines up to the last tick: (silent from minute WARM_UP..end) → MISSED slots
        # WARM_UP .. end-1 (deadline slot + 1 <= end).
        expected_rows = len(silent) * args.minutes
        await _until(lambda: len(poller.seen) >= expected_rows, 60, "the MISSED rows", worker)
        poller.stop()
        thread.join(5)
        false_missed = scalar(conn.execute("SELECT count(*) FROM checkins c JOIN monitors m ON m.id = c.monitor_id"
                                    f" WHERE c.status = {MISSED} AND NOT m.slug = ANY(%s)", (silent,)))
        processed_rate = _load_rate(poller.committed, warm_up_messages, total)
    return {"monitors": args.load_monitors, "silent_monitors": len(silent), "message_minutes": args.minutes,
            "warm_up_minutes": WARM_UP_MINUTES,
            "compression": round(60 / (args.load_monitors / args.rate), 1),
            "offered_checkins_per_s": round(offered), "processed_checkins_per_s": processed_rate,
            "load_wall_s": round(load_s, 1), "checkins_sent": producer.sent,
            "missed_expected": expected_rows, "false_missed": int(false_missed),
            "first_minute": t0.isoformat(), "last_load_minute": last_minute.isoformat(),
            **_lateness(poller, clock, end)}


def _drop_prefixed(settings: Settings, url: str, prefix: str) -> None:
    """The database and every topic of the prefix (the contract's and faust's own)."""
    from confluent_kafka.admin import AdminClient

    names = [t for t in AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10).topics
             if t.startswith(prefix)]
    drop(settings, url, names)


def run_under_load(settings: Settings, args: argparse.Namespace) -> int:
    """``--under-load``: a real ``cronpipe worker`` (all agents) under a compressed
    message-time load; prints the lateness of every MISSED of the silent monitors."""
    from cronpipe.admin import create_org, create_project

    topics = _load_topics(settings)
    url = create_database(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        create_org(conn, "bench")
        create_project(conn, "bench", "clock", project_id=1)
    worker, log_path = _start_worker(settings, url, topics.prefix)
    figures: dict[str, Any] = {}
    try:
        figures = asyncio.run(_drive_load(settings, topics, url, args, worker))
    finally:
        exit_code = _stop_worker(worker)
        if not args.keep:
            _drop_prefixed(settings, url, topics.prefix)
    result = {"benchmark": "clock --under-load", **figures, "worker_exit_code": exit_code,
              "worker_log": log_path, "date": datetime.now(UTC).isoformat(timespec="seconds")}
    print(json.dumps(result))
    late = figures.get("ticks_late_vs_load_frontier", {}).get("max")
    print(f"clock under load: {figures.get('rows')} MISSED of {figures.get('missed_expected')} expected,"
          f" at most {late} ticks after the deadline (load frontier), row tick"
          f" {figures.get('ticks_late_by_row_tick')}, {figures.get('processed_checkins_per_s')} check-ins/s"
          f" processed, {figures.get('false_missed')} false MISSED", file=sys.stderr)
    ok = figures.get("rows") == figures.get("missed_expected") and figures.get("false_missed") == 0
    return 0 if ok and late is not None and late <= 2 else 1
