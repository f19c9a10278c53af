"""How the clock fails: a permanent database error stops the worker loudly
(consumers.retry), the same rule as the check-in processor's, instead of being retried as
a warning forever; a monitor whose schedule cannot be computed keeps a deadline (pushed
forward, with a processing error) instead of being forgotten. The real clock agents
in-process, real Kafka topics, a test database (missing a table where a test says so)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from schemas.clock import encode_mark_missing
from schemas.database import StoreError, StoreUnavailable
from schemas.enums import CheckInStatus, ProcessingErrorType
from tests.integration.clock_helpers import ClockRig, checkins_of, crontab_config, seed_monitor

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _break(rig: ClockRig, sql: str) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        conn.execute(sql)


async def _until_stopped(rig: ClockRig, timeout_s: float = 60.0) -> BaseException:
    deadline = time.monotonic() + timeout_s
    while rig.ctx.fatal is None:
        assert time.monotonic() < deadline, f"the worker kept running: {rig.ctx.health.snapshot(time.time())}"
        await asyncio.sleep(0.1)
    return rig.ctx.fatal


def _assert_stopped_loudly(rig: ClockRig, fatal: BaseException, table: str, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(fatal, StoreError) and not isinstance(fatal, StoreUnavailable)
    assert table in str(fatal)
    snapshot = rig.ctx.health.snapshot(time.time())
    assert snapshot["live"] is False and table in snapshot["fatal"]
    assert rig.ctx.stopping.is_set()
    critical = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert len(critical) == 1 and table in critical[0], critical


def test_a_missing_table_stops_the_tick_producer_instead_of_warning_forever(
        rig: ClockRig, caplog: pytest.LogCaptureFixture) -> None:
    _break(rig, "DROP TABLE clock_state")

    async def scenario() -> None:
        fatal = await _until_stopped(rig)
        _assert_stopped_loudly(rig, fatal, "clock_state", caplog)

    with caplog.at_level("WARNING"):
        rig.run(["clock"], scenario)
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "not committed" in r.getMessage()]


def test_a_missing_table_stops_the_tick_dispatch_and_commits_nothing(
        rig: ClockRig, caplog: pytest.LogCaptureFixture) -> None:
    _break(rig, "DROP TABLE clock_dispatch_cursors")

    async def scenario() -> None:
        rig.tick(T)
        fatal = await _until_stopped(rig)
        _assert_stopped_loudly(rig, fatal, "clock_dispatch_cursors", caplog)
        assert rig.stored_offsets(rig.topics.clock_tick) == {}  # the tick comes back after the fix

    with caplog.at_level("WARNING"):
        rig.run(["clock_tasks"], scenario)


def test_a_missing_table_stops_the_task_consumers_and_writes_no_check_in(
        rig: ClockRig, caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        _, env_id = seed_monitor(conn, 1, "every-minute", crontab_config("* * * * *"),
                                 next_checkin=T, next_checkin_latest=T + M)
    _break(rig, "ALTER TABLE checkin_rollups RENAME TO checkin_rollups_gone")

    async def scenario() -> None:
        rig.task(encode_mark_missing(int((T + M).timestamp()), env_id), env_id)
        fatal = await _until_stopped(rig)
        _assert_stopped_loudly(rig, fatal, "checkin_rollups", caplog)
        assert rig.stored_offsets(rig.topics.clock_tasks) == {}

    with caplog.at_level("WARNING"):
        rig.run(["clock_tasks"], scenario)
    assert rig.rows("SELECT count(*) FROM checkins WHERE monitor_environment_id = %s", (env_id,)) == [(0,)]


def test_a_monitor_whose_schedule_cannot_be_computed_keeps_a_deadline_and_is_missed_once_fixed(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        monitor_id, env_id = seed_monitor(conn, 1, "broken", {"schedule_type": "crontab", "schedule": "not a crontab"},
                                          next_checkin=T, next_checkin_latest=T + M)
    hour = timedelta(hours=1)

    def errors() -> list[tuple[object, ...]]:
        return rig.rows("SELECT organization_id, project_id, type, reason FROM processing_errors WHERE monitor_id = %s"
                        " ORDER BY id", (monitor_id,))

    def deadline() -> tuple[object, ...]:
        return rig.rows("SELECT next_checkin, next_checkin_latest FROM monitor_environments WHERE id = %s",
                        (env_id,))[0]

    async def scenario() -> None:
        rig.tick(T + M)
        await rig.settle()
        assert deadline() == (T, T + M + hour)  # pushed forward, never cleared
        [(org, project, kind, reason)] = errors()
        assert (project, kind) == (1, int(ProcessingErrorType.MONITOR_INVALID_CONFIG)) and org is not None
        assert "cannot be computed" in str(reason)
        rig.tick(T + 2 * M, T + 30 * M)  # not due again before the pushed deadline
        await rig.settle()
        assert len(errors()) == 1 and deadline() == (T, T + M + hour)
        rig.tick(T + M + hour)  # still broken: tried again, reported again, pushed again
        await rig.settle()
        assert len(errors()) == 2 and deadline() == (T, T + M + 2 * hour)
        with psycopg.connect(rig.database_url, autocommit=True) as conn:
            conn.execute("UPDATE monitors SET config = %s WHERE id = %s",
                         (json.dumps(crontab_config("*/30 * * * *")), monitor_id))
        rig.tick(T + M + 2 * hour)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert [(status, added) for status, added, _ in checkins_of(rig, env_id)] == [
        (CheckInStatus.MISSED, T + i * 30 * M) for i in range(5)]  # 10:00 ... 12:00, none skipped
    assert len(errors()) == 2
