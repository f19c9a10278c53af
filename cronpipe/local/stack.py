"""Bring the local services (Kafka, PostgreSQL) up or down, honouring CRONPIPE_* settings.

An explicitly configured service (``CRONPIPE_DATABASE_URL``, or a bootstrap address that
is not ours) is only checked, never started or stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from cronpipe.local import kafka, postgres
from cronpipe.local.procs import ServiceError, port_open
from schemas.settings import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    database_url: str
    kafka_started_here: bool
    postgres_started_here: bool


def _kafka_is_local(settings: Settings) -> bool:
    host = settings.kafka_bootstrap.rpartition(":")[0]
    return "," not in settings.kafka_bootstrap and host in LOCAL_HOSTS


def start_services(settings: Settings) -> Services:
    """Start what is missing locally; raise ServiceError with the fix when something is wrong."""
    if settings.database_url:
        postgres.check_url(settings.database_url)
        db_url, pg_here = settings.database_url, False
    else:
        db_url, pg_here = postgres.start(postgres.layout_for(settings.state_dir, settings.pg_port)), True
    layout = kafka.layout_for(settings.state_dir, settings.kafka_bootstrap)
    if _kafka_is_local(settings) and not kafka.is_running(layout):
        kafka.start(layout)
        k_here = True
    else:
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        if not port_open(host, int(port), timeout=3):
            raise ServiceError(f"cannot reach Kafka at {settings.kafka_bootstrap}; check CRONPIPE_KAFKA_BOOTSTRAP")
        k_here = _kafka_is_local(settings)
    return Services(settings.kafka_bootstrap, db_url, k_here, pg_here)


def stop_services(settings: Settings) -> list[str]:
    """Stop only the services this project started (by pid file / data folder)."""
    stopped = []
    if kafka.stop(kafka.layout_for(settings.state_dir, settings.kafka_bootstrap)):
        stopped.append("kafka")
    if not settings.database_url and postgres.stop(postgres.layout_for(settings.state_dir, settings.pg_port)):
        stopped.append("postgresql")
    return stopped
