"""`cronpipe bench retention`: what partitioning costs and what it saves.

In a scratch database of its own (dropped afterwards unless ``--keep``):

1. **migration**: 0008_partitioning on a database holding ``--migrate-rows`` check-ins in
   the old, unpartitioned table (the time ingestion and the API wait for it);
2. **drop vs DELETE**: two days of ``--day-rows`` check-ins each; one day goes the way
   the maintenance drops it (guid rows in batches, DETACH CONCURRENTLY, DROP), the other
   with one ``DELETE`` of the same rows (and their guid rows), as an unpartitioned table
   would need;
3. **size**: ``--rows`` check-ins over ``--size-days`` days, then the size of the check-in
   partitions, their indexes and checkin_guids;
4. **partition count**: two queries that cannot prune by date (the processor's latest
   IN_PROGRESS lookup, the API's latest check-in), timed with the partitions of step 3 and
   again with 100 more (a 90-day retention at steady state holds ~100 daily partitions).

Rows are generated in PostgreSQL (``generate_series``), not through Kafka.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import psycopg

from consumers.maintenance import store as maintenance
from schemas.argtypes import positive_int
from schemas.enums import CheckInStatus
from schemas.migrate import apply_migrations, available
from schemas.settings import Settings

Conn = psycopg.Connection[Any]

# One row per n of a series: realistic widths (a config document, a trace id, a release).
_ROWS = """
INSERT INTO {table} (guid, project_id, monitor_id, monitor_environment_id, status, date_added, date_updated,
                     date_clock, expected_time, duration_ms, monitor_config, trace_id, release{extra_columns})
SELECT gen_random_uuid(), 1, 1 + n %% 1000, 1 + n %% 3000, {ok}, t, t, t, t, 1000 + n %% 60000,
       '{{"schedule_type": "crontab", "schedule": "*/5 * * * *", "checkin_margin": 1, "max_runtime": 30,
         "timezone": "UTC"}}'::jsonb, gen_random_uuid(), 'v1.2.3'{extra_values}
  FROM generate_series(0, %(n)s::bigint - 1) AS n,
       LATERAL (SELECT %(start)s::timestamptz + (n * %(span)s::float8 / %(n)s) * interval '1 second') AS s (t)
"""

LATEST_IN_PROGRESS = f"""
SELECT id FROM checkins WHERE monitor_environment_id = %(env)s AND status = {int(CheckInStatus.IN_PROGRESS)}
ORDER BY date_added DESC LIMIT 1
"""

LATEST_CHECKIN = """
SELECT id FROM checkins WHERE monitor_id = %(monitor)s ORDER BY date_added DESC, id DESC LIMIT 1
"""


def log(message: str) -> None:
    print(f"bench retention: {message}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--migrate-rows", type=positive_int, default=1_000_000,
                        help="check-ins in the old table that 0008 converts (default 1000000)")
    parser.add_argument("--day-rows", type=positive_int, default=1_000_000,
                        help="check-ins of the day dropped, and of the day deleted (default 1000000)")
    parser.add_argument("--rows", type=positive_int, default=10_000_000,
                        help="check-ins for the size figures (default 10000000)")
    parser.add_argument("--size-days", type=positive_int, default=10, help="days they span (default 10)")
    parser.add_argument("--only", choices=["migration", "drop", "size"], action="append",
                        help="run only these parts (repeatable; default all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")


@contextmanager
def scratch_database(settings: Settings, keep: bool) -> Iterator[str]:
    admin = settings.effective_database_url()
    name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(admin, dbname=name)
    finally:
        if keep:
            log(f"kept database {name}")
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _timed(conn: Conn, query: str, params: dict[str, Any] | None = None) -> float:
    started = time.perf_counter()
    conn.execute(query, params)
    return time.perf_counter() - started


def _insert(conn: Conn, n: int, start: date, days: float, retention: int | None = None,
            table: str = "checkins") -> float:
    extra = (", retention_days", f", {retention}") if retention else ("", "")
    query = _ROWS.format(table=table, extra_columns=extra[0], extra_values=extra[1], ok=int(CheckInStatus.OK))
    return _timed(conn, query, {"n": n, "start": start, "span": days * 86400})


def measure_migration(settings: Settings, rows: int, keep: bool) -> dict[str, Any]:
    with scratch_database(settings, keep) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, path in available():
            if version >= "0008":
                break
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        today = date.today()
        seeded = _insert(conn, rows, today - timedelta(days=90), 90.0)
        log(f"old table: {rows} rows over 90 days in {seeded:.1f}s; migrating")
        started = time.perf_counter()
        applied = apply_migrations(url)
        elapsed = time.perf_counter() - started
        count = conn.execute("SELECT count(*) FROM checkins").fetchone()
    return {"rows": rows, "days": 90, "applied": applied, "seconds": round(elapsed, 1),
            "seconds_per_million": round(elapsed / rows * 1e6, 1), "rows_after": count[0] if count else None}


def measure_drop_vs_delete(url: str, rows: int) -> dict[str, Any]:
    day = date.today() - timedelta(days=200)
    with psycopg.connect(url, autocommit=True) as conn:
        maintenance.ensure_partitions(conn, [day, day + timedelta(days=1)])
        for d in (day, day + timedelta(days=1)):
            seconds = _insert(conn, rows, d, 0.999, retention=30)
            log(f"{rows} rows for {d} in {seconds:.1f}s")
        conn.execute("VACUUM ANALYZE checkins")
        conn.execute("VACUUM ANALYZE checkin_guids")
        part = f"checkins_p{day:%Y%m%d}"
        started = time.perf_counter()
        while maintenance.forget_guids(conn, day, 10_000)[0]:
            pass
        forget = time.perf_counter() - started
        started = time.perf_counter()
        maintenance.detach_concurrently(conn, part)
        detach = time.perf_counter() - started
        started = time.perf_counter()
        maintenance.drop_detached(conn, part, date.today())
        drop = time.perf_counter() - started
        log(f"drop path: guid rows {forget:.2f}s, detach concurrently {detach:.2f}s, drop {drop:.2f}s")
        lo, hi = day + timedelta(days=1), day + timedelta(days=2)
        with conn.transaction():
            delete_guids = _timed(conn, "DELETE FROM checkin_guids WHERE date_added >= %(lo)s AND date_added < %(hi)s",
                                  {"lo": lo, "hi": hi})
            delete_rows = _timed(conn, "DELETE FROM checkins WHERE date_added >= %(lo)s AND date_added < %(hi)s",
                                 {"lo": lo, "hi": hi})
        started = time.perf_counter()
        conn.execute("VACUUM checkins")
        vacuum = time.perf_counter() - started
        log(f"DELETE path: guid rows {delete_guids:.2f}s, check-ins {delete_rows:.2f}s, then VACUUM {vacuum:.2f}s")
    return {"rows": rows,
            "drop": {"forget_guids_s": round(forget, 2), "detach_concurrently_s": round(detach, 2),
                     "drop_s": round(drop, 3), "total_s": round(forget + detach + drop, 2)},
            "delete": {"checkins_s": round(delete_rows, 2), "guids_s": round(delete_guids, 2),
                       "vacuum_s": round(vacuum, 2), "total_s": round(delete_rows + delete_guids + vacuum, 2)}}


def _sizes(conn: Conn) -> dict[str, int]:
    row = conn.execute("""
        SELECT coalesce(sum(pg_relation_size(i.inhrelid)), 0)::bigint,
               coalesce(sum(pg_indexes_size(i.inhrelid)), 0)::bigint,
               pg_relation_size('checkin_guids'), pg_indexes_size('checkin_guids'),
               pg_total_relation_size('checkin_retention_days'), count(*)
          FROM pg_inherits i WHERE i.inhparent = 'checkins'::regclass""").fetchone()
    assert row is not None
    mb = 1024 * 1024
    return {"checkins_table_mb": row[0] // mb, "checkins_indexes_mb": row[1] // mb,
            "checkin_guids_table_mb": row[2] // mb, "checkin_guids_index_mb": row[3] // mb,
            "retention_summary_kb": row[4] // 1024, "partitions": row[5]}


def _query_ms(conn: Conn, query: str, params: dict[str, Any], repeat: int = 200) -> float:
    conn.execute(query, params)
    started = time.perf_counter()
    for _ in range(repeat):
        conn.execute(query, params)
    return round((time.perf_counter() - started) / repeat * 1000, 3)


def measure_size_and_partition_count(url: str, rows: int, days: int) -> dict[str, Any]:
    first = date.today() - timedelta(days=days - 1)
    with psycopg.connect(url, autocommit=True) as conn:
        maintenance.ensure_partitions(conn, [first + timedelta(days=n) for n in range(days)])
        step = max(1, days // 5)
        seconds = 0.0
        for start in range(0, days, step):
            span = min(step, days - start)
            seconds += _insert(conn, rows * span // days, first + timedelta(days=start), float(span))
            log(f"size: {start + span}/{days} days inserted ({seconds:.0f}s)")
        conn.execute("VACUUM ANALYZE")
        sizes = _sizes(conn)
        params = {"env": 7, "monitor": 7}
        before = {"partitions": sizes["partitions"],
                  "latest_in_progress_ms": _query_ms(conn, LATEST_IN_PROGRESS, params),
                  "latest_checkin_ms": _query_ms(conn, LATEST_CHECKIN, params)}
        oldest = first - timedelta(days=100)
        maintenance.ensure_partitions(conn, [oldest + timedelta(days=n) for n in range(100)])
        conn.execute("ANALYZE checkins")
        after = {"partitions": sizes["partitions"] + 100,
                 "latest_in_progress_ms": _query_ms(conn, LATEST_IN_PROGRESS, params),
                 "latest_checkin_ms": _query_ms(conn, LATEST_CHECKIN, params)}
    return {"rows": rows, "days": days, "insert_s": round(seconds, 1),
            "insert_rows_per_s": round(rows / seconds), "sizes": sizes,
            "unpruned_queries": [before, after]}


def run(settings: Settings, args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    parts = set(args.only or ["migration", "drop", "size"])
    if "migration" in parts:
        log(f"migration of {args.migrate_rows} rows")
        results["migration"] = measure_migration(settings, args.migrate_rows, args.keep)
        log(f"migration: {results['migration']}")
    if "drop" in parts:
        with scratch_database(settings, args.keep) as url:
            apply_migrations(url)
            log(f"drop vs DELETE of one day of {args.day_rows} rows")
            results["drop_vs_delete"] = measure_drop_vs_delete(url, args.day_rows)
    if "size" in parts:
        with scratch_database(settings, args.keep) as url:
            apply_migrations(url)
            log(f"size after {args.rows} rows over {args.size_days} days")
            results["size"] = measure_size_and_partition_count(url, args.rows, args.size_days)
    print(json.dumps(results, indent=2))
    return 0
