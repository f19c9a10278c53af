"""The volume guard's own cost per tick, measured alone (the shared box is too loaded for
two full `cronpipe bench clock` runs to differ by less than their noise).

A throwaway database with 31 days of per-minute volume (44,640 rows) and a month of
decisions; then, per simulated tick: ``decide_tick`` (the dispatch's extra work) and the
``lock_decisions`` read that each task batch adds (100,000 tasks = 20 batches of 5,000).
Prints the medians. Usage: ``python scripts/measure_volume_guard.py [--ticks 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from consumers.clock import volume_store
from schemas.migrate import apply_migrations
from schemas.settings import Settings

T = datetime(2026, 5, 4, 0, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    admin = Settings().effective_database_url()
    name = f"bench_guard_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO checkin_volume (minute, count) SELECT g, 1000 FROM generate_series("
                         "%s::timestamptz, %s::timestamptz, '1 minute') g", (T - timedelta(days=31), T + 6 * 60 * M))
            conn.execute("INSERT INTO clock_volume_decisions (tick, metric, pct_deviation, decision)"
                         " SELECT g, 'normal', 0, 'normal' FROM generate_series(%s::timestamptz, %s::timestamptz,"
                         " '1 minute') g", (T - timedelta(days=30), T))
            conn.execute("ANALYZE")
            decide: list[float] = []
            lock: list[float] = []
            for i in range(1, args.ticks + 1):
                tick = T + i * M
                started = time.perf_counter()
                with conn.transaction():
                    volume_store.decide_tick(conn, tick, abnormal_pct=10, incident_pct=30)
                decide.append(time.perf_counter() - started)
                started = time.perf_counter()
                for _ in range(20):
                    with conn.transaction():
                        volume_store.lock_decisions(conn, [tick])
                lock.append(time.perf_counter() - started)
        print(f"decide_tick median {statistics.median(decide) * 1000:.2f} ms (p90 "
              f"{statistics.quantiles(decide, n=10)[-1] * 1000:.2f} ms); 20 lock_decisions median "
              f"{statistics.median(lock) * 1000:.2f} ms; over {args.ticks} ticks")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
