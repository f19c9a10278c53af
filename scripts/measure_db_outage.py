"""Measure the gateway and the read API around a PostgreSQL outage, on a throwaway cluster.

    .venv/bin/python scripts/measure_db_outage.py [--outage 60] [--clients 8] [--seconds 5]

Needs CRONPIPE_KAFKA_BOOTSTRAP (the gateway publishes for real). Steps: a private
PostgreSQL cluster on a free port, one `cronpipe gateway` and one `cronpipe api`; check-in
latency with one known key for --seconds before the outage and --seconds during it (key
cache TTL 1 s, so every answer is stale during the outage); PostgreSQL stays down for
--outage seconds in all; then the time from its return until a key never seen before gets
a 202 from the gateway and until the API answers 200. Prints one JSON object.
Run it from another checkout's folder to measure that checkout's code (``python -m`` puts
the current folder first on the path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cronpipe.admin import create_org, create_token
from cronpipe.local import postgres
from cronpipe.probes import free_port, wait_for_http
from schemas.migrate import apply_migrations

CRONPIPE = [sys.executable, "-m", "cronpipe.cli"]


def run_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([*CRONPIPE, *args], env=env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def load(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Check-ins from ``clients`` threads for ``seconds``: statuses, rate, latency percentiles."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                status = http.get(url, params={"status": "ok", "check_in_id": uuid.uuid4().hex}).status_code
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {"requests": len(latencies), "per_s": round(len(latencies) / seconds), "statuses": statuses,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(1000 * latencies[-1], 1)}


def until(predicate: Any, timeout_s: float) -> float | None:
    """Seconds until ``predicate()`` is true (polled every 0.1 s), None after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if predicate():
                return round(time.monotonic() - started, 2)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cronpipe-outage-"))
    layout = postgres.PostgresLayout(home=home / "pg", port=free_port())
    apply_migrations(postgres.start(layout))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gw_port, api_port = free_port(), free_port()
        env = {**os.environ, "CRONPIPE_DATABASE_URL": layout.url, "CRONPIPE_TOPIC_PREFIX": f"outage{uuid.uuid4().hex[:6]}-",
               "CRONPIPE_GATEWAY_PORT": str(gw_port), "CRONPIPE_API_PORT": str(api_port),
               "CRONPIPE_GATEWAY_KEY_CACHE_TTL": "1", "CRONPIPE_BIND": "127.0.0.1"}
        with psycopg.connect(layout.url, autocommit=True) as conn:
            create_org(conn, "acme")
            token = create_token(conn, "acme")
        known, fresh = (run_json(env, "project", "create", "--org", "acme", "--slug", s) for s in ("known", "fresh"))
        for name in ("gateway", "api"):
            with open(home / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen([*CRONPIPE, name], env=env, stdout=log, stderr=subprocess.STDOUT))
        gw, api = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{api_port}"
        wait_for_http(f"{gw}/healthz")
        wait_for_http(f"{api}/healthz")
        known_url = f"{gw}/api/{known['id']}/cron/job/{known['public_key']}/"
        fresh_url = f"{gw}/api/{fresh['id']}/cron/job/{fresh['public_key']}/"
        auth = {"Authorization": f"Bearer {token}"}
        monitors = f"{api}/api/0/organizations/acme/monitors/"
        result: dict[str, Any] = {"load_avg_1m": os.getloadavg()[0], "outage_s": args.outage}
        result["gateway_before"] = load(known_url, args.clients, args.seconds)
        postgres.stop(layout, mode="immediate")
        down_at = time.monotonic()
        time.sleep(1.5)  # past the key cache TTL
        result["gateway_during"] = load(known_url, args.clients, args.seconds)
        result["api_during_status"] = httpx.get(monitors, headers=auth, timeout=30).status_code
        time.sleep(max(0.0, args.outage - (time.monotonic() - down_at)))
        postgres.start(layout)
        result["gateway_recovery_s"] = until(
            lambda: httpx.get(fresh_url, params={"status": "ok"}, timeout=30).status_code == 202, 300)
        result["api_recovery_s"] = until(lambda: httpx.get(monitors, headers=auth, timeout=30).status_code == 200, 300)
        result["load_avg_1m_end"] = os.getloadavg()[0]
        print(json.dumps(result))
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
        postgres.stop(layout, mode="immediate")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
