"""Config upsert from check-ins, as Sentry does, with the real Sentry Python SDK: an invalid
``monitor_config`` is not a gateway 400 that the SDK swallows. For an existing monitor the
check-in is recorded with the stored config; for a new one nothing is created; both leave a
MONITOR_INVALID_CONFIG processing error that the API lists.

The real gateway (uvicorn) and the real check-in processor (faust agent) run in-process
on real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sentry_sdk
from fastapi.testclient import TestClient
from sentry_sdk.crons import capture_checkin

from api.app import create_app
from cronpipe.admin import create_token, dsn
from schemas.enums import CheckInStatus, ProcessingErrorType
from schemas.topics import Topics
from tests.integration.checkins_pipeline import Pipeline
from tests.integration.gateway_harness import Gateway, gateway_config, run_gateway

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig

VALID: MonitorConfig = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 5}
# A seconds-capable library's 6-field crontab and a typo in the timezone.
INVALID: MonitorConfig = {"schedule": {"type": "crontab", "value": "0 0 3 * * *"}, "timezone": "Europe/Viena"}


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


@pytest.fixture
def gateway(kafka_bootstrap: str, pipeline: Pipeline) -> Iterator[Gateway]:
    config = gateway_config(kafka_bootstrap, pipeline.topics.ingest, pipeline.database_url)
    with run_gateway(config) as running:
        yield running


@pytest.fixture
def sentry(gateway: Gateway, pipeline: Pipeline) -> Iterator[None]:
    [(public_key,)] = pipeline.rows("SELECT public_key FROM project_keys WHERE project_id = 1")
    port = int(gateway.url.rsplit(":", 1)[1])
    sentry_sdk.init(dsn=dsn(public_key, "127.0.0.1", port, 1), default_integrations=False)
    try:
        yield
    finally:
        sentry_sdk.get_client().close(timeout=30)
        sentry_sdk.init()


async def sdk_check_in(**kwargs: Any) -> None:
    """One check-in through the SDK, flushed (the SDK's transport is synchronous)."""
    def send() -> None:
        capture_checkin(**kwargs)
        sentry_sdk.flush(timeout=30)
    await asyncio.to_thread(send)


async def stored_offset_reaches(pipeline: Pipeline, count: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pipeline.stored_offset() < count:
        assert time.monotonic() < deadline, f"stored offset {pipeline.stored_offset()}, expected {count}"
        await asyncio.sleep(0.1)


def accepted_and_rejected(gateway: Gateway) -> tuple[str, str]:
    lines = gateway.client.get("/metrics").text.splitlines()
    accepted = [line for line in lines if line.startswith('cronpipe_gateway_accepted_total{kind="check_in"}')]
    rejected = [line for line in lines if line.startswith("cronpipe_gateway_rejected_total{")]
    return accepted[0].rsplit(" ", 1)[1], ",".join(rejected)


def api_errors(pipeline: Pipeline) -> list[dict[str, Any]]:
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        token = create_token(conn, "acme")
    with TestClient(create_app(pipeline.database_url, pool_size=1)) as client:
        response = client.get("/api/0/organizations/acme/processing-errors/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_invalid_config_for_an_existing_monitor_keeps_its_config_and_records_the_check_in(
        sentry: None, gateway: Gateway, pipeline: Pipeline) -> None:
    async def scenario() -> None:
        await sdk_check_in(monitor_slug="established", status="ok", monitor_config=VALID)
        await stored_offset_reaches(pipeline, 1)
        await sdk_check_in(monitor_slug="established", status="ok", monitor_config=INVALID)
        await stored_offset_reaches(pipeline, 2)
    pipeline.run(scenario)

    assert accepted_and_rejected(gateway) == ("2.0", "")
    assert [status for _, _, status, _ in pipeline.checkins("established")] == [int(CheckInStatus.OK)] * 2
    [(config,)] = pipeline.rows("SELECT config FROM monitors WHERE slug = 'established'")
    assert (config["schedule"], config["checkin_margin"], config["timezone"]) == ("0 * * * *", 5, "UTC")
    [error] = api_errors(pipeline)
    assert error["errors"][0]["type"] == int(ProcessingErrorType.MONITOR_INVALID_CONFIG)
    assert error["errors"][0]["reason"] == "schedule: crontab has 6 fields; expected 5"
    assert error["monitorId"] is not None


def test_an_invalid_config_for_a_new_monitor_is_accepted_and_leaves_a_processing_error_not_a_monitor(
        sentry: None, gateway: Gateway, pipeline: Pipeline) -> None:
    async def scenario() -> None:
        await sdk_check_in(monitor_slug="brand-new", status="ok",
                           monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"},
                                           "timezone": "Europe/Viena"})
        await stored_offset_reaches(pipeline, 1)
    pipeline.run(scenario)

    assert accepted_and_rejected(gateway) == ("1.0", "")
    assert pipeline.rows("SELECT slug FROM monitors") == []
    [error] = api_errors(pipeline)
    assert error["errors"][0]["type"] == int(ProcessingErrorType.MONITOR_INVALID_CONFIG)
    assert error["errors"][0]["reason"] == "timezone: unknown timezone 'Europe/Viena'"
