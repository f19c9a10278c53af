"""`cronpipe bench delete`: ingestion while a monitor with many check-ins is deleted.

A private database gets a monitor with ``--checkins`` check-ins (and their rollups) and a
second, live monitor. A processor-shaped writer (each transaction: lock the monitor
``FOR NO KEY UPDATE``, lock its environment, insert ``--batch-size`` check-ins, move the
environment, commit — the processor's lock order and write kinds) runs for ``--seconds``
alone, then again while the API's ``DELETE`` marks the big monitor and the purge
(api.deletions) removes its rows. It prints the writer's throughput and commit latency
in both phases, and the purge's duration and its longest step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cronpipe.bench.api import _create_database, _drop_database
from schemas.argtypes import positive_float, positive_int
from schemas.enums import CheckInStatus
from schemas.migrate import apply_migrations

OK = int(CheckInStatus.OK)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkins", type=positive_int, default=200_000, help="check-ins of the deleted monitor")
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="writer phase before the delete (s)")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="check-ins per writer transaction")


def _seed(url: str, checkins: int) -> tuple[int, int, int]:
    from cronpipe.admin import create_org, create_project

    with psycopg.connect(url, autocommit=True) as conn:
        org = create_org(conn, "bench")
        create_project(conn, "bench", "jobs", project_id=1)
        ids = []
        for slug in ("doomed", "live"):
            monitor_id = conn.execute(
                "INSERT INTO monitors (organization_id, project_id, slug, name, config) VALUES (%s, 1, %s, %s,"
                " '{\"schedule_type\": \"crontab\", \"schedule\": \"* * * * *\"}') RETURNING id",
                (org.id, slug, slug)).fetchone()[0]  # type: ignore[index]
            env_id = conn.execute("INSERT INTO monitor_environments (monitor_id, environment) VALUES (%s, 'prod')"
                                  " RETURNING id", (monitor_id,)).fetchone()[0]  # type: ignore[index]
            ids += [monitor_id, env_id]
        start = datetime(2026, 1, 1, tzinfo=UTC)
        # checkins has one partition per day (0008): create the days the history and the
        # writer (from 2026-06-01, one check-in a second) will fill.
        days = (checkins // 1440 + 2, (datetime(2026, 6, 1, tzinfo=UTC) - start).days + 3)
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY(SELECT %s::date + n"
                     " FROM generate_series(0, %s) AS n))", (start.date(), max(days)))
        conn.execute(
            "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
            f" date_updated) SELECT gen_random_uuid(), 1, %s, %s, {OK}, %s + g * interval '1 minute', now()"
            " FROM generate_series(1, %s) g", (ids[0], ids[1], start, checkins))
        conn.execute(
            "INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, ok)"
            " SELECT %s, 3600, date_trunc('hour', date_added), count(*) FROM checkins GROUP BY 2, 3", (ids[1],))
        conn.execute("ANALYZE")
        return org.id, ids[0], ids[3]


class Writer(threading.Thread):
    """Processor-shaped transactions on the live monitor until stopped; records commit latencies."""

    def __init__(self, url: str, monitor_id: int, env_id: int, batch: int) -> None:
        super().__init__(daemon=True)
        self.url, self.monitor_id, self.env_id, self.batch = url, monitor_id, env_id, batch
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.ts = datetime(2026, 6, 1, tzinfo=UTC)

    def run(self) -> None:
        with psycopg.connect(self.url) as conn:
            while not self.stop.is_set():
                began = time.perf_counter()
                with conn.transaction():
                    conn.execute("SELECT id FROM monitors WHERE id = %s ORDER BY id FOR NO KEY UPDATE",
                                 (self.monitor_id,))
                    conn.execute("SELECT id FROM monitor_environments WHERE id = %s FOR UPDATE", (self.env_id,))
                    with conn.cursor() as cur, cur.copy(
                            "COPY checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                            " date_added, date_updated) FROM STDIN") as copy:
                        for _ in range(self.batch):
                            self.ts += timedelta(seconds=1)
                            copy.write_row((uuid.uuid4(), 1, self.monitor_id, self.env_id, OK, self.ts, self.ts))
                    conn.execute("UPDATE monitor_environments SET last_checkin = %s WHERE id = %s",
                                 (self.ts, self.env_id))
                self.latencies.append(time.perf_counter() - began)


def _summary(latencies: list[float], seconds: float, batch: int) -> dict[str, float]:
    ordered = sorted(latencies) or [0.0]
    return {"checkins_per_s": round(len(latencies) * batch / seconds),
            "commit_p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
            "commit_p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1),
            "commit_max_ms": round(ordered[-1] * 1000, 1)}


async def _delete_and_purge(url: str, org_id: int, monitor_id: int) -> dict[str, float]:
    from api import manage
    from api.deletions import purge_step

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        async with conn.transaction():
            await manage.delete_monitor(conn, org_id, monitor_id, None)
        marked = time.perf_counter() - began
        steps, longest = 0, 0.0
        while True:
            step_began = time.perf_counter()
            more = await purge_step(conn)
            longest = max(longest, time.perf_counter() - step_began)
            if not more:
                break
            steps += 1
        return {"delete_202_ms": round(marked * 1000, 1), "purge_s": round(time.perf_counter() - began, 2),
                "purge_steps": steps, "longest_step_ms": round(longest * 1000, 1)}


def run(settings: Any, args: argparse.Namespace) -> int:
    admin_url = settings.effective_database_url()
    name, url = _create_database(admin_url)
    try:
        apply_migrations(url)
        org_id, doomed, live_env = _seed(url, args.checkins)
        live = _live_monitor(url)
        writer = Writer(url, live, live_env, args.batch_size)
        writer.start()
        time.sleep(args.seconds)
        before = list(writer.latencies)
        during_start = len(writer.latencies)
        began = time.perf_counter()
        purge = asyncio.run(_delete_and_purge(url, org_id, doomed))
        during_seconds = time.perf_counter() - began
        during = writer.latencies[during_start:]
        writer.stop.set()
        writer.join()
        with psycopg.connect(url) as conn:
            left = conn.execute("SELECT count(*) FROM checkins WHERE monitor_id = %s", (doomed,)).fetchone()
        result = {"checkins_deleted": args.checkins, "left": left[0] if left else None, **purge,
                  "writer_alone": _summary(before, args.seconds, args.batch_size),
                  "writer_during_purge": _summary(during, during_seconds, args.batch_size),
                  "date": datetime.now(UTC).isoformat(timespec="seconds")}
        print(json.dumps(result), flush=True)
        print(f"purge of {args.checkins} check-ins: {purge['purge_s']} s in {purge['purge_steps']} steps "
              f"(longest {purge['longest_step_ms']} ms); writer {result['writer_alone']} alone, "
              f"{result['writer_during_purge']} during", file=sys.stderr)
        return 0
    finally:
        _drop_database(admin_url, name)


def _live_monitor(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM monitors WHERE slug = 'live'").fetchone()
        assert row is not None
        return int(row[0])
