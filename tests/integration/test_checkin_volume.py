"""The volume guard's history: the processor counts accepted check-ins per message minute."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


def test_accepted_check_ins_are_counted_per_message_minute_and_rejected_ones_are_not(pipeline: Pipeline) -> None:
    minute = T0.replace(second=0, microsecond=0)
    pipeline.check_in("a", "ok", monitor_config=CRONTAB, at=T0)
    pipeline.check_in("b", "ok", monitor_config=CRONTAB, at=T0)
    pipeline.check_in("a", "ok", at=T0 + timedelta(minutes=1))
    pipeline.check_in("nobody-knows-me", "ok", at=T0 + timedelta(minutes=1))  # MONITOR_NOT_FOUND

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert pipeline.rows("SELECT minute, count FROM checkin_volume ORDER BY minute") == [
        (minute, 2), (minute + timedelta(minutes=1), 1)]
