"""The whole clock driven by message time: check-in processor → partition clocks →
ticks → dispatch → tasks, all real agents in-process on real Kafka and PostgreSQL.

Ingest topics use CreateTime, so message timestamps are the clock. The leader's
wall-clock pulses are pushed out of the tests' way (they would jump the clock to now);
the tests send pulses with chosen timestamps instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

import consumers.clock.ticks
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.topics import Topics
from tests.integration.clock_helpers import PipelineRig, seed_project, tick_times

UTC = timezone.utc
T = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
ALL = ["checkins", "clock", "clock_tasks"]
HOURLY = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


@pytest.fixture
def make_rig(kafka_bootstrap: str, make_topics: Callable[..., Topics], database_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], PipelineRig]]:
    monkeypatch.setattr(consumers.clock.ticks, "PULSE_INTERVAL_S", 24 * 3600.0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
    rigs: list[PipelineRig] = []

    def make(partitions: int) -> PipelineRig:
        rigs.append(PipelineRig(kafka_bootstrap, make_topics(ingest_partitions=partitions), database_url))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def test_messages_at_t_5s_1m_1m_3m5s_tick_t_1m_2m_3m_exactly_once(make_rig: Callable[[int], PipelineRig]) -> None:
    rig = make_rig(1)

    async def scenario() -> None:
        for at, ticked in ((T, T), (T + 5 * S, T), (T + M, T + M), (T + M, T + M), (T + 3 * M + 5 * S, T + 3 * M)):
            rig.pulse(0, at)
            await rig.wait_ingested()
            await rig.wait_ticked(ticked)

    rig.run(ALL, scenario)
    assert tick_times(rig.bootstrap, rig.topics.clock_tick) == [T, T + M, T + 2 * M, T + 3 * M]


def test_with_four_partitions_no_tick_happens_until_the_slowest_passes_the_minute(
        make_rig: Callable[[int], PipelineRig]) -> None:
    rig = make_rig(4)
    before_slowest: list[object] = []

    async def scenario() -> None:
        for partition in (0, 1, 2):
            rig.pulse(partition, T + 5 * M)
        await rig.wait_ingested()
        before_slowest.append((rig.last_tick(), tick_times(rig.bootstrap, rig.topics.clock_tick)))
        rig.pulse(3, T + 2 * M + 30 * S)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 2 * M)
        rig.pulse(3, T + 7 * M)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 5 * M)

    rig.run(ALL, scenario)
    assert before_slowest == [(None, [])]
    assert tick_times(rig.bootstrap, rig.topics.clock_tick) == [T + 2 * M, T + 3 * M, T + 4 * M, T + 5 * M]


def _missed(rig: PipelineRig) -> list[tuple[str, datetime]]:
    return rig.rows("SELECT m.slug, c.date_added FROM checkins c JOIN monitors m ON m.id = c.monitor_id"
                    " WHERE c.status = %s ORDER BY 1, 2", (int(CheckInStatus.MISSED),))


def test_a_day_of_backlog_processed_late_marks_nothing_missed_and_then_only_the_silent_monitor(
        make_rig: Callable[[int], PipelineRig]) -> None:
    rig = make_rig(8)
    slugs = [f"job-{i:03d}" for i in range(100)]

    def produce_hour(hour: int, monitors: list[str]) -> None:
        at = T + timedelta(hours=hour)
        for slug in monitors:
            rig.check_in(slug, "ok", at + 10 * S, HOURLY)
        rig.pulse_all(at + 20 * S)  # what the leader's pulses do for idle partitions

    # The processor is down while a day of on-time check-ins piles up.
    for hour in range(24):
        produce_hour(hour, slugs)
    assert rig.producer.flush(30) == 0
    after_backlog: list[object] = []

    async def scenario() -> None:
        await rig.wait_ingested()
        await rig.wait_ticked(T + 23 * 60 * M)
        after_backlog.append(_missed(rig))
        for hour in (24, 25):  # job-099 stops reporting
            produce_hour(hour, slugs[:-1])
        rig.pulse_all(T + 25 * 60 * M + 5 * M)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 25 * 60 * M + 5 * M)

    rig.run(ALL, scenario)
    assert after_backlog == [[]]
    assert _missed(rig) == [("job-099", T + 24 * 60 * M), ("job-099", T + 25 * 60 * M)]
    assert rig.rows("SELECT count(*) FROM checkins WHERE status = %s", (int(CheckInStatus.OK),)) == [(99 * 2 + 2400,)]


def test_an_in_progress_run_sent_through_the_processor_times_out_at_start_plus_30_minutes(
        make_rig: Callable[[int], PipelineRig]) -> None:
    rig = make_rig(1)
    config = {**HOURLY, "max_runtime": 30}
    statuses: list[object] = []

    def status() -> list[tuple[int, datetime]]:
        return rig.rows("SELECT status, date_added FROM checkins ORDER BY id")

    async def scenario() -> None:
        rig.check_in("long-job", "in_progress", T + 10 * S, config)
        rig.pulse(0, T + 29 * M + 50 * S)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 29 * M)
        statuses.append(status())
        rig.pulse(0, T + 30 * M)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 30 * M)

    rig.run(ALL, scenario)
    assert statuses == [[(CheckInStatus.IN_PROGRESS, T + 10 * S)]]
    assert status() == [(CheckInStatus.TIMEOUT, T + 10 * S)]
    assert rig.rows("SELECT status FROM monitor_environments") == [(MonitorStatus.ERROR,)]


def test_thresholds_three_and_two_through_the_processor(make_rig: Callable[[int], PipelineRig]) -> None:
    rig = make_rig(1)
    config = {"schedule": {"type": "crontab", "value": "* * * * *"}, "failure_issue_threshold": 3,
              "recovery_threshold": 2}
    seen: list[object] = []

    def state() -> tuple[object, ...]:
        env = rig.rows("SELECT status FROM monitor_environments")[0][0]
        return MonitorStatus(env), rig.rows("SELECT starting_timestamp, resolving_timestamp IS NOT NULL"
                                            " FROM incidents ORDER BY id")

    async def scenario() -> None:
        rig.check_in("flaky", "ok", T + 5 * S, config)
        for minute, status in ((1, "error"), (2, "error"), (3, "error"), (4, "error"), (5, "ok"), (6, "ok")):
            rig.check_in("flaky", status, T + minute * M + 5 * S, config)
            await rig.wait_ingested()
            await rig.wait_ticked(T + minute * M)
            seen.append(state())

    rig.run(ALL, scenario)
    first = T + M + 5 * S
    assert seen == [
        (MonitorStatus.OK, []), (MonitorStatus.OK, []),
        (MonitorStatus.ERROR, [(first, False)]), (MonitorStatus.ERROR, [(first, False)]),
        (MonitorStatus.ERROR, [(first, False)]), (MonitorStatus.OK, [(first, True)]),
    ]
    assert rig.rows("SELECT count(*) FROM checkins WHERE status = %s", (int(CheckInStatus.MISSED),)) == [(0,)]


def test_the_leader_sends_a_clock_pulse_to_every_ingest_partition(
        make_rig: Callable[[int], PipelineRig], monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import time

    from cronpipe.probes import high_watermarks
    from schemas.messages import ClockPulse, decode_ingest_message
    from tests.integration.clock_helpers import read_all

    monkeypatch.setattr(consumers.clock.ticks, "PULSE_INTERVAL_S", 1.0)
    rig = make_rig(4)

    async def scenario() -> None:
        deadline = time.monotonic() + 90
        while not all(hw > 0 for hw in high_watermarks(rig.bootstrap, rig.topics.ingest).values()):
            assert time.monotonic() < deadline, "no pulse reached every partition"
            await asyncio.sleep(0.5)

    rig.run(["clock"], scenario)
    messages = [decode_ingest_message(v) for v in read_all(rig.bootstrap, rig.topics.ingest)]
    assert messages and all(isinstance(m, ClockPulse) for m in messages)
