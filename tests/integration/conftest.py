"""Fixtures shared by integration tests: a real gateway on real Kafka + PostgreSQL, and the
read API in-process on this test's database."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from schemas.topics import Topics
from tests.integration.clock_helpers import PipelineRig, seed_project
from tests.integration.gateway_harness import Gateway, Project, gateway_config, make_project, run_gateway


@pytest.fixture
def project(database_url: str) -> Project:
    """Project 1 with an active DSN key, in this test's database."""
    return make_project(database_url, project_id=1)


@pytest.fixture
def gateway(kafka_bootstrap: str, topics: Topics, project: Project) -> Iterator[Gateway]:
    with run_gateway(gateway_config(kafka_bootstrap, topics.ingest, project.database_url)) as running:
        yield running


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """The read API app on this test's database, driven in-process."""
    with TestClient(create_app(database_url, pool_size=2)) as c:
        yield c


@pytest.fixture
def rig(kafka_bootstrap: str, topics: Topics, database_url: str) -> Iterator[PipelineRig]:
    """The clock's agents on this test's topics and database, with project 1 seeded; it
    can also produce check-ins for the processor (test_notifier.py has a rig of its own)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
    rig = PipelineRig(kafka_bootstrap, topics, database_url)
    yield rig
    rig.close()
