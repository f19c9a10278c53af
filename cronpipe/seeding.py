"""Bulk seeding with plain SQL, shared by the benchmarks and the tests (which must not import
benchmark code): many monitors at once, each with an environment already due."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

from schemas.enums import MonitorStatus

EVERY_MINUTE = {"schedule_type": "crontab", "schedule": "* * * * *", "checkin_margin": None,
                "max_runtime": None, "timezone": "UTC", "failure_issue_threshold": None,
                "recovery_threshold": None}


def seed_monitors(conn: psycopg.Connection[Any], count: int, *, next_checkin: datetime, margin_minutes: int = 1,
                  config: dict[str, Any] | None = None, project_id: int = 1, slug_prefix: str = "bench") -> None:
    """COPY ``count`` monitors of ``project_id`` (which must exist), each with a
    ``production`` environment due at ``next_checkin + margin``."""
    row = conn.execute("SELECT organization_id FROM projects WHERE id = %s", (project_id,)).fetchone()
    if row is None:
        raise RuntimeError(f"project {project_id} does not exist")
    text = json.dumps(config or EVERY_MINUTE)
    with conn.cursor().copy("COPY monitors (organization_id, project_id, slug, name, config) FROM STDIN") as copy:
        for i in range(count):
            slug = f"{slug_prefix}-{i}"
            copy.write_row((row[0], project_id, slug, slug, text))
    conn.execute(
        "INSERT INTO monitor_environments (monitor_id, environment, status, next_checkin, next_checkin_latest)"
        f" SELECT id, 'production', {int(MonitorStatus.OK)}, %(next)s, %(latest)s FROM monitors"
        " WHERE project_id = %(project)s AND slug LIKE %(pattern)s",
        {"next": next_checkin, "latest": next_checkin + timedelta(minutes=margin_minutes),
         "project": project_id, "pattern": f"{slug_prefix}-%"})
