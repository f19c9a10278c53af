"""`cronpipe bench pipeline`: end-to-end check-in throughput and produce→commit latency.

Against the configured Kafka and PostgreSQL (CRONPIPE_DATABASE_URL), in a fresh
organization/project and under a unique topic prefix:

1. **throughput**: produce ``--checkins`` messages with the load generator
   (``--monitors`` × ``--environments``), then start ``cronpipe worker --agents checkins``
   and measure messages committed per second from the stored offsets, between the first
   and the last committed batch (the worker's start-up and rebalance are not counted);
   also the check-in rows per second;
2. **latency**: with the worker caught up, produce at ``--rate`` (default: half the
   measured throughput) for ``--latency-seconds`` and read, per check-in row written,
   ``date_updated`` (when the processor wrote it) minus ``date_clock`` (the message's
   LogAppendTime timestamp): p50/p99/max;
3. **raw ceiling**: COPY the same number of rows into a copy of the check-ins table
   (same indexes, no foreign keys) from Python, the rate no processor can beat;
4. the worker's peak RSS (VmHWM).

The rate limit is turned off in the worker (``CRONPIPE_CHECKIN_RATE_LIMIT=0``) unless
``--rate-limit`` is given: 10,000 monitors × 3 environments at 20,000/s is ~40 check-ins
per environment and minute, which Sentry's 6/min limit would (correctly) reject.
Prints one JSON object on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient

from cronpipe.admin import create_org, create_project
from ingest.loadgen import PRODUCER_CONFIG, LoadGenerator, drive
from ingest.producer import CheckInProducer
from schemas.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    ratio,
)
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

UTC = timezone.utc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkins", type=positive_int, default=200_000, help="messages for the throughput run (default 200000)")
    parser.add_argument("--monitors", type=positive_int, default=10_000, help="monitors (default 10000)")
    parser.add_argument("--environments", type=positive_int, default=3, help="environments per monitor (default 3)")
    parser.add_argument("--pair-ratio", type=ratio, default=0.3, help="share of in_progress→ok pairs (default 0.3)")
    parser.add_argument("--rate", type=non_negative_float, default=0.0,
                        help="messages/s for the latency run (default: 50%% of the measured throughput)")
    parser.add_argument("--latency-seconds", type=positive_float, default=15.0, help="length of the latency run (default 15)")
    parser.add_argument("--timeout", type=positive_float, default=120.0,
                        help="give up waiting for the worker after this many seconds (default 120)")
    parser.add_argument("--rate-limit", type=non_negative_int, default=0,
                        help="CRONPIPE_CHECKIN_RATE_LIMIT for the worker (default 0: off, see --help text)")
    parser.add_argument("--skip-latency", action="store_true", help="only measure throughput and the COPY ceiling")
    parser.add_argument("--keep", action="store_true",
                        help="keep the bench's topics and rows (default: delete them at the end)")


@dataclass
class Bench:
    settings: Settings
    topics: Topics
    project_id: int
    worker: subprocess.Popen[bytes] | None = None

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.effective_database_url(), autocommit=True)

    def committed(self) -> int:
        """Messages of the bench topic whose batch committed (sum of stored next offsets)."""
        with self.db() as conn:
            row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = %s",
                               (self.topics.ingest,)).fetchone()
        return int(row[0]) if row else 0

    def rows(self) -> int:
        with self.db() as conn:
            row = conn.execute("SELECT count(*) FROM checkins WHERE project_id = %s", (self.project_id,)).fetchone()
        return int(row[0]) if row else 0


def log(message: str) -> None:
    print(f"bench pipeline: {message}", file=sys.stderr, flush=True)


def setup(settings: Settings) -> Bench:
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix=prefix)
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        org = create_org(conn, prefix.rstrip("-"))
        project = create_project(conn, org.slug, "bench")
    return Bench(Settings(**{**settings.__dict__, "topic_prefix": prefix}), topics, project.id)


def produce(bench: Bench, args: argparse.Namespace, *, count: int, rate: float, duration: float,
            slug_prefix: str = "bench") -> int:
    producer = CheckInProducer(bench.settings.kafka_bootstrap, bench.topics.ingest, config=PRODUCER_CONFIG)
    gen = LoadGenerator(producer, bench.project_id, monitors=args.monitors, environments=args.environments,
                        pair_ratio=args.pair_ratio, pair_delay=0.2, slug_prefix=slug_prefix, rng=random.Random(7))
    stats = drive(gen, rate=rate, count=count, duration=duration)
    if producer.failed:
        raise RuntimeError(f"{producer.failed} messages could not be produced")
    return stats.sent


def start_worker(bench: Bench, rate_limit: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": bench.settings.kafka_bootstrap,
           "CRONPIPE_DATABASE_URL": bench.settings.effective_database_url(),
           "CRONPIPE_TOPIC_PREFIX": bench.topics.prefix, "CRONPIPE_CHECKIN_RATE_LIMIT": str(rate_limit)}
    cronpipe = str(Path(sys.executable).with_name("cronpipe"))
    with open(log_path, "wb") as out:
        return subprocess.Popen([cronpipe, "worker", "--agents", "checkins", "--loglevel", "warn"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def peak_rss_mb(pid: int) -> dict[str, float]:
    """Peak RSS (VmHWM) of the worker process and of each child (the batch process)."""
    peaks = {"worker": _vm_hwm_mb(pid)}
    children: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # a child started by any thread
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    for n, child in enumerate(children):
        peaks[f"child_{n}"] = _vm_hwm_mb(int(child))
    return peaks


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def measure_throughput(bench: Bench, total: int, timeout_s: float) -> dict[str, Any]:
    """Poll the stored offsets until ``total`` messages committed; rate between first and last batch."""
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int, int] | None = None
    last = (time.monotonic(), 0, 0)
    while time.monotonic() < deadline:
        done = bench.committed()
        now = time.monotonic()
        if done and first is None:
            first = (now, done, bench.rows())
        if done != last[1]:
            last = (now, done, 0)
        if done >= total:
            break
        if bench.worker is not None and bench.worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {bench.worker.returncode}")
        time.sleep(0.1)
    if first is None:
        raise RuntimeError("the worker committed nothing before the timeout")
    rows = bench.rows()
    elapsed = max(last[0] - first[0], 1e-6)
    return {"messages": total, "committed": last[1], "seconds": round(elapsed, 2),
            "messages_per_s": round((last[1] - first[1]) / elapsed), "checkin_rows": rows,
            "checkin_rows_per_s": round((rows - first[2]) / elapsed), "complete": last[1] >= total}


def measure_latency(bench: Bench, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    start = datetime.now(UTC)
    before = bench.committed()
    sent = produce(bench, args, count=0, rate=rate, duration=args.latency_seconds, slug_prefix="bench")
    deadline = time.monotonic() + args.timeout
    while bench.committed() < before + sent and time.monotonic() < deadline:
        time.sleep(0.1)
    with bench.db() as conn:
        row = conn.execute(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY lat), max(lat)"
            " FROM (SELECT extract(epoch FROM date_updated - date_clock) AS lat FROM checkins"
            "        WHERE project_id = %s AND date_clock >= %s) AS l", (bench.project_id, start)).fetchone()
    assert row is not None
    return {"rate": round(rate), "seconds": args.latency_seconds, "sent": sent, "rows": row[0],
            "p50_s": _round(row[1]), "p99_s": _round(row[2]), "max_s": _round(row[3])}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def measure_copy_ceiling(bench: Bench, n: int) -> dict[str, Any]:
    """COPY ``n`` check-in-shaped rows into a copy of the table (same indexes, no FKs)."""
    table = f"bench_copy_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    config = json.dumps({"schedule_type": "crontab", "schedule": "*/5 * * * *"})
    with bench.db() as conn:
        conn.execute(f"CREATE TABLE {table} (LIKE checkins INCLUDING DEFAULTS INCLUDING INDEXES)")
        try:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    f"COPY {table} (id, guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
                    " date_updated, date_clock, duration_ms, monitor_config) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row((i + 1, uuid.uuid4(), bench.project_id, i % 10_000, i % 30_000, 1, now, now, now,
                                    1500, config))
            elapsed = time.perf_counter() - started
        finally:
            conn.execute(f"DROP TABLE {table}")
    return {"rows": n, "seconds": round(elapsed, 2), "rows_per_s": round(n / elapsed)}


def stop_worker(bench: Bench) -> int | None:
    if bench.worker is None or bench.worker.poll() is not None:
        return None if bench.worker is None else bench.worker.returncode
    bench.worker.send_signal(signal.SIGTERM)
    try:
        return bench.worker.wait(60)
    except subprocess.TimeoutExpired:
        bench.worker.kill()
        return bench.worker.wait(10)


def run(settings: Settings, args: argparse.Namespace) -> int:
    bench = setup(settings)
    log(f"topic prefix {bench.topics.prefix}, project {bench.project_id}; producing {args.checkins} messages")
    produced_at = time.monotonic()
    total = produce(bench, args, count=args.checkins, rate=0, duration=0)
    produce_rate = total / (time.monotonic() - produced_at)
    log(f"produced {total} messages ({produce_rate:,.0f}/s); starting the worker")
    log_path = Path(f"/tmp/{bench.topics.prefix}worker.log")
    bench.worker = start_worker(bench, args.rate_limit, log_path)
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "monitors": args.monitors, "environments": args.environments,
                              "produce_messages_per_s": round(produce_rate), "worker_log": str(log_path)}
    try:
        result["throughput"] = measure_throughput(bench, total, args.timeout)
        log(f"throughput: {result['throughput']}")
        if not args.skip_latency:
            rate = args.rate or result["throughput"]["messages_per_s"] / 2
            result["latency"] = measure_latency(bench, args, rate)
            log(f"latency: {result['latency']}")
        result["worker_peak_rss_mb"] = peak_rss_mb(bench.worker.pid)
    finally:
        result["worker_exit_code"] = stop_worker(bench)
    result["copy_ceiling"] = measure_copy_ceiling(bench, min(total, 200_000))
    if not args.keep:
        clean_up(bench)
    print(json.dumps(result), flush=True)
    return 0


# Children before parents; every row the bench's project, org and topics produced.
_CLEAN_UP = [
    "DELETE FROM checkin_attachments WHERE project_id = %(project)s",
    "DELETE FROM incidents WHERE monitor_id IN (SELECT id FROM monitors WHERE project_id = %(project)s)",
    "DELETE FROM checkin_rollups WHERE monitor_environment_id IN (SELECT e.id FROM monitor_environments e"
    " JOIN monitors m ON m.id = e.monitor_id WHERE m.project_id = %(project)s)",
    # The guid rows first: the trigger writes them, nothing deletes them with the check-ins, and
    # left behind they grow the guid index every later run inserts into.
    "DELETE FROM checkin_guids g USING checkins c WHERE c.project_id = %(project)s AND g.guid = c.guid",
    "DELETE FROM checkins WHERE project_id = %(project)s",
    "DELETE FROM monitor_environments WHERE monitor_id IN (SELECT id FROM monitors WHERE project_id = %(project)s)",
    "DELETE FROM processing_errors WHERE project_id = %(project)s",
    "DELETE FROM monitors WHERE project_id = %(project)s",
    "DELETE FROM project_keys WHERE project_id = %(project)s",
    "DELETE FROM projects WHERE id = %(project)s",
    "DELETE FROM organizations WHERE slug = %(org)s",
    "DELETE FROM consumer_offsets WHERE topic LIKE %(topics)s",
    "DELETE FROM partition_clocks WHERE topic LIKE %(topics)s",
]


def clean_up(bench: Bench) -> None:
    """Delete the bench's rows and topics, so runs do not pile up in a shared database."""
    params = {"project": bench.project_id, "org": bench.topics.prefix.rstrip("-"),
              "topics": bench.topics.prefix.replace("_", "\\_") + "%"}
    with bench.db() as conn, conn.transaction():
        for statement in _CLEAN_UP:
            conn.execute(statement, params)
    admin = AdminClient({"bootstrap.servers": bench.settings.kafka_bootstrap})
    for future in admin.delete_topics([spec.name for spec in bench.topics.specs()], operation_timeout=30).values():
        try:
            future.result()
        except Exception as exc:  # a topic that is already gone is fine
            log(f"could not delete a topic: {exc}")


def machine() -> str:
    cpus = os.cpu_count()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown cpu"
    return f"{cpus} cpu ({model}), Kafka and PostgreSQL on the same machine"
