"""Stats written by the real processor: check-ins through Kafka, the faust agent in-process,
then the stats endpoint compared with the stored check-ins, per environment and combined."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cronpipe.admin import create_token
from schemas.enums import CheckInStatus
from schemas.topics import Topics
from tests.integration.api_seed import SeededCheckIn
from tests.integration.api_world import expected_stats
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

ENVIRONMENTS = ("production", "staging")
HOURS = 2


@pytest.fixture
def pipeline(kafka_bootstrap: str, make_topics, database_url: str) -> Iterator[Pipeline]:  # type: ignore[no-untyped-def]
    topics: Topics = make_topics(ingest_partitions=1)
    p = Pipeline(kafka_bootstrap, topics, database_url)
    yield p
    p.close()


def produce_two_hours(pipeline: Pipeline) -> None:
    """Every few minutes per environment: ok or error with a duration, some as in_progress → final
    pairs, and one in_progress that never finishes (not counted)."""
    rng = random.Random(7)
    for env in ENVIRONMENTS:
        for minute in range(0, HOURS * 60, 4 if env == "production" else 7):
            at = T0 + timedelta(minutes=minute, seconds=rng.randint(0, 30))
            status = rng.choice(("ok", "ok", "ok", "error"))
            if rng.random() < 0.3:
                guid = pipeline.check_in("etl", "in_progress", at=at, environment=env, monitor_config=CRONTAB)
                pipeline.check_in("etl", status, at=at + timedelta(seconds=40), environment=env, check_in_id=guid)
            else:
                pipeline.check_in("etl", status, at=at, environment=env, monitor_config=CRONTAB,
                                  duration=round(rng.uniform(0.1, 30.0), 3))
        pipeline.check_in("etl", "in_progress", at=T0 + timedelta(minutes=HOURS * 60 - 3), environment=env,
                          check_in_id=uuid.uuid4())


def stored_checkins(database_url: str) -> list[SeededCheckIn]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT c.guid, me.environment, c.status, c.date_added, c.duration_ms FROM checkins c"
            " JOIN monitor_environments me ON me.id = c.monitor_environment_id").fetchall()
    return [SeededCheckIn(g, e, CheckInStatus(s), d, ms) for g, e, s, d, ms in rows]


def test_stats_from_processor_rollups_equal_the_stored_checkins(pipeline: Pipeline, database_url: str) -> None:
    produce_two_hours(pipeline)

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    checkins = stored_checkins(database_url)
    assert {c.environment for c in checkins} == set(ENVIRONMENTS)
    assert sum(c.status is CheckInStatus.IN_PROGRESS for c in checkins) == 2
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = create_token(conn, "acme")
    since = int(T0.timestamp()) // 3600 * 3600
    until = since + (HOURS + 1) * 3600 - 1
    with TestClient(create_app(database_url, pool_size=2)) as client:
        for environments in (None, {"production"}, {"staging"}):
            for resolution in (3600, 86400, 600):
                params: dict[str, object] = {"since": since, "until": until, "resolution": resolution}
                if environments:
                    params["environment"] = sorted(environments)
                for prefix in ("/api/0/organizations/acme/monitors/etl/", "/api/0/projects/acme/1/monitors/etl/"):
                    body = client.get(prefix + "stats/", params=params,
                                      headers={"Authorization": f"Bearer {token}"}).json()
                    expected = expected_stats(checkins, since, until, resolution, environments)
                    assert body == expected, (environments, resolution)
                    assert sum(b["ok"] + b["error"] for b in body) > 0
