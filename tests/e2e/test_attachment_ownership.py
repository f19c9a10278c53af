"""An attachment belongs to exactly one project's check-in (issue #10.2), end to end: real
`cronpipe gateway`, `cronpipe worker` and `cronpipe api` processes, two tenants (A and B,
each its own organization, project, DSN key and API token). Project B naming A's check-in
id in an upload must never replace, hide or read A's job output."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest

from cronpipe.admin import create_org, create_project, create_token
from cronpipe.probes import high_watermarks
from schemas.enums import ProcessingErrorType
from tests.e2e.gateway_processes import PipelineStack
from tests.e2e.worker_processes import wait_for

if TYPE_CHECKING:
    from tests.conftest import Infra

CONFIG = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


@dataclass(frozen=True)
class Tenant:
    org: str
    project_id: int
    slug: str  # the tenant's monitor
    key: str
    token: str


Tenants = tuple[Tenant, Tenant]


class Stack(PipelineStack):
    """The pipeline's processes, shared by the module's tests; each test makes its own two
    tenants (:meth:`tenants`), so no test sees another's check-ins, uploads or errors."""

    def __init__(self, kafka_bootstrap: str, database_url: str, log_dir: Path) -> None:
        super().__init__(kafka_bootstrap, database_url, log_dir)
        self._project_ids = itertools.count(1)

    def tenants(self) -> Tenants:
        """Two fresh tenants, A and B: each its own organization, project, key and token."""
        run = uuid.uuid4().hex[:6]
        return self._tenant(f"org-a-{run}", "job-a"), self._tenant(f"org-b-{run}", "job-b")

    def _tenant(self, org: str, slug: str) -> Tenant:
        project_id = next(self._project_ids)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            create_org(conn, org)
            key = create_project(conn, org, "backend", project_id).public_key
            token = create_token(conn, org)
        return Tenant(org, project_id, slug, key, token)

    def cron_url(self, tenant: Tenant) -> str:
        return f"{self.gateway_url}/api/{tenant.project_id}/cron/{tenant.slug}/{tenant.key}/"

    def start(self, tenant: Tenant, check_in_id: str) -> None:
        """An in_progress check-in with a chosen id (creates the tenant's monitor)."""
        response = httpx.post(self.cron_url(tenant), json={"status": "in_progress", "check_in_id": check_in_id,
                                                           "monitor_config": CONFIG})
        assert response.status_code == 202, response.text

    def finish_with_output(self, tenant: Tenant, check_in_id: str, output: bytes) -> None:
        """`curl --data-binary @job.log "$URL?status=error&check_in_id=$ID"`: check-in + attachment."""
        response = httpx.post(self.cron_url(tenant), params={"status": "error", "check_in_id": check_in_id},
                              content=output, headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 202, response.text

    def upload(self, tenant: Tenant, check_in_id: str, output: bytes) -> None:
        """The attachment endpoint alone, naming ``check_in_id``."""
        response = httpx.post(f"{self.cron_url(tenant)}checkins/{check_in_id}/attachment/",
                              files={"file": ("out.log", output, "text/plain")})
        assert response.status_code == 202, response.text

    def download(self, tenant: Tenant, check_in_id: str) -> httpx.Response:
        return httpx.get(f"{self.api_url}/api/0/organizations/{tenant.org}/monitors/{tenant.slug}/checkins/"
                         f"{check_in_id}/attachment/", headers={"Authorization": f"Bearer {tenant.token}"})

    def wait_processed(self) -> None:
        """Until the worker committed every message the gateway published."""
        def caught_up() -> bool:
            with psycopg.connect(self.database_url) as conn:
                stored = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()
            return stored is not None and int(stored[0]) >= self.published()
        wait_for(caught_up, "the worker to process every published message")

    def published(self) -> int:
        topic = f"{self.env['CRONPIPE_TOPIC_PREFIX']}ingest-monitors"
        return sum(high_watermarks(self.env["CRONPIPE_KAFKA_BOOTSTRAP"], topic).values())

    def errors(self, tenant: Tenant) -> list[tuple[int, str]]:
        with psycopg.connect(self.database_url) as conn:
            return [(t, r) for t, r in conn.execute(
                "SELECT type, reason FROM processing_errors WHERE project_id = %s ORDER BY id", (tenant.project_id,))]


@pytest.fixture(scope="module")
def stack(infra: Infra, module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(infra.kafka_bootstrap, module_database_url, tmp_path_factory.mktemp("ownership"))
    with running.running():
        yield running


@pytest.fixture
def tenants(stack: Stack) -> Tenants:
    return stack.tenants()


def test_another_project_uploading_for_a_check_in_id_never_replaces_its_owners_output(
        stack: Stack, tenants: Tenants) -> None:
    a, b = tenants
    check_in_id = uuid.uuid4().hex
    stack.start(a, check_in_id)
    stack.finish_with_output(a, check_in_id, b"A's job output\n")
    stack.wait_processed()
    stack.start(b, uuid.uuid4().hex)  # B has a monitor of its own
    stack.upload(b, check_in_id, b"B's forged output\n")
    stack.wait_processed()

    served = stack.download(a, check_in_id)
    assert served.status_code == 200 and served.content == b"A's job output\n"
    assert stack.download(b, check_in_id).status_code == 404
    assert [t for t, _ in stack.errors(b)] == [ProcessingErrorType.CHECKIN_GUID_PROJECT_MISMATCH]
    assert stack.errors(a) == []


def test_an_upload_made_first_by_another_project_does_not_hide_the_owners_output(
        stack: Stack, tenants: Tenants) -> None:
    a, b = tenants
    check_in_id = uuid.uuid4().hex
    stack.start(b, uuid.uuid4().hex)
    stack.upload(b, check_in_id, b"B got there first\n")
    stack.wait_processed()
    stack.start(a, check_in_id)
    stack.finish_with_output(a, check_in_id, b"A's job output\n")
    stack.wait_processed()

    served = stack.download(a, check_in_id)
    assert served.status_code == 200 and served.content == b"A's job output\n"
    assert stack.download(b, check_in_id).status_code == 404  # B has no check-in with that id


def test_a_project_never_reads_another_projects_output_through_a_check_in_id_both_used(
        stack: Stack, tenants: Tenants) -> None:
    a, b = tenants
    check_in_id = uuid.uuid4().hex
    stack.start(b, check_in_id)
    stack.upload(b, check_in_id, b"B's own output\n")
    stack.wait_processed()
    # A uses the same id: its check-in and its output are rejected, B's stay B's.
    stack.start(a, check_in_id)
    stack.finish_with_output(a, check_in_id, b"A's secret output\n")
    stack.wait_processed()

    served = stack.download(b, check_in_id)
    assert served.status_code == 200 and served.content == b"B's own output\n"
    assert stack.download(a, check_in_id).status_code == 404
    assert ProcessingErrorType.CHECKIN_GUID_PROJECT_MISMATCH in [t for t, _ in stack.errors(a)]
    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM checkin_attachments WHERE data = %s",
                            (b"A's secret output\n",)).fetchone() == (0,)
