"""Per-monitor environment cap (issue #10.5) through real Kafka and PostgreSQL, across
batches: the count of a monitor's environments comes from the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from consumers.checkins.batch_state import ProcessorConfig
from schemas.enums import ProcessingErrorType
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url,
                 processor=ProcessorConfig(rate_limit=0, max_environments=5))
    yield p
    p.close()


def test_a_monitor_gets_at_most_the_capped_number_of_environments_across_batches(pipeline: Pipeline) -> None:
    for n in range(3):
        pipeline.check_in("sync", "ok", environment=f"env-{n}", monitor_config=CRONTAB)

    async def scenario() -> None:
        await pipeline.drain()
        for n in range(3, 10):  # one envelope's worth more, in a later batch
            pipeline.check_in("sync", "ok", environment=f"env-{n}", at=T0 + timedelta(seconds=n))
        pipeline.check_in("sync", "ok", environment="env-0", at=T0 + timedelta(seconds=30))
        await pipeline.drain()
    pipeline.run(scenario)

    environments = [e for (e,) in pipeline.rows("SELECT environment FROM monitor_environments ORDER BY id")]
    assert environments == [f"env-{n}" for n in range(5)]
    assert [t for t, _ in pipeline.errors()] == [int(ProcessingErrorType.MONITOR_ENVIRONMENT_LIMIT_EXCEEDED)] * 5
    assert len(pipeline.checkins("sync")) == 6  # env-0..4, and env-0 again
