"""`cronpipe bench api`: read API throughput, latency and CPU per request against a real `cronpipe api`.

Seeds a private database: one monitor with one check-in a minute for 90 days (≈130,000
rows, COPY) plus the hourly and daily rollups derived from them, 1,000 more monitors, and
the first monitor's rollups copied to ``COPIES`` more monitors. Then, against `cronpipe
api` on a random port, with keep-alive connections (8 clients by default):

* ``stats``: stats at 1 h resolution over the 90 days (2,161 buckets), the same request
  again and again: served from the API's stats cache (``api.stats_cache``) but for one
  refresh per worker per half second;
* ``stats_uncached``: the same shape, every request a different key (another monitor or
  another last bucket), so each one aggregates and renders its buckets;
* ``monitor_list``: the first page of 100 of the 1,000 monitors, with their environments;
* the same stats computed in SQL from the rollups vs from the check-ins table.

Each load phase reports requests/s, p50 and p99 and the CPU per request of the API
processes, of their PostgreSQL backends and of the load client (``api_profile``);
``--profile DIR`` adds a py-spy breakdown by stage. The load client is a minimal HTTP/1.1
client on asyncio streams, so its own CPU stays small next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cronpipe.bench.api_profile import CpuMeter, finish_profile, start_profile
from schemas.argtypes import positive_float, positive_int
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.migrate import apply_migrations
from schemas.rollup_counts import REBUILD_ROLLUPS
from schemas.settings import Settings

DAYS = 90
HISTORY_START = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = {"schedule_type": "crontab", "schedule": "* * * * *", "checkin_margin": 1, "max_runtime": 30,
          "timezone": "UTC", "failure_issue_threshold": 1, "recovery_threshold": 1}
STATUS_WEIGHTS = {CheckInStatus.OK: 94, CheckInStatus.ERROR: 3, CheckInStatus.MISSED: 2, CheckInStatus.TIMEOUT: 1}
#: Monitors carrying a copy of the stats monitor's rollups, and last buckets per monitor:
#: the uncached phase cycles through COPIES × EXTRA_HOURS distinct stats keys, so a key
#: comes back only after ≫ the cache's 1 s bound.
COPIES = 16
EXTRA_HOURS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="duration of each load phase (default 5)")
    parser.add_argument("--clients", type=positive_int, default=8, help="concurrent keep-alive clients (default 8)")
    parser.add_argument("--workers", type=positive_int, default=2, help="`cronpipe api` worker processes (default 2)")
    parser.add_argument("--checkins", type=positive_int, default=DAYS * 24 * 60,
                        help=f"check-ins of the stats monitor over {DAYS} days (default one a minute)")
    parser.add_argument("--monitors", type=positive_int, default=1000, help="monitors in the organization (default 1000)")
    parser.add_argument("--server-python", metavar="PYTHON", default=sys.executable,
                        help="interpreter that runs `cronpipe api` (default this one); another checkout's"
                             " .venv/bin/python measures that code under the same load (A/B)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also sample the API with py-spy in each load phase (collapsed stacks into DIR,"
                             " a breakdown by stage in the output; slows the phases it samples)")


# --- seeding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    token: str
    checkins: int


def _create_database(admin_url: str) -> tuple[str, str]:
    name = f"cronpipe_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name, psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _seed(url: str, checkins: int, monitors: int) -> Seeded:
    from cronpipe.admin import create_org, create_project, create_token

    rng = random.Random(90)
    with psycopg.connect(url, autocommit=True) as conn:
        org = create_org(conn, "bench")
        project = create_project(conn, "bench", "jobs")
        token = create_token(conn, "bench")
        conn.execute(
            "INSERT INTO monitors (organization_id, project_id, slug, name, config)"
            " SELECT %s, %s, 'job-' || n, 'Job ' || n, %s FROM generate_series(1, %s) AS n",
            (org.id, project.id, Jsonb(CONFIG), monitors))
        conn.execute(
            "INSERT INTO monitor_environments (monitor_id, environment, status, last_checkin)"
            f" SELECT id, env, {int(MonitorStatus.OK)}, now()"
            " FROM monitors CROSS JOIN (VALUES ('production'), ('staging')) AS e (env)")
        monitor_id, env_id = conn.execute(
            "SELECT m.id, me.id FROM monitors m JOIN monitor_environments me ON me.monitor_id = m.id"
            " WHERE m.slug = 'job-1' AND me.environment = 'production'").fetchone()  # type: ignore[misc]
        step = timedelta(days=DAYS) / checkins
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY(SELECT %s::date + n"
                     " FROM generate_series(0, %s) AS n))", (HISTORY_START.date(), DAYS))
        with conn.cursor().copy(
                "COPY checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
                " date_updated, duration_ms) FROM STDIN") as copy:
            statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
            for i in range(checkins):
                at = HISTORY_START + i * step
                status = rng.choices(statuses, weights=weights)[0]
                copy.write_row((uuid.uuid4(), project.id, monitor_id, env_id, int(status), at, at,
                                None if status is CheckInStatus.MISSED else rng.randint(100, 60_000)))
        conn.execute(REBUILD_ROLLUPS)
        # The uncached phase's monitors: job-2 … job-(COPIES+1), production, same rollups as job-1.
        conn.execute(
            "INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, ok, error, missed, timeout,"
            " unknown, duration_sum_ms, duration_count)"
            " SELECT me.id, r.resolution, r.bucket, r.ok, r.error, r.missed, r.timeout, r.unknown, r.duration_sum_ms,"
            "        r.duration_count"
            " FROM checkin_rollups r CROSS JOIN monitors m"
            " JOIN monitor_environments me ON me.monitor_id = m.id AND me.environment = 'production'"
            " WHERE r.monitor_environment_id = %s AND m.slug = ANY(%s)",
            (env_id, [f"job-{n}" for n in range(2, COPIES + 2)]))
        conn.execute("ANALYZE")
    return Seeded(token, checkins)


# --- server and load --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(python: str, url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRONPIPE_DATABASE_URL": url, "CRONPIPE_API_PORT": str(port), "CRONPIPE_BIND": "127.0.0.1"}
    # -P: import cronpipe from that interpreter's install, not from the current directory.
    return subprocess.Popen([python, "-P", "-m", "cronpipe.cli", "api", "--workers", str(workers)], env=env)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """Send one GET on a kept-alive connection; return the status (the body is read and dropped)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


def _raw_get(port: int, path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()


async def _client(port: int, requests: itertools.cycle[bytes], deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await _request(reader, writer, next(requests))
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], clients: int, seconds: float) -> list[float]:
    """``clients`` connections sending ``requests`` in turn (one shared cycle) for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    cycle = itertools.cycle(requests)
    await asyncio.gather(*(_client(port, cycle, deadline, latencies) for _ in range(clients)))
    return latencies


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cronpipe api exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("cronpipe api did not become ready")


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _summary(latencies: list[float], seconds: float) -> dict[str, Any]:
    return {"requests": len(latencies), "p50_ms": _ms(latencies, 0.50), "p99_ms": _ms(latencies, 0.99),
            "requests_per_s": round(len(latencies) / seconds, 1)}


@dataclass(frozen=True)
class Phase:
    name: str
    requests: list[bytes]
    clients: int


def _phase(port: int, phase: Phase, seconds: float, meter: CpuMeter, profile: Path | None) -> dict[str, Any]:
    """One load phase: latency and throughput, CPU per request, and a py-spy breakdown when asked."""
    sampler = None if profile is None else start_profile(meter.server_pid, profile / f"{phase.name}.txt", seconds)
    before = meter.snapshot()
    latencies = asyncio.run(_load(port, phase.requests, phase.clients, seconds))
    result = _summary(latencies, seconds) | {"clients": phase.clients,
                                             "cpu_ms_per_request": meter.per_request_ms(before, len(latencies))}
    if sampler is not None and profile is not None:
        result["profile"] = finish_profile(sampler, profile / f"{phase.name}.txt", result["cpu_ms_per_request"]["api"])
    return result


# --- SQL comparison ---------------------------------------------------------------------


def _time_sql(url: str, query: str, params: dict[str, Any], runs: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, params).fetchall()  # warm the cache
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.execute(query, params).fetchall()
            times.append(time.perf_counter() - started)
    return {"runs": runs, "p50_ms": _ms(times, 0.5), "p99_ms": _ms(times, 0.99),
            "mean_ms": round(statistics.fmean(times) * 1000, 2)}


def _compare_sql(url: str, since: int, until: int) -> dict[str, Any]:
    from api import store

    with psycopg.connect(url) as conn:
        monitor_id = conn.execute("SELECT id FROM monitors WHERE slug = 'job-1'").fetchone()[0]  # type: ignore[index]
    start = datetime.fromtimestamp(since // 3600 * 3600, UTC)
    end = datetime.fromtimestamp(until // 3600 * 3600 + 3600, UTC)
    params = {"monitor_id": monitor_id, "environments": None, "resolution": 3600, "source": 3600,
              "start": start, "end": end}
    return {"from_rollups": _time_sql(url, store.STATS_FROM_ROLLUPS, params, 40),
            "from_checkins": _time_sql(url, store.STATS_FROM_CHECKINS, params, 8)}


# --- entry point ------------------------------------------------------------------------


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stats_path(slug: str, since: int, until: int) -> str:
    return f"/api/0/organizations/bench/monitors/{slug}/stats/?since={since}&until={until}&resolution=3600"


def run(settings: Settings, args: argparse.Namespace) -> int:
    admin_url = settings.effective_database_url()
    name, url = _create_database(admin_url)
    proc: subprocess.Popen[bytes] | None = None
    try:
        apply_migrations(url)
        started = time.perf_counter()
        seeded = _seed(url, args.checkins, args.monitors)
        seed_seconds = time.perf_counter() - started
        port = _free_port()
        proc = _start_server(args.server_python, url, port, args.workers)
        _wait_ready(port, proc)
        since = int(HISTORY_START.timestamp())
        until = since + DAYS * 86400 - 1
        stats = [_raw_get(port, _stats_path("job-1", since, until), seeded.token)]
        # Distinct keys: another monitor (same rollups) or 1..EXTRA_HOURS more empty buckets at the end.
        uncached = [_raw_get(port, _stats_path(f"job-{n}", since, until + hours * 3600), seeded.token)
                    for hours in range(EXTRA_HOURS) for n in range(2, COPIES + 2)]
        random.Random(16).shuffle(uncached)
        listing = [_raw_get(port, "/api/0/organizations/bench/monitors/", seeded.token)]
        asyncio.run(_load(port, stats + listing, args.clients, 1.0))  # warm every worker's pool and caches
        meter = CpuMeter(proc.pid, url)
        phases = [Phase("stats_1h_90d_one_client", stats, 1), Phase("stats_1h_90d_concurrent", stats, args.clients),
                  Phase("stats_1h_90d_uncached_concurrent", uncached, args.clients),
                  Phase("monitor_list_page_of_100_one_client", listing, 1),
                  Phase("monitor_list_page_of_100_concurrent", listing, args.clients)]
        results: dict[str, Any] = {
            "checkins": seeded.checkins, "monitors": args.monitors, "seed_seconds": round(seed_seconds, 1),
            "workers": args.workers, "clients": args.clients, "cpus": os.cpu_count(), "server_python": args.server_python,
            "load_average_before": _load_average(),
        }
        for phase in phases:
            results[phase.name] = _phase(port, phase, args.seconds, meter, args.profile)
        results["stats_sql"] = _compare_sql(url, since, until)
        results["load_average_after"] = _load_average()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        _drop_database(admin_url, name)
    print(json.dumps(results))
    print(json.dumps(results, indent=2), file=sys.stderr)
    return 0
