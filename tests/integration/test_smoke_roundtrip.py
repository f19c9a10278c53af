"""The foundation round trip: confluent-kafka producer → real topic → faust agent → PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import faust
import psycopg
from confluent_kafka import Producer

from schemas.topics import Topics


async def _run_agent_until(app: faust.App, done: asyncio.Event, timeout_s: float) -> None:
    await app.start()
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        await app.stop()


def test_a_message_produced_to_kafka_is_written_to_postgres_by_a_faust_agent(
    kafka_bootstrap: str, topics: Topics, database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE smoke (k text PRIMARY KEY, v bytea NOT NULL)")
    key = uuid.uuid4().hex
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.dlq, key=key, value=b"hello")
    assert producer.flush(15) == 0

    app = faust.App(f"smoke-{key}", broker=f"kafka://{kafka_bootstrap}", store="memory://",
                    web_enabled=False, datadir=str(tmp_path), topic_disable_leader=True,
                    consumer_auto_offset_reset="earliest")
    topic = app.topic(topics.dlq, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    done = asyncio.Event()

    @app.agent(topic, concurrency=1)
    async def write(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("INSERT INTO smoke (k, v) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (event.key.decode(), event.value))
            done.set()

    asyncio.run(_run_agent_until(app, done, 60))

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT k, v FROM smoke").fetchall()
    assert rows == [(key, b"hello")]
