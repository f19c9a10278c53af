"""docker-compose.yml cannot run here (no Docker engine); check it stays in step with `cronpipe up`."""

from __future__ import annotations

from pathlib import Path

import yaml

from cronpipe.local.kafka import KAFKA_VERSION
from cronpipe.up import PROCESSES
from schemas.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _services() -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_compose_runs_every_process_that_cronpipe_up_runs() -> None:
    services = _services()
    for name, argv in PROCESSES.items():
        assert services[name]["command"] == ["cronpipe", *argv]


def test_compose_has_the_real_kafka_and_postgres_images() -> None:
    services = _services()
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["postgres"]["image"].startswith("postgres:")


def test_compose_publishes_the_default_ports() -> None:
    defaults = Settings()
    services = _services()
    assert services["gateway"]["ports"] == [f"{defaults.gateway_port}:{defaults.gateway_port}"]
    assert services["api"]["ports"] == [f"{defaults.api_port}:{defaults.api_port}"]


def test_compose_points_cronpipe_at_its_kafka_and_postgres() -> None:
    env = _services()["worker"]["environment"]
    assert env["CRONPIPE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["CRONPIPE_DATABASE_URL"].endswith("@postgres:5432/cronpipe")
