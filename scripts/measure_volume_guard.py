"""The volume guard's own cost per tick, measured alone (the shared box is too loaded for
two full `cronpipe bench clock` runs to differ by less than their noise).

A throwaway database with 31 days of per-minute volume (44,640 rows) and a month of
decisions; then, per simulated tick: ``decide_tick`` (the dispatch's extra work) and the
``lock_decisions`` read that each task batch adds (100,000 tasks = 20 batches of 5,000).
Prints the medians. Usage: ``python scripts/measure_volume_guard.py [--ticks 300]``.

``--undo N`` measures instead a mass back-dating: N environments, each with a held MISSED
that opened an incident (held ``opened`` event), undone in one ``undo_held`` (the work of
the dispatch transaction that back-dates), rolled back afterwards and repeated 3 times.
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
    parser.add_argument("--undo", type=int, default=0, help="measure a back-dating of this many held misses")
    args = parser.parse_args()
    admin = Settings().effective_database_url()
    name = f"bench_guard_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        apply_migrations(url)
        if args.undo:
            measure_undo(url, args.undo)
            return
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


HELD_WORLD = """
WITH c AS (
    INSERT INTO checkins (id, guid, project_id, monitor_id, monitor_environment_id, status, date_added, date_updated)
    SELECT nextval('checkins_id_seq'), gen_random_uuid(), 1, me.monitor_id, me.id, 4, %(slot)s, %(tick)s
      FROM monitor_environments me
    RETURNING id, guid, monitor_id, monitor_environment_id),
i AS (
    INSERT INTO incidents (monitor_id, monitor_environment_id, starting_checkin_id, starting_timestamp)
    SELECT monitor_id, monitor_environment_id, id, %(slot)s FROM c RETURNING guid, starting_checkin_id),
o AS (
    INSERT INTO incident_outbox (event_id, monitor_environment_id, tick, held, payload)
    SELECT gen_random_uuid(), c.monitor_environment_id, %(tick)s, true,
           jsonb_build_object('type', 'opened', 'incident_id', i.guid, 'failed_checkin_id', c.guid)
      FROM c JOIN i ON i.starting_checkin_id = c.id)
INSERT INTO clock_volume_held (tick, checkin_id, monitor_environment_id, run_start_id)
SELECT %(tick)s, id, monitor_environment_id, id FROM c
"""


def measure_undo(url: str, count: int) -> None:
    from cronpipe.admin import create_org, create_project
    from cronpipe.seeding import seed_monitors

    tick, slot = T + 2 * M, T + M
    with psycopg.connect(url, autocommit=True) as conn:
        create_org(conn, "bench")
        create_project(conn, "bench", "guard", project_id=1)
        seed_monitors(conn, count, next_checkin=slot)
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[%s::date])", (slot.date(),))
        conn.execute(HELD_WORLD, {"slot": slot, "tick": tick})
        conn.execute("UPDATE monitor_environments SET status = 5, failure_run = 1, failure_run_start_id = h.checkin_id,"
                     " failure_run_start_at = %s FROM clock_volume_held h WHERE h.monitor_environment_id = id", (slot,))
        conn.execute("ANALYZE")
        times = []
        for _ in range(3):
            started = time.perf_counter()
            with conn.transaction(force_rollback=True):
                volume_store.undo_held(conn, [tick])
                left = conn.execute("SELECT count(*) FROM incidents").fetchone()
            times.append(time.perf_counter() - started)
        print(f"undo_held of {count} held misses (each with its incident and held event): median "
              f"{statistics.median(times):.2f} s of {[round(t, 2) for t in times]}; incidents left {left[0] if left else '?'}")


if __name__ == "__main__":
    main()
