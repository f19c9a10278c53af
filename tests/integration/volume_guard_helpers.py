"""Helpers of the volume guard's integration tests: seeded volume history (compressed
message time: the test decides what each minute held), the guard's rows, and the relay
stepped against the real ``monitors-incidents`` topic."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from consumers.incidents.relay import OutboxRelay
from schemas.enums import CheckInStatus
from tests.integration.clock_helpers import ClockRig, crontab_config, read_all, seed_checkin, seed_monitor

UTC = timezone.utc
T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
DAY = timedelta(days=1)


def seed_volume(rig: ClockRig, minutes: int, current: dict[int, int]) -> None:
    """100 a minute on each of the 30 previous days for minutes T-1 .. T+minutes, and today
    ``current[i]`` for minute T+i (100 where not given)."""
    rows: list[tuple[datetime, int]] = []
    for i in range(-1, minutes + 1):
        rows.extend((T + i * M - k * DAY, 100) for k in range(1, 31))
        rows.append((T + i * M, current.get(i, 100)))
    with psycopg.connect(rig.database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO checkin_volume (minute, count) VALUES (%s, %s)", rows)


def silent_monitor(rig: ClockRig, slug: str, first_slot: datetime, schedule: str = "* * * * *",
                   failure: int | None = None) -> int:
    """A monitor (margin 1) that never checks in, first due at ``first_slot``; its env id."""
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        return seed_monitor(conn, 1, slug, crontab_config(schedule, failure=failure), next_checkin=first_slot,
                            next_checkin_latest=first_slot + M)[1]


def running_job(rig: ClockRig, slug: str, timeout_at: datetime, *, newer_ok: bool = False) -> tuple[int, int]:
    """A monitor never due for a MISSED whose one IN_PROGRESS check-in times out at
    ``timeout_at``; with ``newer_ok`` a later run of it already finished OK (the timeout
    then fails nothing). Returns (env id, the IN_PROGRESS check-in's id)."""
    started = timeout_at - 30 * M
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        monitor_id, env_id = seed_monitor(conn, 1, slug, crontab_config("0 0 * * *"))
        checkin_id = seed_checkin(conn, 1, monitor_id, env_id, CheckInStatus.IN_PROGRESS, started,
                                  timeout_at=timeout_at)
        if newer_ok:
            seed_checkin(conn, 1, monitor_id, env_id, CheckInStatus.OK, started + M, duration_ms=1000)
    return env_id, checkin_id


def decisions(rig: ClockRig) -> dict[datetime, str]:
    return {t: d for t, d in rig.rows("SELECT tick, decision FROM clock_volume_decisions ORDER BY tick")}


def outbox_rows(rig: ClockRig) -> list[tuple[str, bool]]:
    return [(p["type"], h) for p, h in rig.rows("SELECT payload, held FROM incident_outbox ORDER BY id")]


def rollups(rig: ClockRig, env_id: int) -> tuple[Any, ...]:
    """(missed, unknown) in the environment's hourly rollups."""
    return rig.rows("SELECT coalesce(sum(missed), 0), coalesce(sum(unknown), 0) FROM checkin_rollups"
                    " WHERE monitor_environment_id = %s AND resolution = 3600", (env_id,))[0]


def timeout_rollups(rig: ClockRig, env_id: int) -> tuple[Any, ...]:
    """(timeout, unknown) in the environment's hourly rollups."""
    return rig.rows("SELECT coalesce(sum(timeout), 0), coalesce(sum(unknown), 0) FROM checkin_rollups"
                    " WHERE monitor_environment_id = %s AND resolution = 3600", (env_id,))[0]


def relayed(rig: ClockRig) -> list[bytes]:
    """Step the relay until the outbox has nothing sendable; every event on the topic."""
    relay = OutboxRelay(rig.database_url, rig.bootstrap, rig.topics.incidents)
    try:
        while relay.run_once():
            pass
    finally:
        relay.close()
    return read_all(rig.bootstrap, rig.topics.incidents, timeout_s=5.0)


def relayed_events(rig: ClockRig) -> list[dict[str, Any]]:
    return [json.loads(v) for v in relayed(rig)]


def ticks(first: int, last: int) -> list[datetime]:
    return [T + i * M for i in range(first, last + 1)]


def status_of(rig: ClockRig, checkin_id: int) -> CheckInStatus:
    return CheckInStatus(rig.rows("SELECT status FROM checkins WHERE id = %s", (checkin_id,))[0][0])


def run_of(rig: ClockRig, env_id: int) -> tuple[Any, ...]:
    """(status, failure_run, failure_run_start_id) of the environment."""
    return rig.rows("SELECT status, failure_run, failure_run_start_id FROM monitor_environments WHERE id = %s",
                    (env_id,))[0]
