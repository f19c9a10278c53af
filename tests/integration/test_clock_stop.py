"""No clock-task work happens once the worker began to stop (issue #18.1): the real
clock-task consumers in-process, real Kafka topics and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg

from schemas.clock import encode_mark_missing
from schemas.enums import CheckInStatus
from tests.integration.clock_helpers import (
    ClockRig,
    checkins_of,
    crontab_config,
    seed_monitor,
)

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def test_clock_tasks_produced_after_the_stop_began_are_left_for_the_next_worker(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        _, env_id = seed_monitor(conn, 1, "every-minute", crontab_config("* * * * *"),
                                 next_checkin=T, next_checkin_latest=T + M)

    async def scenario() -> None:
        rig.task(encode_mark_missing(int((T + M).timestamp()), env_id), env_id)
        await rig.settle()
        applied = rig.stored_offsets(rig.topics.clock_tasks)
        rig.ctx.begin_stop("SIGTERM")
        rig.task(encode_mark_missing(int((T + 2 * M).timestamp()), env_id), env_id)
        deadline = time.monotonic() + 60
        while any(s == "running" for name, s in rig.ctx.health.agents.items() if name.startswith("clock_tasks")):
            assert time.monotonic() < deadline, f"clock-task consumers still running: {rig.ctx.health.agents}"
            await asyncio.sleep(0.1)
        assert rig.stored_offsets(rig.topics.clock_tasks) == applied

    rig.run(["clock_tasks"], scenario)
    assert [status for status, _, _ in checkins_of(rig, env_id)] == [CheckInStatus.MISSED]
