"""Test harness for the check-in processor: real Kafka topics, a real database, the real
faust agent running in-process. Messages are produced with chosen timestamps (the test
topics use CreateTime) to one ingest partition so offsets count messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import msgpack
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.checkins.batch_state import ProcessorConfig
from consumers.context import WorkerContext, build_context, close_context
from consumers.worker import running_app
from cronpipe.admin import create_org, create_project
from schemas.messages import encode_attachment, encode_check_in
from schemas.settings import Settings
from schemas.topics import Topics

UTC = timezone.utc
#: Message time of the first check-in of every scenario (Sentry's example start_time).
T0 = datetime(2024, 4, 24, 15, 47, 52, tzinfo=UTC)


class Pipeline:
    def __init__(self, bootstrap: str, topics: Topics, database_url: str,
                 processor: ProcessorConfig | None = None) -> None:
        self.database_url = database_url
        self.topics = topics
        settings = Settings(kafka_bootstrap=bootstrap, database_url=database_url, topic_prefix=topics.prefix)
        self.ctx: WorkerContext = build_context(settings, topics, consumer_group=f"{topics.prefix}cronpipe",
                                                processor=processor)
        self.ctx.batch_within_s = 0.05
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1})
        self.produced = 0
        with psycopg.connect(database_url, autocommit=True) as conn:
            create_org(conn, "acme")
            create_project(conn, "acme", "backend", project_id=1)

    def close(self) -> None:
        self.producer.flush(10)
        close_context(self.ctx)

    # -- producing

    def raw(self, value: bytes, *, key: bytes | None = None, at: datetime = T0) -> None:
        self.producer.produce(self.topics.ingest, value=value, key=key, partition=0,
                              timestamp=int(at.timestamp() * 1000))
        self.produced += 1

    def check_in(self, slug: str, status: str = "ok", *, at: datetime = T0, project_id: int = 1,
                 check_in_id: uuid.UUID | str | None = None, **fields: Any) -> str:
        """Produce one check-in; returns its check_in_id (hex)."""
        guid = uuid.UUID(str(check_in_id)) if check_in_id is not None else uuid.uuid4()
        payload = {"check_in_id": guid.hex, "monitor_slug": slug, "status": status, **fields}
        self.raw(encode_check_in(payload, project_id=project_id, start_time=at.timestamp()),
                 key=f"{project_id}:{slug}".encode(), at=at)
        return guid.hex

    def message(self, fields: dict[str, Any], *, at: datetime = T0) -> None:
        self.raw(msgpack.packb(fields, use_bin_type=True), at=at)

    def attachment(self, slug: str, check_in_id: str, data: bytes, *, at: datetime = T0) -> None:
        self.raw(encode_attachment(project_id=1, monitor_slug=slug, check_in_id=check_in_id, filename="out.log",
                                   content_type="text/plain", data=data, start_time=at.timestamp()),
                 key=f"1:{slug}".encode(), at=at)

    # -- running

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            async with running_app(self.ctx, ["checkins"]):
                await scenario()
        asyncio.run(main())

    async def drain(self, timeout_s: float = 90.0) -> None:
        """Wait until every produced message is committed (stored offset = produced count)."""
        assert self.producer.flush(15) == 0
        deadline = time.monotonic() + timeout_s
        while self.stored_offset() < self.produced:
            if time.monotonic() > deadline:
                raise AssertionError(f"processor stored offset {self.stored_offset()}, produced {self.produced}")
            await asyncio.sleep(0.1)

    def stored_offset(self) -> int:
        row = self.one("SELECT next_offset FROM consumer_offsets WHERE topic = %s AND partition = 0",
                       (self.topics.ingest,))
        return 0 if row is None else int(row[0])

    # -- reading

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Any = None) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(sql, params)

    def errors(self) -> list[tuple[int, str]]:
        return [(t, r) for t, r in self.rows("SELECT type, reason FROM processing_errors ORDER BY id")]

    def checkins(self, slug: str) -> list[tuple[Any, ...]]:
        """(guid hex, environment, status, duration_ms) per check-in of ``slug``, oldest first."""
        return [(g.hex, e, s, d) for g, e, s, d in self.rows(
            "SELECT c.guid, me.environment, c.status, c.duration_ms FROM checkins c"
            " JOIN monitors m ON m.id = c.monitor_id JOIN monitor_environments me ON me.id = c.monitor_environment_id"
            " WHERE m.slug = %s ORDER BY c.date_added, c.id", (slug,))]

    def rollup_totals(self, resolution: int) -> tuple[int, ...]:
        row = self.one("SELECT coalesce(sum(ok),0), coalesce(sum(error),0), coalesce(sum(timeout),0),"
                       " coalesce(sum(duration_count),0), coalesce(sum(duration_sum_ms),0)"
                       " FROM checkin_rollups WHERE resolution = %s", (resolution,))
        assert row is not None
        return tuple(int(v) for v in row)


CRONTAB = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


def read_topic(bootstrap: str, topic: str, count: int) -> list[object]:
    """The first ``count`` messages of partition 0 of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages: list[object] = []
    try:
        for _ in range(200):
            if len(messages) >= count:
                break
            messages += [m for m in consumer.consume(count - len(messages), timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return messages
