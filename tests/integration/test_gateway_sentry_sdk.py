"""The official Sentry Python SDK, pointed at cronpipe by its DSN only, reaches Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson
import pytest
import sentry_sdk
from sentry_sdk.crons import capture_checkin

from cronpipe.admin import dsn
from schemas.messages import CheckInMessage
from schemas.topics import Topics
from tests.integration.gateway_harness import Gateway, Project, read_topic

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig

CONFIG: MonitorConfig = {"schedule": {"type": "crontab", "value": "*/5 * * * *"}, "checkin_margin": 2, "max_runtime": 10,
          "timezone": "UTC"}



@pytest.fixture
def sentry(gateway: Gateway, project: Project) -> Iterator[None]:
    port = int(gateway.url.rsplit(":", 1)[1])
    sentry_sdk.init(dsn=dsn(project.public_key, "127.0.0.1", port, project.id), environment="production",
                    default_integrations=False)
    try:
        yield
    finally:
        sentry_sdk.get_client().close(timeout=30)
        sentry_sdk.init()  # back to a client without a DSN: the SDK is process-global


def published_check_ins(kafka_bootstrap: str, topics: Topics, expected: int) -> list[tuple[CheckInMessage, dict]]:  # type: ignore[type-arg]
    found = read_topic(kafka_bootstrap, topics.ingest, expected, timeout_s=60)
    return [(p.message, orjson.loads(p.message.payload)) for p in found if isinstance(p.message, CheckInMessage)]


def test_capture_checkin_in_progress_then_ok_reaches_kafka_paired_with_its_config(
    sentry: None, kafka_bootstrap: str, topics: Topics
) -> None:
    check_in_id = capture_checkin(monitor_slug="sdk-job", status="in_progress", monitor_config=CONFIG)
    capture_checkin(monitor_slug="sdk-job", check_in_id=check_in_id, status="ok", duration=2.5)
    sentry_sdk.flush(timeout=30)

    [(first, started), (_, finished)] = published_check_ins(kafka_bootstrap, topics, 2)
    assert first.project_id == 1 and first.sdk is not None and first.sdk.startswith("sentry.python")
    assert (started["status"], started["check_in_id"], started["monitor_config"]) == ("in_progress", check_in_id, CONFIG)
    assert (finished["status"], finished["check_in_id"], finished["duration"]) == ("ok", check_in_id, 2.5)


def test_the_monitor_decorator_reports_in_progress_then_ok_with_a_duration(
    sentry: None, kafka_bootstrap: str, topics: Topics
) -> None:
    @sentry_sdk.monitor(monitor_slug="decorated-job", monitor_config=CONFIG)
    def job() -> int:
        return 42

    assert job() == 42
    sentry_sdk.flush(timeout=30)

    [(_, started), (_, finished)] = published_check_ins(kafka_bootstrap, topics, 2)
    assert (started["status"], finished["status"]) == ("in_progress", "ok")
    assert started["check_in_id"] == finished["check_in_id"]
    assert isinstance(finished["duration"], float) and finished["duration"] >= 0
    assert started["monitor_config"] == CONFIG


def test_a_failing_monitored_job_reports_error(sentry: None, kafka_bootstrap: str, topics: Topics) -> None:
    @sentry_sdk.monitor(monitor_slug="failing-job")
    def job() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        job()
    sentry_sdk.flush(timeout=30)
    statuses = [payload["status"] for _, payload in published_check_ins(kafka_bootstrap, topics, 2)]
    assert statuses == ["in_progress", "error"]
