"""Retention meets ingestion: the real check-in agent on real Kafka and PostgreSQL stores
check-ins of any date, with their retention, while maintenance passes run beside it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from consumers.checkins.batch_state import ProcessorConfig
from consumers.maintenance.plan import RetentionConfig, expired
from consumers.maintenance.run import maintain
from schemas.messages import encode_check_in
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, Pipeline
from tests.integration.clock_helpers import read_all
from tests.integration.retention_seed import seed_history

UTC = timezone.utc
NOW = datetime.now(UTC)


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url,
                 processor=ProcessorConfig(rate_limit=0, retention_days_default=45))
    yield p
    p.close()


def _check_in(pipeline: Pipeline, slug: str, status: str, at: datetime, retention_days: int,
              guid: uuid.UUID | None = None) -> uuid.UUID:
    guid = guid or uuid.uuid4()
    payload = {"check_in_id": guid.hex, "monitor_slug": slug, "status": status, "monitor_config": CRONTAB}
    pipeline.raw(encode_check_in(payload, project_id=1, start_time=at.timestamp(), retention_days=retention_days),
                 key=f"1:{slug}".encode(), at=min(at, datetime.now(UTC)))  # the broker refuses future stamps
    return guid


def test_check_ins_dated_three_years_back_and_two_days_ahead_are_stored_with_their_retention(
        pipeline: Pipeline) -> None:
    old = _check_in(pipeline, "backfill", "ok", NOW - timedelta(days=3 * 365), 0)
    ahead = _check_in(pipeline, "skewed", "ok", NOW + timedelta(days=2), 30)

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    stored = dict(pipeline.rows("SELECT guid, retention_days FROM checkins"))
    assert stored == {old: 45, ahead: 30}  # 0 means "none sent": the configured default
    assert pipeline.errors() == []
    assert read_all(pipeline.ctx.settings.kafka_bootstrap, pipeline.topics.dlq, timeout_s=5) == []
    three_years_back = f"checkins_p{(NOW - timedelta(days=3 * 365)).date():%Y%m%d}"
    assert pipeline.rows("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                         " WHERE c.relname = %s", (three_years_back,)) == [(1,)]


def test_ingest_through_the_worker_during_maintenance_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    today = NOW.date()
    org_id = pipeline.rows("SELECT id FROM organizations WHERE slug = 'acme'")[0][0]
    with_history = pipeline.rows(
        "INSERT INTO monitors (organization_id, project_id, slug, name, config)"
        " VALUES (%s, 1, 'history', 'history', '{\"schedule_type\": \"crontab\", \"schedule\": \"0 * * * *\"}')"
        " RETURNING id", (org_id,))
    history_id = with_history[0][0]
    env_id = pipeline.rows("INSERT INTO monitor_environments (monitor_id, environment) VALUES (%s, 'production')"
                           " RETURNING id", (history_id,))[0][0]
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        history = seed_history(conn, project_id=1, monitor_id=history_id, env_ids=[env_id],
                               first=today - timedelta(days=119), days=120,
                               per_day=[(m, 30 if m % 2 else 90) for m in range(0, 1440, 60)])
    config = RetentionConfig(batch_size=50)
    produced: dict[uuid.UUID, str] = {}
    late_day = NOW - timedelta(days=100)  # a day whose partition the passes drop

    async def scenario() -> None:
        passes = [asyncio.create_task(asyncio.to_thread(maintain, pipeline.database_url, NOW, config))]
        for i in range(600):
            slug = f"job-{i % 20}"
            if i % 3 == 0:
                guid = _check_in(pipeline, slug, "in_progress", NOW - timedelta(seconds=600 - i), 0)
                _check_in(pipeline, slug, "ok", NOW - timedelta(seconds=590 - i), 0, guid)
            elif i % 50 == 1:
                guid = _check_in(pipeline, "late", "ok", late_day + timedelta(seconds=i), 365)
            else:
                guid = _check_in(pipeline, slug, "ok", NOW - timedelta(seconds=600 - i), 0)
            produced[guid] = "ok"
            if i == 300:
                pipeline.producer.flush(10)
                passes.append(asyncio.create_task(asyncio.to_thread(maintain, pipeline.database_url, NOW, config)))
            if i % 100 == 0:
                await asyncio.sleep(0.2)
        await pipeline.drain()
        summaries = await asyncio.gather(*passes)
        assert any(s.dropped for s in summaries)
        await asyncio.to_thread(maintain, pipeline.database_url, NOW, config)
    pipeline.run(scenario)

    rows = pipeline.rows("SELECT c.guid, c.status, m.slug FROM checkins c JOIN monitors m ON m.id = c.monitor_id"
                         " WHERE m.slug <> 'history'")
    assert sorted(r[0] for r in rows) == sorted(produced)  # each exactly once
    assert {r[1] for r in rows} == {1}
    assert pipeline.errors() == []
    assert read_all(pipeline.ctx.settings.kafka_bootstrap, pipeline.topics.dlq, timeout_s=5) == []
    kept_history = {g for g, (day, r) in history.items() if not expired(day, r, today)}
    assert {r[0] for r in pipeline.rows("SELECT guid FROM checkins WHERE monitor_id = %s", (history_id,))} \
        == kept_history
    assert pipeline.rows("SELECT count(*) FROM checkins c FULL JOIN checkin_guids g"
                         " ON g.guid = c.guid AND g.checkin_id = c.id AND g.date_added = c.date_added"
                         " WHERE c.id IS NULL OR g.guid IS NULL") == [(0,)]
