"""The clock's metrics on the worker's own /metrics (consumers.health, the endpoint
``CRONPIPE_WORKER_HEALTH_PORT`` serves): the real agents in-process on real Kafka and
PostgreSQL, the numbers read over HTTP as Prometheus would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import consumers.clock.ticks
from consumers import health
from cronpipe.probes import free_port
from schemas.topics import Topics
from tests.integration.clock_helpers import ClockRig, PipelineRig, crontab_config, seed_monitor, seed_project

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("cronpipe_clock_")}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{key} not on /metrics"
    return after[key] - before.get(key, 0.0)


@pytest.fixture
def port(rig: ClockRig) -> Iterator[int]:
    chosen = free_port()
    with health.serve(rig.ctx.health, "127.0.0.1", chosen):
        yield chosen


def test_dispatched_ticks_and_tasks_applied_tasks_marked_check_ins_and_undecodable_messages_are_counted(
        rig: ClockRig, port: int) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        _, env_id = seed_monitor(conn, 1, "every-minute", crontab_config("* * * * *"),
                                 next_checkin=T, next_checkin_latest=T + M)
    samples: list[Samples] = []

    async def scenario() -> None:
        samples.append(scrape(port))
        rig.producer.produce(rig.topics.clock_tick, value=b"not a tick")
        rig.task(b"not a task", env_id)
        rig.tick(T + 4 * M)
        await rig.settle()
        samples.append(scrape(port))

    rig.run(["clock_tasks"], scenario)
    before, after = samples
    assert delta(before, after, "cronpipe_clock_ticks_dispatched_total") == 1
    assert delta(before, after, "cronpipe_clock_tasks_dispatched_total", kind="mark_missing") == 1
    assert delta(before, after, "cronpipe_clock_tasks_dispatched_total", kind="mark_timeout") == 0
    assert delta(before, after, "cronpipe_clock_tasks_applied_total") == 1
    assert delta(before, after, "cronpipe_clock_checkins_marked_total", status="missed") == 4
    assert delta(before, after, "cronpipe_clock_undecodable_total", message="tick") == 1
    assert delta(before, after, "cronpipe_clock_undecodable_total", message="task") == 1


def test_an_unschedulable_monitor_is_a_processing_error_by_type(rig: ClockRig, port: int) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        seed_monitor(conn, 1, "broken", {"schedule_type": "crontab", "schedule": "not a crontab"},
                     next_checkin=T, next_checkin_latest=T + M)
    samples: list[Samples] = []

    async def scenario() -> None:
        samples.append(scrape(port))
        rig.tick(T + M)
        await rig.settle()
        samples.append(scrape(port))

    rig.run(["clock_tasks"], scenario)
    assert delta(samples[0], samples[1], "cronpipe_clock_errors_total", stage="tasks", type="ConfigError") == 1


@pytest.fixture
def pipeline(kafka_bootstrap: str, make_topics: Callable[..., Topics], database_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineRig]:
    monkeypatch.setattr(consumers.clock.ticks, "PULSE_INTERVAL_S", 24 * 3600.0)  # no wall-clock pulses
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
    rig = PipelineRig(kafka_bootstrap, make_topics(ingest_partitions=2), database_url)
    yield rig
    rig.close()


def test_the_clock_lag_is_wall_time_minus_the_slowest_partition_and_ticks_are_counted(pipeline: PipelineRig) -> None:
    rig = pipeline
    chosen = free_port()
    samples: list[Samples] = []

    async def scenario() -> None:
        samples.append(scrape(chosen))
        rig.pulse(0, T + 7 * M)
        rig.pulse(1, T + 2 * M + 30 * S)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 2 * M)
        rig.pulse(1, T + 4 * M + 10 * S)
        await rig.wait_ingested()
        await rig.wait_ticked(T + 4 * M)
        samples.append(scrape(chosen))

    with health.serve(rig.ctx.health, "127.0.0.1", chosen):
        rig.run(["checkins", "clock", "clock_tasks"], scenario)
    before, after = samples
    assert delta(before, after, "cronpipe_clock_ticks_produced_total") == 3  # 10:02, 10:03, 10:04
    assert after[("cronpipe_clock_last_tick_timestamp_seconds", ())] == (T + 4 * M).timestamp()
    assert after[("cronpipe_clock_slowest_partition", ())] == 1
    assert after[("cronpipe_clock_position_timestamp_seconds", ())] == (T + 4 * M).timestamp()
    assert 0 < after[("cronpipe_clock_lag_seconds", ())] <= time.time() - (T + 4 * M).timestamp()
