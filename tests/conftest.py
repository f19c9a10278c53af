"""Shared fixtures: real Kafka and real PostgreSQL for every test that touches them.

Where the services come from, in order:
1. ``CRONPIPE_KAFKA_BOOTSTRAP`` / ``CRONPIPE_DATABASE_URL`` when set;
2. testcontainers (``KafkaContainer().with_kraft()``, ``PostgresContainer``) when a Docker engine answers;
3. otherwise the project's own local services (``cronpipe.local``), started if needed.

Isolation: each test gets its own database cloned from a migrated template, and its own
topic names (a unique prefix), so tests run in any order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import psycopg
import pytest

from schemas.migrate import apply_migrations
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# One template per test session: concurrent sessions (several developers, one machine) never collide.
TEMPLATE_DB = f"cronpipe_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    admin_database_url: str  # a database we may CREATE DATABASE from


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    bootstrap = os.environ.get("CRONPIPE_KAFKA_BOOTSTRAP")
    db_url = os.environ.get("CRONPIPE_DATABASE_URL")
    containers: list[DockerContainer] = []
    if not (bootstrap and db_url) and _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        if not bootstrap:
            kc = KafkaContainer("apache/kafka:4.1.1").with_kraft()
            kc.start()
            containers.append(kc)
            bootstrap = kc.get_bootstrap_server()
        if not db_url:
            pc = PostgresContainer("postgres:15", driver=None)
            pc.start()
            containers.append(pc)
            db_url = pc.get_connection_url()
    if not (bootstrap and db_url):
        from cronpipe.local.stack import start_services

        settings = Settings()
        services = start_services(settings)
        bootstrap = bootstrap or services.kafka_bootstrap
        db_url = db_url or services.database_url
    yield Infra(kafka_bootstrap=bootstrap, admin_database_url=db_url)
    for c in containers:
        c.stop()


@pytest.fixture(scope="session")
def template_database(infra: Infra) -> Iterator[str]:
    """A migrated database that every test database is cloned from."""
    with psycopg.connect(infra.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    url = _with_dbname(infra.admin_database_url, TEMPLATE_DB)
    apply_migrations(url)
    yield url
    with psycopg.connect(infra.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


@pytest.fixture
def make_database(infra: Infra, template_database: str) -> Iterator[Callable[[], str]]:
    """Factory: a fresh migrated database per call, dropped after the test."""
    created: list[str] = []

    def make() -> str:
        created.append(_clone_template(infra))
        return _with_dbname(infra.admin_database_url, created[-1])

    yield make
    _drop_databases(infra, created)


@pytest.fixture(scope="module")
def module_database_url(infra: Infra, template_database: str) -> Iterator[str]:
    """One migrated database for a whole module: for end-to-end modules that share one
    stack of processes (each test then keeps to its own organizations, projects or slugs)."""
    name = _clone_template(infra)
    yield _with_dbname(infra.admin_database_url, name)
    _drop_databases(infra, [name])


def _clone_template(infra: Infra) -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(infra.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return name


def _drop_databases(infra: Infra, names: list[str]) -> None:
    with psycopg.connect(infra.admin_database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Callable[..., Topics]:
    """Factory: the contract's topics under a unique prefix, CreateTime so tests drive time."""

    def make(ingest_partitions: int = 8, timestamp_type: str = "CreateTime") -> Topics:
        topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}-", timestamp_type=timestamp_type,
                        ingest_partitions=ingest_partitions)
        # Tests drive time with old CreateTime stamps; infinite retention keeps the broker
        # from deleting those "7-day-old" messages in the middle of a test.
        specs = [replace(spec, config={**spec.config, "retention.ms": "-1"}) for spec in topics.specs()]
        ensure_topics(kafka_bootstrap, specs)
        return topics

    return make


@pytest.fixture
def topics(make_topics: Callable[..., Topics]) -> Topics:
    return make_topics()
