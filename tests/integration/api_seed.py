"""Fixture factories for the read API tests: rows written with plain SQL, as the processor would.

Organizations, projects and tokens go through cronpipe.admin (the real code path);
monitors, environments, check-ins, attachments, incidents and processing errors are
INSERTs. Rollups are *derived* from the inserted check-ins (:meth:`Seeder.build_rollups`),
so a stats test compares the endpoint with numbers computed from the check-ins themselves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cronpipe.admin import create_org, create_project, create_token
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.rollup_counts import REBUILD_ROLLUPS

DEFAULT_CONFIG: dict[str, Any] = {
    "schedule_type": "crontab", "schedule": "0 * * * *", "checkin_margin": 5, "max_runtime": 30,
    "timezone": "UTC", "failure_issue_threshold": 2, "recovery_threshold": 1,
}


@dataclass(frozen=True)
class SeededMonitor:
    id: int
    guid: uuid.UUID
    slug: str
    organization_id: int
    project_id: int


@dataclass(frozen=True)
class SeededCheckIn:
    guid: uuid.UUID
    environment: str
    status: CheckInStatus
    date_added: datetime
    duration_ms: int | None


class Seeder:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._environments: dict[tuple[int, str], int] = {}

    def org(self, slug: str) -> int:
        return create_org(self.conn, slug).id

    def project(self, org_slug: str, slug: str, project_id: int | None = None) -> int:
        return create_project(self.conn, org_slug, slug, project_id).id

    def token(self, org_slug: str) -> str:
        return create_token(self.conn, org_slug)

    def monitor(self, organization_id: int, project_id: int, slug: str, *, name: str | None = None,
                status: MonitorStatus = MonitorStatus.ACTIVE, config: dict[str, Any] | None = None) -> SeededMonitor:
        row = self.conn.execute(
            "INSERT INTO monitors (organization_id, project_id, slug, name, status, config)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, guid",
            (organization_id, project_id, slug, name or slug, int(status), Jsonb(config or DEFAULT_CONFIG)),
        ).fetchone()
        assert row is not None
        return SeededMonitor(row[0], row[1], slug, organization_id, project_id)

    def environment(self, monitor: SeededMonitor, name: str, *, status: MonitorStatus = MonitorStatus.OK,
                    is_muted: bool = False, last_checkin: datetime | None = None,
                    next_checkin: datetime | None = None, next_checkin_latest: datetime | None = None) -> int:
        row = self.conn.execute(
            "INSERT INTO monitor_environments (monitor_id, environment, status, is_muted, last_checkin,"
            " next_checkin, next_checkin_latest) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (monitor.id, name, int(status), is_muted, last_checkin, next_checkin, next_checkin_latest),
        ).fetchone()
        assert row is not None
        self._environments[(monitor.id, name)] = row[0]
        return int(row[0])

    def checkin(self, monitor: SeededMonitor, environment: str, status: CheckInStatus, date_added: datetime,
                duration_ms: int | None = None, expected_time: datetime | None = None) -> SeededCheckIn:
        guid = uuid.uuid4()
        self.conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(%s::timestamptz AT TIME ZONE 'UTC')::date])", (date_added,))
        self.conn.execute(
            "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
            " date_updated, expected_time, duration_ms, monitor_config)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (guid, monitor.project_id, monitor.id, self._environments[(monitor.id, environment)], int(status),
             date_added, date_added, expected_time, duration_ms, Jsonb(DEFAULT_CONFIG)),
        )
        return SeededCheckIn(guid, environment, status, date_added, duration_ms)

    def attachment(self, monitor: SeededMonitor, checkin: SeededCheckIn, filename: str, content_type: str,
                   data: bytes) -> None:
        self.conn.execute(
            "INSERT INTO checkin_attachments (checkin_guid, project_id, monitor_id, filename, content_type, size,"
            " data, date_added) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (checkin.guid, monitor.project_id, monitor.id, filename, content_type, len(data), data,
             checkin.date_added),
        )

    def incident(self, monitor: SeededMonitor, environment: str, starting: datetime) -> uuid.UUID:
        row = self.conn.execute(
            "INSERT INTO incidents (monitor_id, monitor_environment_id, starting_timestamp) VALUES (%s, %s, %s)"
            " RETURNING guid",
            (monitor.id, self._environments[(monitor.id, environment)], starting),
        ).fetchone()
        assert row is not None
        return uuid.UUID(str(row[0]))

    def processing_error(self, organization_id: int, project_id: int, monitor_id: int | None, error_type: int,
                         reason: str) -> uuid.UUID:
        row = self.conn.execute(
            "INSERT INTO processing_errors (organization_id, project_id, monitor_id, type, reason, checkin)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING guid",
            (organization_id, project_id, monitor_id, error_type, reason, Jsonb({"monitor_slug": "x"})),
        ).fetchone()
        assert row is not None
        return uuid.UUID(str(row[0]))

    def build_rollups(self) -> None:
        self.conn.execute("DELETE FROM checkin_rollups")
        # Rollups as the processor keeps them (IN_PROGRESS never counted), rebuilt from the
        # check-ins with the same SQL the API benchmark seeds with (schemas.rollup_counts).
        self.conn.execute(REBUILD_ROLLUPS)
