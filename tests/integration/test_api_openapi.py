"""The OpenAPI document validates, and schemathesis finds no 5xx in the app run in-process."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from cronpipe.admin import create_token
from tests.integration.api_world import World, seed_world

pytestmark = pytest.mark.postgres


@pytest.fixture
def seeded(database_url: str) -> World:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return seed_world(conn)



def test_the_openapi_document_is_valid_openapi_with_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    validate(document)
    paths = document["paths"]
    assert "/api/0/organizations/{organization_id_or_slug}/monitors/{monitor_id_or_slug}/stats/" in paths
    assert "/api/0/organizations/{organization_id_or_slug}/monitors-timeline/" in paths
    assert "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/monitors/{monitor_id_or_slug}" \
           "/environments/{environment}/" in paths
    assert "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/monitors/" in paths
    assert set(paths["/api/0/organizations/{organization_id_or_slug}/monitors/{monitor_id_or_slug}/"]) == {
        "get", "put", "delete"}
    assert set(paths["/api/0/organizations/{organization_id_or_slug}/monitors/"]) == {"get", "post", "put"}
    assert set(paths["/api/0/organizations/{organization_id_or_slug}/alert-channels/{channel_id}/"]) == {
        "get", "delete"}
    assert len(paths) == 24
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


#: Every response is checked against the document; requests are not required to succeed
#: (generated strings are often bad parameters, which are 400s by design).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEEDED_PATH = {"organization_id_or_slug": "acme", "project_id_or_slug": "backend", "monitor_id_or_slug": "nightly"}


def check_no_5xx(case: schemathesis.Case[Any], token: str, seeded_path: bool) -> None:
    if seeded_path:  # reach past the 404s into query parsing and SQL
        case.path_parameters = {**(case.path_parameters or {}),
                                **{k: v for k, v in SEEDED_PATH.items() if k in (case.path_parameters or {})}}
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, (case.path, case.path_parameters, case.query, response.text)
    case.validate_response(response, checks=CHECKS)


def test_no_generated_request_gets_a_5xx(database_url: str, seeded: World) -> None:
    """Read and write routes, with a write token (it may also read)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = create_token(conn, "acme", "write")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(database_url, pool_size=2))
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) == 37
    for operation in operations:
        @given(case=operation.as_strategy(), seeded_path=st.booleans())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case[Any], seeded_path: bool) -> None:
            check_no_5xx(case, token, seeded_path)

        check()
