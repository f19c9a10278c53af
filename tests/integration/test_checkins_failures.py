"""Error tiers of the check-in processor beyond bad bytes: a message that breaks processing
(a bug) is isolated and dead-lettered, a database outage is waited out without skipping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from consumers.checkins import processing
from consumers.checkins.batch import RawEvent, handle_batch_isolating_poison
from consumers.checkins.batch_state import CheckInItem
from consumers.checkins.dlq import DlqLimiter, DlqPolicy
from cronpipe.probes import high_watermarks
from schemas.enums import CheckInStatus
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline, read_topic

if TYPE_CHECKING:
    from tests.conftest import Infra

OK, ERROR = int(CheckInStatus.OK), int(CheckInStatus.ERROR)


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def end_offset(bootstrap: str, topic: str) -> int:
    """The high watermark of partition 0: how many messages the topic ever got."""
    return high_watermarks(bootstrap, topic)[0]


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def database_down(database_url: str, admin_url: str) -> Iterator[None]:
    """The database refuses connections and drops the open ones, as in a restart."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            yield
        finally:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


def break_processing_for(slug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the domain code that only one monitor's check-ins trigger."""
    real_apply = processing.apply_check_in

    def apply_or_crash(item: CheckInItem, payload: Any, *args: Any) -> None:
        if payload.monitor_slug == slug:
            raise RuntimeError(f"bug triggered by {slug}")
        real_apply(item, payload, *args)

    monkeypatch.setattr(processing, "apply_check_in", apply_or_crash)


def test_a_message_that_breaks_processing_goes_to_the_dlq_and_the_rest_is_stored(
        pipeline: Pipeline, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    break_processing_for("poison", monkeypatch)
    poisoned_before = metric("cronpipe_poison_messages_total")
    stored: list[str] = []
    for n in range(50):
        at = T0 + timedelta(minutes=n)
        if n == 10:
            paired = pipeline.check_in("paired", "in_progress", monitor_config=CRONTAB, at=at)
        elif n == 25:
            pipeline.check_in("poison", monitor_config=CRONTAB, at=at)
        elif n == 40:  # the poison lies between the two halves of this pair
            stored.append(pipeline.check_in("paired", "ok", check_in_id=paired, at=at))
        else:
            stored.append(pipeline.check_in(f"job-{n % 5}", "error" if n % 3 == 0 else "ok",
                                            monitor_config=CRONTAB, at=at, duration=n))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    assert sorted(g.hex for (g,) in pipeline.rows("SELECT guid FROM checkins")) == sorted(stored)
    assert [(guid, status) for guid, _, status, _ in pipeline.checkins("paired")] == [(paired, OK)]
    assert pipeline.one("SELECT count(*) FROM monitors WHERE slug = 'poison'") == (0,)
    counts = dict(pipeline.rows("SELECT status, count(*) FROM checkins GROUP BY status"))
    assert pipeline.rollup_totals(86400)[:2] == (counts[OK], counts[ERROR])
    dead = read_topic(kafka_bootstrap, pipeline.topics.dlq, 1)
    assert dead[0].key() == b"1:poison"  # type: ignore[attr-defined]
    headers = dict(dead[0].headers())  # type: ignore[attr-defined]
    assert headers["reason"] == b"processing failed: RuntimeError: bug triggered by poison"
    assert (headers["original_partition"], headers["original_offset"]) == (b"0", b"25")
    assert metric("cronpipe_poison_messages_total") == poisoned_before + 1

    # Offsets moved past it: redelivering everything, or restarting, changes nothing.
    before = pipeline.rows("SELECT * FROM checkins ORDER BY id")
    events = [RawEvent(m.partition(), m.offset(), m.timestamp()[1] / 1000, m.key(), m.value())  # type: ignore[attr-defined]
              for m in read_topic(kafka_bootstrap, pipeline.topics.ingest, 50)]
    assert handle_batch_isolating_poison(pipeline.ctx, DlqLimiter(DlqPolicy()), events) is None
    pipeline.run(scenario)
    assert pipeline.rows("SELECT * FROM checkins ORDER BY id") == before
    assert end_offset(kafka_bootstrap, pipeline.topics.dlq) == 1
    assert metric("cronpipe_poison_messages_total") == poisoned_before + 1


def test_a_database_outage_retries_the_batch_without_skipping_or_dead_lettering_anything(
        pipeline: Pipeline, kafka_bootstrap: str, database_url: str, infra: Infra) -> None:
    retries_before = metric("cronpipe_batch_retries_total")
    poisoned_before = metric("cronpipe_poison_messages_total")
    guids = [pipeline.check_in("before", monitor_config=CRONTAB)]

    async def scenario() -> None:
        await pipeline.drain()
        with database_down(database_url, infra.admin_database_url):
            for n in range(20):
                guids.append(pipeline.check_in(f"during-{n % 4}", monitor_config=CRONTAB,
                                               at=T0 + timedelta(minutes=n + 1)))
            pipeline.producer.flush(10)
            await wait_until(lambda: metric("cronpipe_batch_retries_total") > retries_before,
                             "the processor to retry a batch")
        await pipeline.drain()
    pipeline.run(scenario)

    assert sorted(g.hex for (g,) in pipeline.rows("SELECT guid FROM checkins")) == sorted(guids)
    assert pipeline.rollup_totals(86400)[0] == 21
    assert end_offset(kafka_bootstrap, pipeline.topics.dlq) == 0
    assert metric("cronpipe_poison_messages_total") == poisoned_before
