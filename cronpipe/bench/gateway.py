"""`cronpipe bench gateway`: HTTP ingest throughput and latency, against a do-nothing baseline.

Against the configured Kafka and PostgreSQL, in a database and topics of its own (dropped
afterwards unless ``--keep``), with keep-alive load from ``wrk`` (a separate C process, so the load
client costs little of the CPU the gateway needs) on loopback:

1. **baseline**: ``cronpipe gateway --workers N`` with ``CRONPIPE_GATEWAY_NOOP=1`` — the
   same server stack (uvicorn, httptools, uvloop, the same ASGI app and routing) answering
   the same requests at once, touching neither PostgreSQL nor Kafka;
2. **gateway**: the real gateway, same requests: ``GET /api/{p}/cron/{slug}/{key}/?status=ok
   &check_in_id=<unique>`` over ``--monitors`` monitors, each answered 202 only after Kafka
   acknowledged it;
3. **Kafka check**: the messages in the topic (sum of high watermarks) against the 202s
   wrk counted. wrk stops with requests in flight whose 202 it never reads, so the topic may
   hold up to ``--connections`` more than wrk counted, never fewer;
4. **PostgreSQL check** (unless ``--no-processor``): ``cronpipe worker --agents checkins``
   stores them; the check-in rows are counted against the same 202s.

``--stacks`` instead compares bare HTTP stacks on one worker (a fixed 202 from raw ASGI,
Starlette and FastAPI, all on uvicorn with httptools and uvloop): the numbers behind the
choice of raw ASGI.

Each run is bounded by ``--seconds`` (≤ 30) and ``--requests``. Prints one JSON object on
stdout, progress on stderr. Needs ``wrk`` (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cronpipe.admin import create_org, create_project
from cronpipe.probes import free_port, high_watermarks, wait_for_http
from schemas.argtypes import positive_float, positive_int
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

MAX_SECONDS = 30.0

# Unique check-in ids per request (run nonce + thread number + counter; check-in guids are
# unique across the whole table, so two runs must never share one), monitors in rotation;
# each thread stops itself after its share of --requests.
WRK_SCRIPT = """
local threads = {}
local next_id = 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  base = args[1]
  key = args[2]
  monitors = tonumber(args[3])
  limit = tonumber(args[4])
  nonce = args[5]
  counter = 0
  answered = 0
end
function request()
  counter = counter + 1
  local slug = "gw-" .. (counter % monitors)
  local cid = nonce .. string.format("%04x%016x", tid, counter)
  return wrk.format("GET", base .. slug .. "/" .. key .. "/?status=ok&check_in_id=" .. cid)
end
function response(status, headers, body)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=positive_float, default=10.0, help=f"length of each run, at most {MAX_SECONDS:g} (default 10)")
    parser.add_argument("--requests", type=positive_int, default=1_000_000, help="request cap per run (default 1000000)")
    parser.add_argument("--connections", type=positive_int, default=128, help="keep-alive connections (default 128)")
    parser.add_argument("--threads", type=positive_int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--workers", type=positive_int, default=2, help="gateway worker processes (default 2)")
    parser.add_argument("--monitors", type=positive_int, default=1000, help="monitors the requests rotate over (default 1000)")
    parser.add_argument("--no-processor", action="store_true", help="skip the PostgreSQL check (no worker)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and topics for inspection")
    parser.add_argument("--stacks", action="store_true",
                        help="only compare bare raw-ASGI / Starlette / FastAPI servers (one worker each)")
    parser.add_argument("--timeout", type=positive_float, default=300.0,
                        help="give up waiting for the worker to store the check-ins after this many seconds (default 300)")


@dataclass
class Bench:
    settings: Settings
    topics: Topics
    project_id: int
    public_key: str
    log_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
                "CRONPIPE_DATABASE_URL": self.settings.effective_database_url(),
                "CRONPIPE_TOPIC_PREFIX": self.topics.prefix, **extra}


def log(message: str) -> None:
    print(f"bench gateway: {message}", file=sys.stderr, flush=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per setup request otherwise
    wrk = shutil.which("wrk")
    if wrk is None:
        print("cronpipe: error: wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 1
    seconds = min(args.seconds, MAX_SECONDS)
    if args.stacks:
        print(json.dumps(compare_stacks(wrk, args, seconds)), flush=True)
        return 0
    bench = setup(settings)
    log(f"database {bench.settings.effective_database_url()}, topic prefix {bench.topics.prefix}, "
        f"logs in {bench.log_dir}")
    try:
        return measure(bench, args, wrk, seconds)
    finally:
        if not args.keep:
            teardown(settings, bench)


def measure(bench: Bench, args: argparse.Namespace, wrk: str, seconds: float) -> int:
    baseline = run_server(bench, args, wrk, seconds, noop=True)
    log(f"baseline: {baseline['accepted_per_s']}/s, p99 {baseline['p99_ms']} ms")
    real = run_server(bench, args, wrk, seconds, noop=False)
    log(f"gateway: {real['accepted_per_s']}/s, p99 {real['p99_ms']} ms")
    expected = real["accepted"] + args.monitors  # plus the requests that created the monitors
    in_kafka = topic_messages(bench)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "settings": {"seconds": seconds, "connections": args.connections, "wrk_threads": args.threads,
                     "workers": args.workers, "monitors": args.monitors},
        "baseline_noop": baseline, "gateway": real,
        "kafka": {"messages": in_kafka, "accepted_incl_setup": expected, "missing": max(0, expected - in_kafka),
                  "unread_202s": in_kafka - expected},
    }
    if not args.no_processor:
        result["postgres"] = verify_postgres(bench, expected, args.timeout)
    print(json.dumps(result), flush=True)
    return 0 if in_kafka >= expected else 1


def setup(settings: Settings) -> Bench:
    """A migrated database of its own (the bench writes ~100,000 check-ins per run) and topics."""
    from schemas.migrate import apply_migrations

    suffix = uuid.uuid4().hex[:8]
    name = f"bench_gateway_{suffix}"
    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(settings.effective_database_url(), dbname=name)
    apply_migrations(url)
    topics = Topics(prefix=f"bench-gw-{suffix}-")
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    with psycopg.connect(url, autocommit=True) as conn:
        org = create_org(conn, "bench")
        project = create_project(conn, org.slug, "bench")
    log_dir = Path(tempfile.mkdtemp(prefix="cronpipe-bench-gateway-"))
    own = Settings(**{**settings.__dict__, "topic_prefix": topics.prefix, "database_url": url})
    return Bench(own, topics, project.id, project.public_key, log_dir)


def teardown(settings: Settings, bench: Bench) -> None:
    """Drop the bench database and delete its topics (nothing else)."""
    from confluent_kafka.admin import AdminClient

    name = psycopg.conninfo.conninfo_to_dict(bench.settings.effective_database_url())["dbname"]
    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    names = [spec.name for spec in bench.topics.specs()]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for name, future in admin.delete_topics(names, operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # KafkaException; the bench's figures stand anyway
            log(f"could not delete topic {name}: {exc}")


# ---------------------------------------------------------------------- one server run


def run_server(bench: Bench, args: argparse.Namespace, wrk: str, seconds: float, *, noop: bool) -> dict[str, Any]:
    port = free_port()
    name = "noop" if noop else "gateway"
    server = start_gateway(bench, port, args.workers, noop=noop, log_path=bench.log_dir / f"{name}.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", status=200, process=server, name="the gateway")
        if not noop:
            create_monitors(base, bench, args.monitors)
        output = run_wrk(wrk, base, bench, args, seconds, script_dir=bench.log_dir)
    finally:
        code = stop(server)
    figures = parse_wrk(output)
    figures["exit_code"] = code
    return figures


def start_gateway(bench: Bench, port: int, workers: int, *, noop: bool, log_path: Path) -> subprocess.Popen[bytes]:
    env = bench.env(CRONPIPE_GATEWAY_PORT=str(port), CRONPIPE_BIND="127.0.0.1",
                    CRONPIPE_GATEWAY_NOOP="1" if noop else "0")
    cronpipe = str(Path(sys.executable).with_name("cronpipe"))
    with open(log_path, "wb") as out:
        return subprocess.Popen([cronpipe, "gateway", "--workers", str(workers)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def create_monitors(base: str, bench: Bench, monitors: int) -> None:
    """One check-in with a monitor_config per monitor, so the processor knows them all."""
    config = {"schedule": {"type": "crontab", "value": "* * * * *"}, "checkin_margin": 60}
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(monitors):
            response = client.post(f"/api/{bench.project_id}/cron/gw-{n}/{bench.public_key}/",
                                   json={"status": "ok", "check_in_id": uuid.uuid4().hex, "monitor_config": config})
            if response.status_code != 202:
                raise RuntimeError(f"creating monitor gw-{n}: {response.status_code} {response.text}")


def run_wrk(wrk: str, base: str, bench: Bench, args: argparse.Namespace, seconds: float, script_dir: Path) -> str:
    script = script_dir / "checkins.lua"
    script.write_text(WRK_SCRIPT)
    per_thread = max(1, args.requests // args.threads)
    command = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s", "--latency",
               "-s", str(script), base, "--", f"{base}/api/{bench.project_id}/cron/", bench.public_key,
               str(args.monitors), str(per_thread), uuid.uuid4().hex[:12]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return done.stdout


def stop(server: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return -9


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """wrk's summary: requests, non-2xx, duration, percentiles (ms)."""
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if total is None:
        raise RuntimeError(f"unexpected wrk output: {output}")
    requests, elapsed = int(total.group(1)), float(total.group(2)) * _UNITS[total.group(3)] / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    accepted = requests - (int(non_2xx.group(1)) if non_2xx else 0)
    figures: dict[str, Any] = {"requests": requests, "accepted": accepted, "seconds": round(elapsed, 2),
                               "accepted_per_s": round(accepted / elapsed) if elapsed else 0,
                               "socket_errors": errors.group(1).strip() if errors else None}
    for percentile in ("50", "90", "99"):
        found = re.search(rf"^\s+{percentile}%\s+([\d.]+)(\w+)", output, re.MULTILINE)
        figures[f"p{percentile}_ms"] = round(float(found.group(1)) * _UNITS[found.group(2)], 2) if found else None
    return figures


# ---------------------------------------------------------------------- checks


def topic_messages(bench: Bench) -> int:
    """Messages in the bench's ingest topic: the sum of the partitions' high watermarks."""
    return sum(high_watermarks(bench.settings.kafka_bootstrap, bench.topics.ingest).values())


def verify_postgres(bench: Bench, expected: int, timeout_s: float) -> dict[str, Any]:
    """Run the processor until the check-in rows reach ``expected`` (or the timeout)."""
    env = bench.env(CRONPIPE_CHECKIN_RATE_LIMIT="0")  # the bench sends far above Sentry's 6/min
    cronpipe = str(Path(sys.executable).with_name("cronpipe"))
    with open(bench.log_dir / "worker.log", "wb") as out:
        worker = subprocess.Popen([cronpipe, "worker", "--agents", "checkins", "--loglevel", "warn"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started = time.monotonic()
    rows = 0
    try:
        while time.monotonic() - started < timeout_s and rows < expected and worker.poll() is None:
            time.sleep(1.0)
            rows = count_rows(bench)
    finally:
        stop(worker)
    log(f"postgres: {rows} of {expected} check-ins stored")
    return {"checkin_rows": rows, "accepted_incl_setup": expected, "missing": max(0, expected - rows),
            "seconds": round(time.monotonic() - started, 1)}


def count_rows(bench: Bench) -> int:
    with psycopg.connect(bench.settings.effective_database_url()) as conn:
        row = conn.execute("SELECT count(*) FROM checkins WHERE project_id = %s", (bench.project_id,)).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------- bare stacks


_STACK_PATH = "/api/1/cron/job/0123456789abcdef0123456789abcdef/"
_STACK_BODY = b'{"id":"00000000000000000000000000000000"}'


def raw_asgi_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": _STACK_BODY})

    return app


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def cron(request: Request) -> Response:
        return Response(_STACK_BODY, status_code=202, media_type="application/json")

    return Starlette(routes=[Route("/api/{project_id:int}/cron/{slug}/{key}/", cron, methods=["GET", "POST"])])


def fastapi_app() -> Any:
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.get("/api/{project_id}/cron/{slug}/{key}/", status_code=202)
    async def cron(project_id: int, slug: str, key: str, status: str = "ok") -> Response:
        return Response(_STACK_BODY, status_code=202, media_type="application/json")

    return app


def compare_stacks(wrk: str, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, factory in (("raw_asgi", "raw_asgi_app"), ("starlette", "starlette_app"), ("fastapi", "fastapi_app")):
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"cronpipe.bench.gateway:{factory}", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
            stdin=subprocess.DEVNULL)
        try:
            wait_for_http(f"http://127.0.0.1:{port}{_STACK_PATH}?status=ok", timeout_s=30, process=server, name=name)
            done = subprocess.run([wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s",
                                   "--latency", f"http://127.0.0.1:{port}{_STACK_PATH}?status=ok"],
                                  capture_output=True, text=True, timeout=seconds + 60, check=True)
        finally:
            stop(server)
        results[name] = parse_wrk(done.stdout)
        log(f"{name}: {results[name]['accepted_per_s']}/s, p99 {results[name]['p99_ms']} ms")
    return {"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
            "settings": {"seconds": seconds, "connections": args.connections, "workers": 1}, "stacks": results}
