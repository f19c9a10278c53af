"""The benchmark databases of `cronpipe bench clock` (both modes): one migrated database
per run, dropped with the run's topics afterwards."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import psycopg

from schemas.settings import Settings


def scalar(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of the one row a query returned."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row[0]


def create_database(settings: Settings) -> str:
    from schemas.migrate import apply_migrations

    admin_url = settings.effective_database_url()
    name = f"bench_clock_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    apply_migrations(url)
    return url


def drop(settings: Settings, url: str, topic_names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    # Keep the client referenced until the futures resolve: a temporary one is destroyed
    # first and every deletion fails with _DESTROY (the topics were silently left behind).
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for name, future in admin.delete_topics(topic_names, operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # KafkaException has no finer type; the rest still goes
            print(f"bench clock: topic {name} not deleted: {exc}", file=sys.stderr)
