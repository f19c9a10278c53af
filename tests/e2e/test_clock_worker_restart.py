"""Kill -9 the clock-tasks worker (`cronpipe worker --agents clock_tasks`) in the middle of a
run, restart it, and check that nothing was written twice: one MISSED per environment and
slot, one TIMEOUT per run, rollups equal to the check-ins table, one incident per environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from cronpipe.seeding import seed_monitors
from schemas.enums import CheckInStatus
from schemas.topics import Topics
from tests.integration.clock_helpers import ClockRig, seed_project

UTC = timezone.utc
T = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
MONITORS, TICKS, RUNS = 3000, 8, 300
CRONPIPE = str(Path(sys.executable).with_name("cronpipe"))


@pytest.fixture
def rig(kafka_bootstrap: str, topics: Topics, database_url: str) -> Iterator[ClockRig]:
    rig = ClockRig(kafka_bootstrap, topics, database_url)
    yield rig
    rig.close()


def _start_worker(rig: ClockRig, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": rig.bootstrap, "CRONPIPE_DATABASE_URL": rig.database_url,
           "CRONPIPE_TOPIC_PREFIX": rig.topics.prefix}
    with log.open("ab") as out:
        return subprocess.Popen([CRONPIPE, "worker", "--agents", "clock_tasks"], env=env, stdout=out, stderr=out)


def _count(rig: ClockRig, status: CheckInStatus) -> int:
    return int(rig.rows("SELECT count(*) FROM checkins WHERE status = %s", (int(status),))[0][0])


def _seed(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn, conn.transaction():
        seed_project(conn)
        seed_monitors(conn, MONITORS, next_checkin=T)
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(%s::timestamptz AT TIME ZONE 'UTC')::date])", (T - 28 * M,))
        # Long runs on the first environments, timing out at T+2m.
        conn.execute("INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                     " date_added, date_updated, timeout_at)"
                     " SELECT gen_random_uuid(), 1, monitor_id, id, 3, %(start)s, %(start)s, %(timeout)s"
                     " FROM monitor_environments ORDER BY id LIMIT %(runs)s",
                     {"start": T - 28 * M, "timeout": T + 2 * M, "runs": RUNS})


def test_killing_the_clock_tasks_worker_mid_run_writes_nothing_twice(rig: ClockRig, tmp_path: Path) -> None:
    _seed(rig)
    rig.tick(*(T + i * M for i in range(1, TICKS + 1)))
    log = tmp_path / "worker.log"
    worker = _start_worker(rig, log)
    try:
        deadline = time.monotonic() + 120
        while _count(rig, CheckInStatus.MISSED) == 0:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait(30)
    at_kill = _count(rig, CheckInStatus.MISSED)

    worker = _start_worker(rig, log)
    try:
        asyncio.run(rig.settle(timeout_s=240))
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(60)

    assert 0 < at_kill < MONITORS * TICKS, "the kill should land mid-run"
    assert exit_code == 0, log.read_text()[-3000:]
    per_slot = rig.rows("SELECT monitor_environment_id, date_added, count(*) FROM checkins WHERE status = %s"
                        " GROUP BY 1, 2 HAVING count(*) > 1", (int(CheckInStatus.MISSED),))
    assert per_slot == []
    assert _count(rig, CheckInStatus.MISSED) == MONITORS * TICKS
    assert _count(rig, CheckInStatus.TIMEOUT) == RUNS
    for resolution in (3600, 86400):
        assert rig.rows("SELECT sum(missed), sum(timeout) FROM checkin_rollups WHERE resolution = %s",
                        (resolution,)) == [(MONITORS * TICKS, RUNS)]
    assert rig.rows("SELECT count(*), count(DISTINCT monitor_environment_id) FROM incidents"
                    " WHERE resolving_timestamp IS NULL") == [(MONITORS, MONITORS)]
