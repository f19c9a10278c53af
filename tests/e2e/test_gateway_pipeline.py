"""The gateway in the whole pipeline: real `cronpipe gateway`, `cronpipe worker` and
`cronpipe api` processes, real Kafka and PostgreSQL. What users of the Sentry SDK and of
curl one-liners rely on: paired OK check-ins with a duration, and job output retrievable."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
import sentry_sdk
from sentry_sdk.crons import capture_checkin

from schemas.enums import CheckInStatus
from tests.e2e.gateway_processes import PipelineStack, cronpipe
from tests.e2e.worker_processes import wait_for

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig

    from tests.conftest import Infra

CONFIG: MonitorConfig = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 5, "max_runtime": 30}


class Stack(PipelineStack):
    """The pipeline's processes and one organization's project (DSN) and read token,
    created with the `cronpipe` commands a user runs."""

    def __init__(self, kafka_bootstrap: str, database_url: str, log_dir: Path) -> None:
        super().__init__(kafka_bootstrap, database_url, log_dir)
        cronpipe(self.env, "org", "create", "acme")
        created = cronpipe(self.env, "project", "create", "--org", "acme", "--slug", "backend", "--id", "1")
        self.dsn: str = created["dsn"]
        self.key: str = created["public_key"]
        self.token: str = cronpipe(self.env, "token", "create", "--org", "acme")["token"]

    def cron_url(self, slug: str) -> str:
        return f"{self.gateway_url}/api/1/cron/{slug}/{self.key}/"


@pytest.fixture(scope="module")
def stack(infra: Infra, module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module: its tests read back only their own monitors (slugs)."""
    running = Stack(infra.kafka_bootstrap, module_database_url, tmp_path_factory.mktemp("pipeline"))
    with running.running():
        yield running


def stored_check_ins(database_url: str, slug: str) -> list[tuple[uuid.UUID, int, int | None]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT c.guid, c.status, c.duration_ms FROM checkins c JOIN monitors m ON m.id = c.monitor_id"
            " WHERE m.slug = %s ORDER BY c.id", (slug,)).fetchall()


def finished(database_url: str, slug: str) -> list[tuple[uuid.UUID, int, int | None]] | None:
    rows = stored_check_ins(database_url, slug)
    return rows if rows and all(status != CheckInStatus.IN_PROGRESS for _, status, _ in rows) else None


def test_sentry_sdk_and_curl_check_ins_are_stored_paired_with_a_duration(stack: Stack) -> None:
    sentry_sdk.init(dsn=stack.dsn, default_integrations=False)
    try:
        sdk_id = capture_checkin(monitor_slug="sdk-job", status="in_progress", monitor_config=CONFIG)
        time.sleep(1.1)  # a job that runs for a second, so the computed duration is visible
        capture_checkin(monitor_slug="sdk-job", check_in_id=sdk_id, status="ok")

        @sentry_sdk.monitor(monitor_slug="decorated-job", monitor_config=CONFIG)
        def job() -> None:
            time.sleep(0.2)

        job()
        sentry_sdk.flush(timeout=30)
    finally:
        sentry_sdk.get_client().close(timeout=30)
        sentry_sdk.init()

    # curl: in_progress (creating the monitor through a JSON body), then a GET ok without an id.
    started = httpx.post(stack.cron_url("curl-job"), json={"status": "in_progress", "monitor_config": CONFIG})
    assert started.status_code == 202
    time.sleep(1.1)
    assert httpx.get(stack.cron_url("curl-job"), params={"status": "ok"}).status_code == 202

    for slug in ("sdk-job", "decorated-job", "curl-job"):
        rows = wait_for(functools.partial(finished, stack.database_url, slug), f"{slug} to finish")
        assert isinstance(rows, list) and len(rows) == 1, rows
        [(_, status, duration_ms)] = rows
        assert status == CheckInStatus.OK and duration_ms is not None and duration_ms > 0, (slug, rows)
    assert stored_check_ins(stack.database_url, "sdk-job")[0][0] == uuid.UUID(sdk_id)
    assert stored_check_ins(stack.database_url, "curl-job")[0][0] == uuid.UUID(started.json()["id"])
    assert stored_check_ins(stack.database_url, "curl-job")[0][2] >= 1000  # type: ignore[operator]


def test_job_output_posted_with_curl_is_stored_and_served_by_the_read_api(stack: Stack) -> None:
    started = httpx.post(stack.cron_url("backup"), json={"status": "in_progress", "monitor_config": CONFIG})
    check_in_id = started.json()["id"]
    log = b"copying...\nerror: disk full\n"
    # curl --data-binary @job.log "$URL?status=error&check_in_id=$ID"
    response = httpx.post(stack.cron_url("backup"), params={"status": "error", "check_in_id": check_in_id},
                          content=log, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202 and response.json() == {"id": check_in_id}

    rows = wait_for(lambda: finished(stack.database_url, "backup"), "the backup check-in to finish")
    assert isinstance(rows, list)
    assert [(g.hex, s) for g, s, _ in rows] == [(check_in_id, CheckInStatus.ERROR)]
    url = f"{stack.api_url}/api/0/organizations/acme/monitors/backup/checkins/{check_in_id}/attachment/"

    def attachment() -> httpx.Response | None:
        response = httpx.get(url, headers={"Authorization": f"Bearer {stack.token}"})
        return response if response.status_code == 200 else None

    served = wait_for(attachment, "the attachment to be served")
    assert isinstance(served, httpx.Response)
    assert served.content == log and served.headers["content-type"].startswith("text/plain")
    assert "attachment" in served.headers["content-disposition"]
