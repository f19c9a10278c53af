"""Delivery guarantees of the check-in processor: DLQ, redelivery, rollups = check-ins."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from consumers.checkins.batch import RawEvent, handle_batch
from consumers.checkins.dlq import DlqLimiter, DlqLimitExceeded, DlqPolicy
from consumers.worker import running_app
from schemas.enums import CheckInStatus
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline, read_topic

OK, ERROR, IN_PROGRESS = int(CheckInStatus.OK), int(CheckInStatus.ERROR), int(CheckInStatus.IN_PROGRESS)


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


def snapshot(pipeline: Pipeline) -> list[object]:
    return [pipeline.rows(f"SELECT * FROM {table} ORDER BY 1, 2") for table in (
        "checkins", "monitor_environments", "checkin_rollups", "processing_errors", "monitors")]


def test_garbage_bytes_go_to_the_dlq_with_their_key_and_reason_and_the_partition_goes_on(
        pipeline: Pipeline, kafka_bootstrap: str) -> None:
    pipeline.raw(b"\xc1 not msgpack", key=b"1:garbage")
    pipeline.message({"message_type": "check_in", "project_id": 1})  # a map, but no payload
    pipeline.check_in("after", monitor_config=CRONTAB)

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    dead = read_topic(kafka_bootstrap, pipeline.topics.dlq, 2)
    assert (dead[0].key(), dead[0].value()) == (b"1:garbage", b"\xc1 not msgpack")  # type: ignore[attr-defined]
    headers = [dict(m.headers()) for m in dead]  # type: ignore[attr-defined]
    assert headers[0]["reason"].startswith(b"not msgpack")
    assert (headers[0]["original_partition"], headers[0]["original_offset"]) == (b"0", b"0")
    assert headers[1]["reason"].startswith(b"payload: field required")
    assert pipeline.one("SELECT count(*) FROM checkins") == (1,)


def test_the_dlq_limit_stops_the_batch_instead_of_draining_the_topic(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    for n in range(5):
        pipeline.raw(b"\xc1 garbage %d" % n)
    pipeline.producer.flush(10)
    events = [RawEvent(m.partition(), m.offset(), m.timestamp()[1] / 1000, m.key(), m.value())  # type: ignore[attr-defined]
              for m in read_topic(kafka_bootstrap, pipeline.topics.ingest, 5)]

    with pytest.raises(DlqLimitExceeded, match="5 dead letters"):
        handle_batch(pipeline.ctx, DlqLimiter(DlqPolicy(max_messages=4, window_s=60)), events)

    assert pipeline.stored_offset() == 0  # nothing committed: the batch is retried after a fix


def test_replaying_the_same_offsets_changes_nothing(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    first = pipeline.check_in("replayed", "in_progress", monitor_config=CRONTAB)
    pipeline.check_in("replayed", "ok", check_in_id=first, at=T0 + timedelta(seconds=30))
    pipeline.check_in("replayed", "error", at=T0 + timedelta(minutes=1))
    pipeline.check_in("replayed", "ok", project_id=404)  # a processing error

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)
    before = snapshot(pipeline)

    events = [RawEvent(m.partition(), m.offset(), m.timestamp()[1] / 1000, m.key(), m.value())  # type: ignore[attr-defined]
              for m in read_topic(kafka_bootstrap, pipeline.topics.ingest, 4)]
    assert handle_batch(pipeline.ctx, DlqLimiter(DlqPolicy()), events) is None
    assert handle_batch(pipeline.ctx, DlqLimiter(DlqPolicy()), events[2:]) is None

    assert snapshot(pipeline) == before


def test_a_reset_kafka_consumer_group_resumes_from_the_offsets_stored_in_postgres(pipeline: Pipeline) -> None:
    pipeline.check_in("resumed", monitor_config=CRONTAB)
    pipeline.check_in("resumed", "error", at=T0 + timedelta(minutes=1))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)
    before = pipeline.rollup_totals(3600)

    async def fresh_group() -> None:
        # A new faust app id is a Kafka consumer group without any committed offset.
        async with running_app(pipeline.ctx, ["checkins"], app_id=f"{pipeline.topics.prefix}other"):
            pipeline.check_in("resumed", at=T0 + timedelta(minutes=2))
            await pipeline.drain()
    import asyncio
    asyncio.run(fresh_group())

    assert pipeline.rollup_totals(3600) == (before[0] + 1, *before[1:])
    assert pipeline.one("SELECT count(*) FROM checkins") == (3,)


def test_several_check_ins_of_one_monitor_in_one_batch_apply_in_order_per_environment(pipeline: Pipeline) -> None:
    every_minute = {"schedule": {"type": "crontab", "value": "* * * * *"}}
    for minute in range(3):
        for env in ("production", "staging"):
            pipeline.check_in("minutely", monitor_config=every_minute, environment=env,
                              at=T0.replace(second=0) + timedelta(minutes=minute))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    rows = pipeline.rows("SELECT me.environment, c.expected_time FROM checkins c"
                         " JOIN monitor_environments me ON me.id = c.monitor_environment_id"
                         " ORDER BY me.environment, c.date_added")
    start = T0.replace(second=0)
    expected = [None, start + timedelta(minutes=1), start + timedelta(minutes=2)]
    assert rows == [("production", t) for t in expected] + [("staging", t) for t in expected]


def test_rollup_totals_equal_the_check_in_counts(pipeline: Pipeline) -> None:
    rng = random.Random(3)
    open_ids: list[tuple[str, str]] = []
    at = T0
    for _ in range(600):
        at += timedelta(seconds=rng.randint(5, 400))
        slug, env = f"job-{rng.randint(0, 9)}", rng.choice(["production", "staging"])
        roll = rng.random()
        if roll < 0.3 and open_ids:
            slug, guid = open_ids.pop(rng.randrange(len(open_ids)))
            pipeline.check_in(slug, rng.choice(["ok", "error"]), check_in_id=guid, at=at,
                              environment="production")
        elif roll < 0.5:
            open_ids.append((slug, pipeline.check_in(slug, "in_progress", monitor_config=CRONTAB, at=at)))
        else:
            pipeline.check_in(slug, rng.choice(["ok", "ok", "error"]), monitor_config=CRONTAB, at=at,
                              environment=env, duration=rng.choice([None, rng.uniform(0, 60)]))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    counted = pipeline.rows(
        "SELECT monitor_environment_id, bucket, ok, error, duration_count, duration_sum_ms FROM checkin_rollups"
        " WHERE resolution = %s AND (ok, error, duration_count) <> (0, 0, 0) ORDER BY 1, 2", (3600,))
    actual = pipeline.rows(
        "SELECT monitor_environment_id, date_trunc('hour', date_added) AS b, count(*) FILTER (WHERE status = 1),"
        " count(*) FILTER (WHERE status = 2), count(duration_ms), coalesce(sum(duration_ms), 0)"
        " FROM checkins WHERE status <> 3 GROUP BY 1, 2 ORDER BY 1, 2")
    assert counted == actual
    daily = pipeline.rollup_totals(86400)
    assert daily[:2] == (sum(r[2] for r in actual), sum(r[3] for r in actual))
    assert pipeline.one("SELECT count(*) FROM checkins WHERE status = 3")[0] > 0  # type: ignore[index]


def test_two_consumers_applying_the_same_batch_at_once_apply_it_once(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    for n in range(50):
        pipeline.check_in(f"raced-{n % 5}", monitor_config=CRONTAB, at=T0 + timedelta(minutes=n))
    pipeline.producer.flush(10)
    events = [RawEvent(m.partition(), m.offset(), m.timestamp()[1] / 1000, m.key(), m.value())  # type: ignore[attr-defined]
              for m in read_topic(kafka_bootstrap, pipeline.topics.ingest, 50)]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: handle_batch(pipeline.ctx, DlqLimiter(DlqPolicy()), events), range(2)))

    assert sorted(r is None for r in results) == [False, True]  # one committed, one found it done
    assert pipeline.one("SELECT count(*) FROM checkins") == (50,)
    assert pipeline.rollup_totals(86400)[0] == 50
