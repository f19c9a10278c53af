"""The check-in processor end to end: real Kafka, real PostgreSQL, the faust agent in-process.

Each test produces messages with chosen timestamps, lets the agent commit them, and reads
what PostgreSQL holds. Issue 3's "Done when" list, one test per rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.examples import load_example
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline

OK, ERROR, IN_PROGRESS, TIMEOUT = (int(CheckInStatus.OK), int(CheckInStatus.ERROR),
                                   int(CheckInStatus.IN_PROGRESS), int(CheckInStatus.TIMEOUT))


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


def test_sentrys_published_example_check_in_is_stored(pipeline: Pipeline) -> None:
    example = load_example("check_in")
    pipeline.check_in("my-example-monitor", "in_progress", monitor_config=CRONTAB,
                      at=T0 - timedelta(minutes=5))
    pipeline.message(example)

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    rows = pipeline.checkins("my-example-monitor")
    assert ("19897db925604bdb888503948a180a5e", "production", OK, 100_000) in rows
    assert pipeline.errors() == []


def test_an_upsert_creates_the_monitor_named_after_its_slug(pipeline: Pipeline) -> None:
    pipeline.check_in("nightly-backup", "ok", monitor_config={**CRONTAB, "checkin_margin": 5})

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    row = pipeline.one("SELECT name, config->>'schedule', (config->>'checkin_margin')::int FROM monitors"
                       " WHERE slug = 'nightly-backup'")
    assert row == ("nightly-backup", "0 * * * *", 5)
    env = pipeline.one("SELECT environment, status, last_checkin, next_checkin, next_checkin_latest"
                       " FROM monitor_environments")
    assert env is not None
    assert env[0] == "production" and env[1] == int(MonitorStatus.OK)
    assert env[2] == T0
    assert env[3] == T0.replace(minute=0, second=0) + timedelta(hours=1)
    assert env[4] == env[3] + timedelta(minutes=5)


def test_a_second_config_updates_only_the_keys_it_gives(pipeline: Pipeline) -> None:
    pipeline.check_in("etl", monitor_config={**CRONTAB, "checkin_margin": 5, "max_runtime": 20,
                                             "timezone": "Europe/Vienna"})
    pipeline.check_in("etl", monitor_config={"schedule": {"type": "crontab", "value": "30 2 * * *"},
                                             "max_runtime": 45}, at=T0 + timedelta(minutes=1))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    config = pipeline.one("SELECT config FROM monitors WHERE slug = 'etl'")
    assert config is not None
    assert config[0]["schedule"] == "30 2 * * *"
    assert (config[0]["checkin_margin"], config[0]["max_runtime"], config[0]["timezone"]) == (5, 45, "Europe/Vienna")


def test_in_progress_then_ok_pairs_into_one_ok_check_in_with_its_duration(pipeline: Pipeline) -> None:
    guid = pipeline.check_in("report", "in_progress", monitor_config=CRONTAB)

    async def scenario() -> None:
        await pipeline.drain()
        pipeline.check_in("report", "ok", check_in_id=guid, at=T0 + timedelta(seconds=90))
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.checkins("report") == [(guid, "production", OK, 90_000)]
    assert pipeline.rollup_totals(3600) == (1, 0, 0, 1, 90_000)


def test_in_progress_then_ok_in_one_batch_is_counted_once(pipeline: Pipeline) -> None:
    guid = pipeline.check_in("report", "in_progress", monitor_config=CRONTAB)
    pipeline.check_in("report", "ok", check_in_id=guid, duration=12.5, at=T0 + timedelta(seconds=13))
    pipeline.attachment("report", guid, b"12 rows exported\n", at=T0 + timedelta(seconds=14))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.checkins("report") == [(guid, "production", OK, 12_500)]
    assert pipeline.rollup_totals(86400) == (1, 0, 0, 1, 12_500)
    assert pipeline.one("SELECT data FROM checkin_attachments WHERE checkin_guid = %s", (guid,)) == (
        b"12 rows exported\n",)


def test_a_zero_uuid_ok_closes_the_newest_in_progress_of_its_environment_only(pipeline: Pipeline) -> None:
    older = pipeline.check_in("sync", "in_progress", monitor_config=CRONTAB)
    newer = pipeline.check_in("sync", "in_progress", at=T0 + timedelta(seconds=10))
    staging = pipeline.check_in("sync", "in_progress", environment="staging", at=T0 + timedelta(seconds=20))

    async def scenario() -> None:
        await pipeline.drain()
        pipeline.check_in("sync", "ok", check_in_id=uuid.UUID(int=0), at=T0 + timedelta(seconds=40))
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.checkins("sync") == [
        (older, "production", IN_PROGRESS, None),
        (newer, "production", OK, 30_000),
        (staging, "staging", IN_PROGRESS, None),
    ]


def test_a_late_ok_on_a_timed_out_check_in_keeps_timeout_and_records_the_duration(pipeline: Pipeline) -> None:
    guid = pipeline.check_in("backup", "in_progress", monitor_config=CRONTAB)

    async def scenario() -> None:
        await pipeline.drain()
        # What the clock tasks would do: mark it TIMEOUT and count it.
        pipeline.execute("UPDATE checkins SET status = 5 WHERE guid = %s", (guid,))
        pipeline.execute("INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, timeout)"
                         " SELECT monitor_environment_id, r, to_timestamp(floor(extract(epoch FROM date_added) / r) * r), 1"
                         " FROM checkins, unnest(ARRAY[3600, 86400]) AS r WHERE guid = %s", (guid,))
        pipeline.check_in("backup", "ok", check_in_id=guid, at=T0 + timedelta(minutes=45))
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.checkins("backup") == [(guid, "production", TIMEOUT, 45 * 60_000)]
    assert pipeline.rollup_totals(3600) == (0, 0, 1, 1, 45 * 60_000)
    assert pipeline.errors() == []


def test_error_then_ok_on_the_same_id_records_checkin_finished_and_keeps_the_error(pipeline: Pipeline) -> None:
    guid = pipeline.check_in("import", "error", monitor_config=CRONTAB, duration=3)
    pipeline.check_in("import", "ok", check_in_id=guid, at=T0 + timedelta(seconds=5))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.checkins("import") == [(guid, "production", ERROR, 3000)]
    assert [t for t, _ in pipeline.errors()] == [int(ProcessingErrorType.CHECKIN_FINISHED)]
    assert pipeline.rollup_totals(3600) == (0, 1, 0, 1, 3000)


def test_an_invalid_config_for_a_new_monitor_records_invalid_config_and_writes_nothing(pipeline: Pipeline) -> None:
    pipeline.check_in("broken", monitor_config={"schedule": {"type": "crontab", "value": "* * 31 2 *"}})

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    errors = pipeline.errors()
    assert [t for t, _ in errors] == [int(ProcessingErrorType.MONITOR_INVALID_CONFIG)]
    assert errors[0][1].startswith("schedule:")
    for table in ("monitors", "monitor_environments", "checkins", "checkin_rollups"):
        assert pipeline.one(f"SELECT count(*) FROM {table}") == (0,)


def test_an_invalid_config_for_an_existing_monitor_records_the_check_in_with_the_stored_config(
        pipeline: Pipeline) -> None:
    pipeline.check_in("nightly", monitor_config={**CRONTAB, "checkin_margin": 5})
    pipeline.check_in("nightly", monitor_config={"schedule": {"type": "crontab", "value": "0 0 3 * * *"},
                                                  "timezone": "Europe/Viena"}, at=T0 + timedelta(minutes=1))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert [(t, r) for t, r in pipeline.errors()] == [
        (int(ProcessingErrorType.MONITOR_INVALID_CONFIG), "schedule: crontab has 6 fields; expected 5")]
    assert [status for _, _, status, _ in pipeline.checkins("nightly")] == [OK, OK]
    [(config,)] = pipeline.rows(  # the error names the monitor whose config it kept
        "SELECT m.config FROM monitors m JOIN processing_errors e ON e.monitor_id = m.id")
    assert (config["schedule"], config["checkin_margin"], config["timezone"]) == ("0 * * * *", 5, "UTC")
    assert pipeline.rows("SELECT DISTINCT monitor_config->>'schedule' FROM checkins") == [("0 * * * *",)]


def test_more_than_six_check_ins_in_one_minute_are_rate_limited_per_environment(pipeline: Pipeline) -> None:
    for second in range(8):
        pipeline.check_in("busy", monitor_config=CRONTAB, at=T0.replace(second=second))
    pipeline.check_in("busy", environment="staging", at=T0.replace(second=9))
    pipeline.check_in("busy", at=T0.replace(second=0) + timedelta(minutes=1))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert [t for t, _ in pipeline.errors()] == [int(ProcessingErrorType.MONITOR_ENVIRONMENT_RATELIMITED)] * 2
    assert pipeline.one("SELECT count(*) FROM checkins") == (8,)


def test_an_unknown_project_and_an_unknown_monitor_become_processing_errors(pipeline: Pipeline) -> None:
    pipeline.check_in("anything", project_id=999, monitor_config=CRONTAB)
    pipeline.check_in("never-configured")

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert [t for t, _ in pipeline.errors()] == [int(ProcessingErrorType.CHECKIN_VALIDATION_FAILED),
                                                 int(ProcessingErrorType.MONITOR_NOT_FOUND)]
    assert pipeline.one("SELECT count(*) FROM checkins") == (0,)


def test_a_disabled_monitor_rejects_check_ins(pipeline: Pipeline) -> None:
    pipeline.check_in("paused", monitor_config=CRONTAB)

    async def scenario() -> None:
        await pipeline.drain()
        pipeline.execute("UPDATE monitors SET status = 1")
        pipeline.check_in("paused", at=T0 + timedelta(hours=1))
        await pipeline.drain()
    pipeline.run(scenario)

    assert [t for t, _ in pipeline.errors()] == [int(ProcessingErrorType.MONITOR_DISABLED)]
    assert pipeline.one("SELECT count(*) FROM checkins") == (1,)


def test_processing_errors_keep_only_the_newest_hundred_per_project(pipeline: Pipeline) -> None:
    for n in range(130):
        pipeline.check_in(f"unknown-{n}", at=T0 + timedelta(seconds=n))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    reasons = [reason for _, reason in pipeline.errors()]
    assert len(reasons) == 100
    assert "'unknown-129'" in reasons[-1] and not any("'unknown-29'" in r for r in reasons)
