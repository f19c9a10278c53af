"""Seeding helpers for the clock's integration tests: plain SQL, no processor needed.

Imported as ``clock_helpers`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg

from cronpipe.probes import high_watermarks
from schemas.enums import CheckInStatus, MonitorStatus

Conn = psycopg.Connection[Any]


def scalar(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of the one row a query returned."""
    row = cursor.fetchone()
    assert row is not None, "the query returned no row"
    return row[0]


def seed_project(conn: Conn, project_id: int = 1) -> int:
    """An organization and a project; returns the project id."""
    org_id = scalar(conn.execute("INSERT INTO organizations (slug, name) VALUES (%s, %s) RETURNING id",
                          (f"org-{uuid.uuid4().hex[:8]}",) * 2))
    conn.execute("INSERT INTO projects (id, organization_id, slug, name) VALUES (%s, %s, %s, %s)",
                 (project_id, org_id, f"p{project_id}", f"p{project_id}"))
    return project_id


def crontab_config(expr: str, *, margin: int | None = None, max_runtime: int | None = None,
                   timezone: str | None = None, failure: int | None = None,
                   recovery: int | None = None) -> dict[str, Any]:
    """A monitor config as ``config_to_json`` stores it (only the keys given)."""
    config: dict[str, Any] = {"schedule_type": "crontab", "schedule": expr}
    for key, value in (("checkin_margin", margin), ("max_runtime", max_runtime), ("timezone", timezone),
                       ("failure_issue_threshold", failure), ("recovery_threshold", recovery)):
        if value is not None:
            config[key] = value
    return config


def seed_monitor(conn: Conn, project_id: int, slug: str, config: dict[str, Any], *,
                 next_checkin: datetime | None = None, next_checkin_latest: datetime | None = None,
                 status: MonitorStatus = MonitorStatus.ACTIVE, environment: str = "production",
                 last_checkin: datetime | None = None) -> tuple[int, int]:
    """A monitor with one environment; returns (monitor_id, monitor_environment_id)."""
    org_id = scalar(conn.execute("SELECT organization_id FROM projects WHERE id = %s", (project_id,)))
    monitor_id = scalar(conn.execute(
        "INSERT INTO monitors (organization_id, project_id, slug, name, status, config)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (org_id, project_id, slug, slug, int(status), json.dumps(config))))
    env_id = scalar(conn.execute(
        "INSERT INTO monitor_environments (monitor_id, environment, next_checkin, next_checkin_latest,"
        " last_checkin) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (monitor_id, environment, next_checkin, next_checkin_latest, last_checkin)))
    return monitor_id, env_id


def seed_checkin(conn: Conn, project_id: int, monitor_id: int, env_id: int, status: CheckInStatus,
                 date_added: datetime, *, timeout_at: datetime | None = None,
                 duration_ms: int | None = None) -> int:
    """One check-in row (its day partition created if needed); returns its id."""
    conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(%s::timestamptz AT TIME ZONE 'UTC')::date])",
                 (date_added,))
    return int(scalar(conn.execute(
        "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
        " date_updated, timeout_at, duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (uuid.uuid4(), project_id, monitor_id, env_id, int(status), date_added, date_added, timeout_at,
         duration_ms))))


# --------------------------------------------------------------------------- Kafka


def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every message value of ``topic`` (all partitions) up to the current end, in
    partition then offset order."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        values: list[bytes] = []
        for partition in sorted(metadata.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            deadline = time.monotonic() + timeout_s
            seen = low
            while seen < high:
                assert time.monotonic() < deadline, f"timed out reading {topic}[{partition}]"
                message = consumer.poll(1.0)
                if message is None or message.error():
                    continue
                value, offset = message.value(), message.offset()
                assert value is not None and offset is not None
                values.append(value)
                seen = offset + 1
        return values
    finally:
        consumer.close()


def tick_times(bootstrap: str, topic: str) -> list[datetime]:
    """The ticks on ``topic``, in order, as UTC datetimes."""
    from datetime import timezone

    from schemas.clock import decode_clock_tick

    return [datetime.fromtimestamp(decode_clock_tick(v).ts, timezone.utc) for v in read_all(bootstrap, topic)]


# --------------------------------------------------------------------------- a running clock


class ClockRig:
    """The real faust agents in-process against a test database and test topics; ticks
    and tasks are produced by the test, and :meth:`settle` waits until everything produced
    so far has been dispatched and applied (read from the offsets stored with the data)."""

    def __init__(self, bootstrap: str, topics: Any, database_url: str) -> None:
        from confluent_kafka import Producer

        from consumers.context import build_context
        from schemas.settings import Settings

        self.bootstrap = bootstrap
        self.topics = topics
        self.database_url = database_url
        settings = Settings(kafka_bootstrap=bootstrap, database_url=database_url, topic_prefix=topics.prefix)
        self.ctx = build_context(settings, topics, consumer_group=f"{topics.prefix}cronpipe")
        self.ctx.batch_within_s = 0.05
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})

    def close(self) -> None:
        from consumers.context import close_context

        self.producer.flush(10)
        close_context(self.ctx)

    def tick(self, *moments: datetime) -> None:
        from schemas.clock import encode_clock_tick

        for moment in moments:
            self.producer.produce(self.topics.clock_tick, value=encode_clock_tick(int(moment.timestamp())))
        assert self.producer.flush(15) == 0

    def task(self, raw: bytes, env_id: int) -> None:
        self.producer.produce(self.topics.clock_tasks, key=str(env_id).encode(), value=raw)
        assert self.producer.flush(15) == 0

    def stored_offsets(self, topic: str) -> dict[int, int]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT partition, next_offset FROM consumer_offsets"
                                " WHERE consumer_group = %s AND topic = %s", (self.ctx.consumer_group, topic))
            return {int(p): int(o) for p, o in rows}

    async def settle(self, timeout_s: float = 90.0) -> None:
        """Wait until every tick produced so far is dispatched and every task applied."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout_s
        for topic in (self.topics.clock_tick, self.topics.clock_tasks):
            wanted = {p: hw for p, hw in high_watermarks(self.bootstrap, topic).items() if hw > 0}
            while any(self.stored_offsets(topic).get(p, 0) < hw for p, hw in wanted.items()):
                assert time.monotonic() < deadline, f"{topic}: stored {self.stored_offsets(topic)}, wanted {wanted}"
                await asyncio.sleep(0.1)

    def run(self, agents: list[str], scenario: Any) -> None:
        import asyncio

        from consumers.worker import running_app

        async def main() -> None:
            async with running_app(self.ctx, agents):
                await scenario()

        asyncio.run(main())

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()


def checkins_of(rig: ClockRig, env_id: int) -> list[tuple[CheckInStatus, datetime, datetime | None]]:
    """(status, date_added, expected_time) of the environment's check-ins, oldest first."""
    return [(CheckInStatus(s), d, e) for s, d, e in rig.rows(
        "SELECT status, date_added, expected_time FROM checkins WHERE monitor_environment_id = %s"
        " ORDER BY date_added, id", (env_id,))]


class PipelineRig(ClockRig):
    """ClockRig plus the ingest side: check-ins and pulses with chosen message times,
    processed by the real check-in processor; waits read the offsets and clock state."""

    def pulse(self, partition: int, at: datetime) -> None:
        from schemas.messages import encode_clock_pulse

        self.producer.produce(self.topics.ingest, value=encode_clock_pulse(), partition=partition,
                              timestamp=int(at.timestamp() * 1000))

    def pulse_all(self, at: datetime) -> None:
        for partition in range(self.topics.ingest_partitions):
            self.pulse(partition, at)

    def check_in(self, slug: str, status: str, at: datetime, config: dict[str, Any] | None = None,
                 check_in_id: uuid.UUID | None = None, partition: int | None = None) -> uuid.UUID:
        from schemas.messages import encode_check_in

        guid = check_in_id or uuid.uuid4()
        payload: dict[str, Any] = {"check_in_id": guid.hex, "monitor_slug": slug, "status": status}
        if config is not None:
            payload["monitor_config"] = config
        value = encode_check_in(payload, project_id=1, start_time=at.timestamp())
        key, timestamp = f"1:{slug}".encode(), int(at.timestamp() * 1000)
        if partition is None:
            self.producer.produce(self.topics.ingest, key=key, value=value, timestamp=timestamp)
        else:
            self.producer.produce(self.topics.ingest, key=key, value=value, timestamp=timestamp, partition=partition)
        return guid

    async def wait_ingested(self, timeout_s: float = 120.0) -> None:
        """Every ingest message produced so far is committed by the processor."""
        import asyncio
        import time

        assert self.producer.flush(15) == 0
        deadline = time.monotonic() + timeout_s
        wanted = {p: hw for p, hw in high_watermarks(self.bootstrap, self.topics.ingest).items() if hw > 0}
        while any(self.stored_offsets(self.topics.ingest).get(p, 0) < hw for p, hw in wanted.items()):
            assert time.monotonic() < deadline, f"processor at {self.stored_offsets(self.topics.ingest)}, wanted {wanted}"
            await asyncio.sleep(0.1)

    def last_tick(self) -> datetime | None:
        rows = self.rows("SELECT last_tick FROM clock_state WHERE name = %s", (self.topics.ingest,))
        return rows[0][0] if rows else None

    async def wait_ticked(self, moment: datetime, timeout_s: float = 120.0) -> None:
        """The clock has produced every tick up to ``moment`` (none pending), then settle."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout_s
        while (self.last_tick() or datetime.min.replace(tzinfo=moment.tzinfo)) < moment or self.rows(
                "SELECT 1 FROM clock_pending_ticks WHERE name = %s", (self.topics.ingest,)):
            assert time.monotonic() < deadline, f"clock at {self.last_tick()}, waiting for {moment}"
            await asyncio.sleep(0.1)
        await self.settle()
