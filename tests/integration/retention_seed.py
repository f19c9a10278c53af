"""Check-in history for the retention tests, written with COPY as the processor would."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import psycopg

from schemas.enums import CheckInStatus

UTC = timezone.utc


def seed_history(conn: psycopg.Connection[Any], *, project_id: int, monitor_id: int, env_ids: Sequence[int],
                 first: date, days: int, per_day: Sequence[tuple[int, int]]) -> dict[uuid.UUID, tuple[date, int]]:
    """For each of ``days`` days from ``first``, one OK check-in per ``(minute of the day,
    retention_days)`` of ``per_day`` (environments in turn; every fifth day's first one an
    ERROR). Returns guid -> (day, retention_days)."""
    conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY(SELECT %s::date + n"
                 " FROM generate_series(0, %s) AS n))", (first, days - 1))
    rows: dict[uuid.UUID, tuple[date, int]] = {}
    with conn.cursor().copy("COPY checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                            " date_added, date_updated, duration_ms, retention_days) FROM STDIN") as copy:
        for n in range(days):
            day = first + timedelta(days=n)
            for k, (minute, retention) in enumerate(per_day):
                guid = uuid.uuid4()
                at = datetime.combine(day, time(), UTC) + timedelta(minutes=minute)
                status = CheckInStatus.ERROR if n % 5 == 0 and k == 0 else CheckInStatus.OK
                copy.write_row((guid, project_id, monitor_id, env_ids[k % len(env_ids)], int(status), at, at,
                                1000 + n, retention))
                rows[guid] = (day, retention)
    return rows
