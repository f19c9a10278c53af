"""A permanent database error in the clock stops the worker loudly (consumers.retry), the
same rule as the check-in processor's, instead of being retried as a warning forever:
the real clock agents in-process, real Kafka topics, a test database missing a table."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from consumers.database import StoreError, StoreUnavailable
from schemas.clock import encode_mark_missing
from tests.integration.clock_helpers import ClockRig, crontab_config, seed_monitor

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
