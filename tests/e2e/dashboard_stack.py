"""The dashboard's test world: real `cronpipe worker` and `cronpipe api` processes, check-ins
produced to Kafka and written by the real processor, plus a large organization for timing.

Times are relative to the real clock (the dashboard shows the last 24 hours), placed in whole
hours so each check-in lands in a known timeline bucket.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.types.json import Jsonb

from cronpipe.admin import create_org, create_project, create_token
from schemas.messages import encode_attachment, encode_check_in
from schemas.topics import Topics, ensure_topics
from tests.e2e.gateway_processes import Service, cronpipe_env, free_port

HOUR = 3600
CRONTAB = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 5, "max_runtime": 30}
#: An environment name any DSN key holder may send: markup if it were ever parsed as HTML.
HOSTILE_ENVIRONMENT = "<img src=x onerror=window.__pwned=1>"
#: Job output that would run if it were ever rendered as HTML.
HOSTILE_OUTPUT = (b"starting job\n<script>window.__pwned = 2; alert('pwned')</script>\n"
                  b"<img src=x onerror=\"window.__pwned = 3\">\ndone\n")
#: A monitor name with markup (names are free text; only slugs are slugified).
HOSTILE_NAME = "Retired job <img src=x onerror=alert(4)>"
BULK_MONITORS = 1000
BULK_ENVIRONMENTS = ("production", "staging", "canary")


@dataclass
class Produced:
    """What was sent: (slug, environment) → {bucket start (unix s): [statuses]}."""

    statuses: dict[tuple[str, str], dict[int, list[str]]] = field(default_factory=dict)
    count: int = 0
    attachment_checkin: str = ""

    def add(self, slug: str, environment: str, at: int, status: str) -> None:
        buckets = self.statuses.setdefault((slug, environment), {})
        buckets.setdefault(at // HOUR * HOUR, []).append(status)


class DashboardStack:
    def __init__(self, kafka_bootstrap: str, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.api_port = free_port()
        self.topics = Topics(prefix=f"ui{uuid.uuid4().hex[:8]}-", timestamp_type="CreateTime", ingest_partitions=1)
        # CreateTime: the processor reads the times chosen here, hours in the past.
        ensure_topics(kafka_bootstrap, self.topics.specs())
        with psycopg.connect(database_url, autocommit=True) as conn:
            create_org(conn, "acme")
            create_project(conn, "acme", "backend", 1)
            create_project(conn, "acme", "ops", 2)
            self.token = create_token(conn, "acme")
            create_org(conn, "bulk")
            create_project(conn, "bulk", "fleet", 3)
            self.bulk_token = create_token(conn, "bulk")
        self.env = cronpipe_env(kafka_bootstrap, database_url, self.topics.prefix,
                                CRONPIPE_API_PORT=str(self.api_port))
        self.producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.produced = Produced()
        self.services = [Service.start("worker", self.env, ["worker", "--agents", "checkins"], log_dir),
                         Service.start("api", self.env, ["api"], log_dir)]
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.services[1].wait_http(f"{self.api_url}/healthz")

    # -- producing through Kafka, as the gateway would

    def _send(self, value: bytes, slug: str, project_id: int, at: float) -> None:
        self.producer.produce(self.topics.ingest, value=value, key=f"{project_id}:{slug}".encode(), partition=0,
                              timestamp=int(at * 1000))
        self.produced.count += 1

    def check_in(self, slug: str, environment: str, status: str, at: int, *, project_id: int = 1,
                 duration: float | None = None, check_in_id: str | None = None, stored: bool = True) -> str:
        guid = check_in_id or uuid.uuid4().hex
        payload: dict[str, Any] = {"check_in_id": guid, "monitor_slug": slug, "status": status,
                                   "environment": environment, "monitor_config": CRONTAB}
        if duration is not None:
            payload["duration"] = duration
        self._send(encode_check_in(payload, project_id=project_id, start_time=at), slug, project_id, at)
        if stored:
            self.produced.add(slug, environment, at, status)
        return guid

    def attachment(self, slug: str, check_in_id: str, data: bytes, at: int) -> None:
        self._send(encode_attachment(project_id=1, monitor_slug=slug, check_in_id=check_in_id, filename="job.log",
                                     content_type="text/html", data=data, start_time=at), slug, 1, at)

    def wait_processed(self, timeout_s: float = 120.0) -> None:
        assert self.producer.flush(15) == 0
        deadline = time.monotonic() + timeout_s
        while self.stored_offset() < self.produced.count:
            if time.monotonic() > deadline:
                raise AssertionError(f"processor stored {self.stored_offset()} of {self.produced.count}:"
                                     f" {self.services[0].tail()}")
            time.sleep(0.2)

    def stored_offset(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = %s",
                               (self.topics.ingest,)).fetchone()
        return 0 if row is None else int(row[0])

    def stop(self) -> list[int]:
        self.producer.flush(10)
        return [service.terminate() for service in self.services]


def clock_rows(database_url: str, slug: str, environment: str, rows: list[tuple[int, str]]) -> None:
    """MISSED and TIMEOUT check-ins with their rollups, as the clock tasks write them (the
    clock is not run here: its ticks follow message time across every partition)."""
    columns = {"missed": (4, "missed"), "timeout": (5, "timeout")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        monitor = conn.execute(
            "INSERT INTO monitors (organization_id, project_id, slug, name, status, config)"
            " SELECT o.id, 1, %s, %s, 0, %s FROM organizations o WHERE o.slug = 'acme' RETURNING id",
            (slug, slug, Jsonb({"schedule_type": "crontab", "schedule": "30 2 * * *",
                                                    "checkin_margin": 10, "max_runtime": 60,
                                                    "timezone": "Europe/Vienna"}))).fetchone()
        assert monitor is not None
        env = conn.execute("INSERT INTO monitor_environments (monitor_id, environment, status) VALUES (%s, %s, 4)"
                           " RETURNING id", (monitor[0], environment)).fetchone()
        assert env is not None
        for at, status in rows:
            value, column = columns[status]
            conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(to_timestamp(%s) AT TIME ZONE 'UTC')::date])",
                         (at,))
            conn.execute("INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                         " date_added, date_updated) VALUES (gen_random_uuid(), 1, %s, %s, %s,"
                         " to_timestamp(%s), to_timestamp(%s))", (monitor[0], env[0], value, at, at))
            for resolution in (HOUR, 86400):
                conn.execute(
                    f"INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, {column})"
                    " VALUES (%s, %s, to_timestamp(%s), 1) ON CONFLICT (monitor_environment_id, resolution, bucket)"
                    f" DO UPDATE SET {column} = checkin_rollups.{column} + 1",
                    (env[0], resolution, at // resolution * resolution))


def seed_bulk(database_url: str, now: int) -> None:
    """1,000 monitors × 3 environments for the timing run: an hourly rollup row per
    environment and hour over the last day (an error every 7th), written with SQL."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO monitors (organization_id, project_id, slug, name, status, config)
            SELECT o.id, 3, 'job-' || lpad(n::text, 4, '0'), 'Job ' || lpad(n::text, 4, '0'), 0,
                   '{"schedule_type": "crontab", "schedule": "0 * * * *", "checkin_margin": 5,
                     "max_runtime": 30, "timezone": "UTC"}'::jsonb
            FROM organizations o, generate_series(1, %(monitors)s) n WHERE o.slug = 'bulk'""",
                     {"monitors": BULK_MONITORS})
        conn.execute("""
            INSERT INTO monitor_environments (monitor_id, environment, status, last_checkin, next_checkin)
            SELECT m.id, e, CASE WHEN m.id %% 13 = 0 THEN 5 ELSE 4 END, to_timestamp(%(now)s - 600),
                   to_timestamp(%(now)s + 3000)
            FROM monitors m JOIN projects p ON p.id = m.project_id, unnest(%(envs)s::text[]) e
            WHERE p.id = 3""", {"now": now, "envs": list(BULK_ENVIRONMENTS)})
        conn.execute("""
            INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, ok, error, duration_sum_ms,
                                         duration_count)
            SELECT me.id, 3600, to_timestamp((%(now)s / 3600 - h) * 3600),
                   CASE WHEN (me.id + h) %% 7 = 0 THEN 0 ELSE 1 END, CASE WHEN (me.id + h) %% 7 = 0 THEN 1 ELSE 0 END,
                   1000, 1
            FROM monitor_environments me JOIN monitors m ON m.id = me.monitor_id, generate_series(0, 23) h
            WHERE m.project_id = 3""", {"now": now})


def mute_and_disable(database_url: str, muted_slug: str, disabled_slug: str) -> None:
    """Mute every environment of ``muted_slug``; add ``disabled_slug``, a disabled monitor
    (neither state can come from a check-in: people set them)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE monitor_environments SET is_muted = true"
                     " WHERE monitor_id = (SELECT id FROM monitors WHERE slug = %s)", (muted_slug,))
        row = conn.execute(
            "INSERT INTO monitors (organization_id, project_id, slug, name, status, config)"
            " SELECT o.id, 2, %s, %s, 1, %s FROM organizations o WHERE o.slug = 'acme' RETURNING id",
            (disabled_slug, HOSTILE_NAME, Jsonb({"schedule_type": "interval", "schedule": [5, "minute"],
                                                  "timezone": "UTC"}))).fetchone()
        assert row is not None
        conn.execute("INSERT INTO monitor_environments (monitor_id, environment, status) VALUES (%s, 'production', 4)",
                     (row[0],))
