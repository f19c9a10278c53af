"""`cronpipe bench clock`: one tick whose deadline covers N monitors, timed to the last task.

Seeds N ``* * * * *`` monitors with COPY into a database of its own (all due at the same
minute), runs the clock's dispatch and task agents in-process on topics of its own, waits
until a warm-up tick is dispatched (so partition assignment is not timed), then produces
the tick and measures:

* ``dispatch_s``: tick produced → every task produced (dispatch offset stored);
* ``total_s``: tick produced → every task applied (N MISSED check-ins, rollups, incidents
  and offsets committed).

The database and topics are dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from schemas.settings import Settings

UTC = timezone.utc
#: An arbitrary minute in the past: the benchmark drives the clock itself.
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EVERY_MINUTE = {"schedule_type": "crontab", "schedule": "* * * * *", "checkin_margin": None,
                "max_runtime": None, "timezone": "UTC", "failure_issue_threshold": None,
                "recovery_threshold": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--monitors", type=int, default=100_000, help="monitors due at the tick (default 100000)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and topics")


def seed_monitors(conn: psycopg.Connection[Any], count: int, *, next_checkin: datetime, margin_minutes: int = 1,
                  config: dict[str, Any] | None = None, project_id: int = 1, slug_prefix: str = "bench") -> None:
    """COPY ``count`` monitors of ``project_id`` (which must exist), each with a
    ``production`` environment due at ``next_checkin + margin``."""
    org_id = conn.execute("SELECT organization_id FROM projects WHERE id = %s", (project_id,)).fetchone()[0]
    text = json.dumps(config or EVERY_MINUTE)
    with conn.cursor().copy("COPY monitors (organization_id, project_id, slug, name, config) FROM STDIN") as copy:
        for i in range(count):
            slug = f"{slug_prefix}-{i}"
            copy.write_row((org_id, project_id, slug, slug, text))
    conn.execute(
        "INSERT INTO monitor_environments (monitor_id, environment, status, next_checkin, next_checkin_latest)"
        " SELECT id, 'production', 4, %(next)s, %(latest)s FROM monitors"
        " WHERE project_id = %(project)s AND slug LIKE %(pattern)s",
        {"next": next_checkin, "latest": next_checkin + timedelta(minutes=margin_minutes),
         "project": project_id, "pattern": f"{slug_prefix}-%"})


def _create_database(settings: Settings) -> str:
    from schemas.migrate import apply_migrations

    admin_url = settings.effective_database_url()
    name = f"bench_clock_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    apply_migrations(url)
    return url


def _drop(settings: Settings, url: str, topic_names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for future in AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).delete_topics(topic_names).values():
        try:
            future.result()
        except Exception:  # a topic that is already gone is fine
            pass


def _seed(url: str, monitors: int) -> float:
    from cronpipe.admin import create_org, create_project

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        create_org(conn, "bench")
        create_project(conn, "bench", "clock", project_id=1)
        with conn.transaction():
            seed_monitors(conn, monitors, next_checkin=T0)
        conn.execute("ANALYZE monitors")
        conn.execute("ANALYZE monitor_environments")
    return time.perf_counter() - started


def _stored(url: str, group: str, topic: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT partition, next_offset FROM consumer_offsets"
                            " WHERE consumer_group = %s AND topic = %s", (group, topic))
        return {int(p): int(o) for p, o in rows}


def _high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


async def _until_stored(url: str, group: str, topic: str, wanted: dict[int, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_stored(url, group, topic).get(p, 0) < o for p, o in wanted.items() if o > 0):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} not consumed within {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def _measure(settings: Settings, topics: Any, url: str) -> dict[str, float]:
    from confluent_kafka import Producer

    from consumers.context import build_context, close_context
    from consumers.worker import running_app
    from schemas.clock import encode_clock_tick, encode_mark_missing

    bench_settings = Settings(kafka_bootstrap=settings.kafka_bootstrap, database_url=url,
                              topic_prefix=topics.prefix)
    ctx = build_context(bench_settings, topics, consumer_group=f"{topics.prefix}cronpipe")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    group = ctx.consumer_group
    try:
        async with running_app(ctx, ["clock_tasks"]):
            # Warm-up, so group assignment and connections are not timed: a tick with nothing
            # due, and a task for an environment that does not exist on every task partition.
            producer.produce(topics.clock_tick, value=encode_clock_tick(int(T0.timestamp())))
            for partition in range(8):
                producer.produce(topics.clock_tasks, partition=partition,
                                 value=encode_mark_missing(int(T0.timestamp()), 10**12 + partition))
            producer.flush(10)
            await _until_stored(url, group, topics.clock_tick, {0: 1}, 120)
            await _until_stored(url, group, topics.clock_tasks, {p: 1 for p in range(8)}, 120)
            producer.produce(topics.clock_tick, value=encode_clock_tick(int((T0 + timedelta(minutes=1)).timestamp())))
            producer.flush(10)
            started = time.perf_counter()
            await _until_stored(url, group, topics.clock_tick, {0: 2}, 300)
            dispatched = time.perf_counter() - started
            await _until_stored(url, group, topics.clock_tasks,
                                _high_watermarks(settings.kafka_bootstrap, topics.clock_tasks), 300)
            total = time.perf_counter() - started
    finally:
        close_context(ctx)
    return {"dispatch_s": round(dispatched, 2), "total_s": round(total, 2)}


def run(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.topics import Topics, ensure_topics

    topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}-", ingest_partitions=8)
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    url = _create_database(settings)
    try:
        seed_s = _seed(url, args.monitors)
        figures = asyncio.run(_measure(settings, topics, url))
        with psycopg.connect(url) as conn:
            missed = conn.execute("SELECT count(*) FROM checkins WHERE status = 4").fetchone()[0]
            rolled = conn.execute("SELECT coalesce(sum(missed), 0) FROM checkin_rollups WHERE resolution = 3600").fetchone()[0]
    finally:
        if not args.keep:
            _drop(settings, url, [t.name for t in topics.specs()])
    result = {"benchmark": "clock", "monitors": args.monitors, "seed_s": round(seed_s, 2), **figures,
              "missed_written": int(missed), "rollup_missed": int(rolled),
              "tasks_per_s": round(args.monitors / figures["total_s"], 0) if figures["total_s"] else None,
              "date": datetime.now(UTC).isoformat(timespec="seconds")}
    print(json.dumps(result))
    print(f"clock: {args.monitors} monitors due at one tick: dispatched in {figures['dispatch_s']} s, "
          f"all tasks applied in {figures['total_s']} s ({missed} MISSED written)", file=sys.stderr)
    return 0 if missed == args.monitors else 1
