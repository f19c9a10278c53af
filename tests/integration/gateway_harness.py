"""Test harness for the HTTP gateway: the real ASGI app on uvicorn (httptools, uvloop) in a
thread, a real project in a real database, real Kafka topics; helpers to read back what
was published."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import psycopg
import uvicorn
from confluent_kafka import Consumer

from cronpipe.admin import create_org, create_project
from cronpipe.probes import free_port
from ingest.gateway.app import GatewayApp
from ingest.gateway.config import GatewayConfig
from schemas.messages import CheckInAttachmentMessage, CheckInMessage, ClockPulse, decode_ingest_message


@dataclass(frozen=True)
class Published:
    key: bytes
    partition: int
    message: CheckInMessage | ClockPulse | CheckInAttachmentMessage


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0,
               settle_s: float = 0.0) -> list[Published]:
    """Messages of ``topic`` from the start, decoded: stop at ``expected`` (then read for
    ``settle_s`` more, to catch extras) or at the timeout."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[Published] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                found.append(Published(msg.key() or b"", msg.partition() or 0, decode_ingest_message(msg.value() or b"")))
            if len(found) >= expected:
                deadline = min(deadline, time.monotonic() + settle_s) if settle_s else time.monotonic()
    finally:
        consumer.close()
    return found


@dataclass(frozen=True)
class Project:
    id: int
    public_key: str
    database_url: str


def make_project(database_url: str, slug: str = "backend", project_id: int | None = None,
                 org: str = "acme") -> Project:
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM organizations WHERE slug = %s", (org,)).fetchone() is None:
            create_org(conn, org)
        created = create_project(conn, org, slug, project_id)
    return Project(created.id, created.public_key, database_url)


@dataclass
class Gateway:
    """A running gateway: ``url`` and an httpx client bound to it."""

    url: str
    app: GatewayApp
    client: httpx.Client

    def cron(self, project: Project, slug: str, *, key: str | None = None, method: str = "GET",
             **kwargs: Any) -> httpx.Response:
        path = f"/api/{project.id}/cron/{slug}/{key or project.public_key}/"
        return self.client.request(method, path, **kwargs)


def gateway_config(bootstrap: str, topic: str, database_url: str, **changes: Any) -> GatewayConfig:
    config = GatewayConfig(kafka_bootstrap=bootstrap, topic=topic, database_url=database_url,
                           key_cache_ttl=0.5, delivery_timeout=10.0,
                           producer_config={"message.timeout.ms": 10_000})
    return replace(config, **changes)


@contextlib.contextmanager
def run_gateway(config: GatewayConfig) -> Iterator[Gateway]:
    """Serve ``config`` on a free port until the block ends (then shut down as on SIGTERM)."""
    app = GatewayApp(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                                           lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield Gateway(url, app, client)
    finally:
        server.should_exit = True
        thread.join(60)
