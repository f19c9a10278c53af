"""Tick dispatch and clock tasks through real Kafka topics into a real PostgreSQL.

Monitors are seeded with SQL; ticks (and, where a test needs to force a duplicate,
tasks) are produced by the test; the real faust agents run in-process.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from schemas.clock import decode_clock_task, encode_mark_missing
from schemas.enums import CheckInStatus, MonitorStatus
from tests.integration.clock_helpers import (
    ClockRig,
    checkins_of,
    crontab_config,
    read_all,
    seed_checkin,
    seed_monitor,
)

UTC = timezone.utc
T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
MISSED, TIMEOUT, OK = CheckInStatus.MISSED, CheckInStatus.TIMEOUT, CheckInStatus.OK


def _monitor(rig: ClockRig, slug: str, config: dict[str, object], next_checkin: datetime | None,
             margin: int = 1, **kwargs: object) -> tuple[int, int]:
    latest = None if next_checkin is None else next_checkin + margin * M
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        return seed_monitor(conn, 1, slug, config, next_checkin=next_checkin, next_checkin_latest=latest,
                            **kwargs)  # type: ignore[arg-type]


def _env(rig: ClockRig, env_id: int) -> tuple[MonitorStatus, datetime | None, datetime | None]:
    status, nxt, latest = rig.rows("SELECT status, next_checkin, next_checkin_latest FROM monitor_environments"
                                   " WHERE id = %s", (env_id,))[0]
    return MonitorStatus(status), nxt, latest


def _incidents(rig: ClockRig, env_id: int) -> list[tuple[int, datetime, int | None]]:
    return rig.rows("SELECT starting_checkin_id, starting_timestamp, resolving_checkin_id FROM incidents"
                    " WHERE monitor_environment_id = %s ORDER BY id", (env_id,))


def _first_checkin_id(rig: ClockRig, env_id: int) -> int:
    return int(rig.rows("SELECT min(id) FROM checkins WHERE monitor_environment_id = %s", (env_id,))[0][0])


def test_a_silent_every_minute_monitor_gets_one_missed_per_minute_at_the_expected_times(rig: ClockRig) -> None:
    _, env_id = _monitor(rig, "every-minute", crontab_config("* * * * *"), T)

    async def scenario() -> None:
        rig.tick(T, T + M, T + 2 * M, T + 3 * M, T + 4 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert checkins_of(rig, env_id) == [(MISSED, T + i * M, T + i * M) for i in range(4)]
    assert _env(rig, env_id) == (MonitorStatus.ERROR, T + 4 * M, T + 5 * M)
    assert _incidents(rig, env_id) == [(_first_checkin_id(rig, env_id), T, None)]
    hourly, daily = (rig.rows("SELECT sum(missed), sum(timeout) FROM checkin_rollups WHERE resolution = %s",
                              (r,))[0] for r in (3600, 86400))
    assert hourly == daily == (4, 0)


def test_a_ten_minute_deadline_seen_by_two_ticks_is_missed_once(rig: ClockRig) -> None:
    _, env_id = _monitor(rig, "every-ten", crontab_config("*/10 * * * *"), T + 10 * M)

    async def scenario() -> None:
        rig.tick(T + 11 * M, T + 12 * M)
        # As if a second dispatch had raced the first: the same deadline, twice more.
        rig.task(encode_mark_missing(int((T + 11 * M).timestamp()), env_id), env_id)
        rig.task(encode_mark_missing(int((T + 12 * M).timestamp()), env_id), env_id)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert checkins_of(rig, env_id) == [(MISSED, T + 10 * M, T + 10 * M)]
    assert _env(rig, env_id)[1:] == (T + 20 * M, T + 21 * M)


@pytest.mark.parametrize("zone, midnight, following", [
    ("America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 24, 22, 0, tzinfo=UTC), datetime(2026, 10, 25, 23, 0, tzinfo=UTC)),
])
def test_a_daily_monitor_is_missed_at_local_midnight_plus_margin_across_dst(
        rig: ClockRig, zone: str, midnight: datetime, following: datetime) -> None:
    _, env_id = _monitor(rig, "nightly", crontab_config("0 0 * * *", timezone=zone, margin=5), midnight, margin=5)
    seen: list[object] = []

    async def scenario() -> None:
        rig.tick(midnight + 4 * M)
        await rig.settle()
        seen.append(checkins_of(rig, env_id))
        rig.tick(midnight + 5 * M, following + 4 * M)
        await rig.settle()
        seen.append(checkins_of(rig, env_id))
        rig.tick(following + 5 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert seen == [[], [(MISSED, midnight, midnight)]]
    assert checkins_of(rig, env_id) == [(MISSED, midnight, midnight), (MISSED, following, following)]


def test_an_in_progress_check_in_times_out_at_start_plus_max_runtime_not_a_minute_earlier(rig: ClockRig) -> None:
    monitor_id, env_id = _monitor(rig, "long-job", crontab_config("0 * * * *", max_runtime=30), None)
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        checkin_id = seed_checkin(conn, 1, monitor_id, env_id, CheckInStatus.IN_PROGRESS, T,
                                  timeout_at=T + 30 * M)
    seen: list[object] = []

    async def scenario() -> None:
        rig.tick(T + 29 * M)
        await rig.settle()
        seen.append(checkins_of(rig, env_id))
        rig.tick(T + 30 * M, T + 31 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert seen == [[(CheckInStatus.IN_PROGRESS, T, None)]]
    assert checkins_of(rig, env_id) == [(TIMEOUT, T, None)]
    assert _env(rig, env_id)[0] == MonitorStatus.ERROR
    assert _incidents(rig, env_id) == [(checkin_id, T, None)]
    assert rig.rows("SELECT sum(timeout) FROM checkin_rollups GROUP BY resolution") == [(1,), (1,)]


def test_with_overlapping_runs_only_the_older_times_out_and_a_newer_finished_run_keeps_the_env_ok(
        rig: ClockRig) -> None:
    monitor_id, env_id = _monitor(rig, "overlap", crontab_config("*/10 * * * *"), None)
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        conn.execute("UPDATE monitor_environments SET status = %s WHERE id = %s", (int(MonitorStatus.OK), env_id))
        seed_checkin(conn, 1, monitor_id, env_id, CheckInStatus.IN_PROGRESS, T, timeout_at=T + 30 * M)
        seed_checkin(conn, 1, monitor_id, env_id, CheckInStatus.IN_PROGRESS, T + 10 * M, timeout_at=T + 40 * M)
        seed_checkin(conn, 1, monitor_id, env_id, OK, T + 20 * M, duration_ms=1000)

    async def scenario() -> None:
        rig.tick(T + 30 * M, T + 31 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert [c[0] for c in checkins_of(rig, env_id)] == [TIMEOUT, CheckInStatus.IN_PROGRESS, OK]
    assert _env(rig, env_id)[0] == MonitorStatus.OK
    assert _incidents(rig, env_id) == []


def test_failure_threshold_three_opens_one_incident_at_the_third_miss_starting_at_the_first(rig: ClockRig) -> None:
    _, env_id = _monitor(rig, "flaky", crontab_config("* * * * *", failure=3, recovery=2), T)
    seen: list[object] = []

    async def scenario() -> None:
        rig.tick(T + M, T + 2 * M)
        await rig.settle()
        seen.append((_env(rig, env_id)[0], _incidents(rig, env_id)))
        rig.tick(T + 3 * M)
        await rig.settle()
        seen.append(_env(rig, env_id)[0])
        rig.tick(T + 4 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert seen == [(MonitorStatus.OK, []), MonitorStatus.ERROR]
    assert _incidents(rig, env_id) == [(_first_checkin_id(rig, env_id), T, None)]
    assert len(checkins_of(rig, env_id)) == 4


def test_disabled_monitors_get_no_tasks_and_muted_ones_still_record_incidents(rig: ClockRig) -> None:
    _, disabled = _monitor(rig, "off", crontab_config("* * * * *"), T, status=MonitorStatus.DISABLED)
    _, muted = _monitor(rig, "quiet", crontab_config("* * * * *"), T)
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        conn.execute("UPDATE monitor_environments SET is_muted = true WHERE id = %s", (muted,))

    async def scenario() -> None:
        rig.tick(T + M, T + 2 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    tasks = [decode_clock_task(v) for v in read_all(rig.bootstrap, rig.topics.clock_tasks)]
    assert {t.monitor_environment_id for t in tasks} == {muted}
    assert checkins_of(rig, disabled) == []
    assert len(checkins_of(rig, muted)) == 2 and len(_incidents(rig, muted)) == 1


def test_redelivered_tasks_change_nothing(rig: ClockRig) -> None:
    _, env_id = _monitor(rig, "every-minute", crontab_config("* * * * *"), T)

    async def scenario() -> None:
        rig.tick(T + M, T + 2 * M)
        await rig.settle()
        for raw in read_all(rig.bootstrap, rig.topics.clock_tasks):  # the same tasks, again
            rig.task(raw, env_id)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert checkins_of(rig, env_id) == [(MISSED, T, T), (MISSED, T + M, T + M)]
    assert rig.rows("SELECT sum(missed) FROM checkin_rollups GROUP BY resolution") == [(2,), (2,)]


def test_a_bounded_dispatch_continues_on_the_next_tick_then_starts_over(rig: ClockRig) -> None:
    from consumers.clock.dispatch import KafkaTaskSink, dispatch_tick

    env_ids = [_monitor(rig, f"job-{i}", crontab_config("* * * * *"), T)[1] for i in range(5)]
    sink = KafkaTaskSink(rig.bootstrap, rig.topics.clock_tasks)
    sent: list[list[int]] = []

    def all_sent() -> Counter[int]:
        return Counter(decode_clock_task(v).monitor_environment_id
                       for v in read_all(rig.bootstrap, rig.topics.clock_tasks))

    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        before: Counter[int] = Counter()
        for offset in range(4):
            result = dispatch_tick(conn, sink, T + (offset + 1) * M, group="g", topic="ticks", partition=0,
                                   offset=offset, limit=2, chunk=1)
            assert result is not None
            now = all_sent()
            sent.append(sorted((now - before).elements()))
            before = now
        redelivered = dispatch_tick(conn, sink, T + M, group="g", topic="ticks", partition=0, offset=0, limit=2)
    assert sent == [env_ids[0:2], env_ids[2:4], env_ids[4:5], env_ids[0:2]]
    assert redelivered is None
