"""Seeding helpers for the clock's integration tests: plain SQL, no processor needed.

Imported as ``clock_helpers`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg

from schemas.enums import CheckInStatus, MonitorStatus

Conn = psycopg.Connection[Any]


def seed_project(conn: Conn, project_id: int = 1) -> int:
    """An organization and a project; returns the project id."""
    org_id = conn.execute("INSERT INTO organizations (slug, name) VALUES (%s, %s) RETURNING id",
                          (f"org-{uuid.uuid4().hex[:8]}",) * 2).fetchone()[0]
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
    org_id = conn.execute("SELECT organization_id FROM projects WHERE id = %s", (project_id,)).fetchone()[0]
    monitor_id = conn.execute(
        "INSERT INTO monitors (organization_id, project_id, slug, name, status, config)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (org_id, project_id, slug, slug, int(status), json.dumps(config))).fetchone()[0]
    env_id = conn.execute(
        "INSERT INTO monitor_environments (monitor_id, environment, next_checkin, next_checkin_latest,"
        " last_checkin) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (monitor_id, environment, next_checkin, next_checkin_latest, last_checkin)).fetchone()[0]
    return monitor_id, env_id


def seed_checkin(conn: Conn, project_id: int, monitor_id: int, env_id: int, status: CheckInStatus,
                 date_added: datetime, *, timeout_at: datetime | None = None,
                 duration_ms: int | None = None) -> int:
    """One check-in row; returns its id."""
    return conn.execute(
        "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
        " date_updated, timeout_at, duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (uuid.uuid4(), project_id, monitor_id, env_id, int(status), date_added, date_added, timeout_at,
         duration_ms)).fetchone()[0]


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
                values.append(message.value())
                seen = message.offset() + 1
        return values
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """End offset of each partition of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def tick_times(bootstrap: str, topic: str) -> list[datetime]:
    """The ticks on ``topic``, in order, as UTC datetimes."""
    from datetime import timezone

    from schemas.clock import decode_clock_tick

    return [datetime.fromtimestamp(decode_clock_tick(v).ts, timezone.utc) for v in read_all(bootstrap, topic)]
