"""Real ``cronpipe`` processes for the gateway's end-to-end tests, each stopped by its own pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

from cronpipe.probes import NoAnswer, wait_for_http
from cronpipe.probes import free_port as free_port  # the e2e tests import it from here
from schemas.messages import CheckInAttachmentMessage, CheckInMessage, ClockPulse, decode_ingest_message

CRONPIPE = [sys.executable, "-m", "cronpipe.cli"]


def free_port_pair() -> int:
    """A port p with p + 1 free too (a Kafka listener and its controller)."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


def cronpipe_env(bootstrap: str, database_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": bootstrap, "CRONPIPE_DATABASE_URL": database_url,
            "CRONPIPE_TOPIC_PREFIX": prefix, "CRONPIPE_BIND": "127.0.0.1", **extra}


def cronpipe(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run one creating command and return the JSON object it prints."""
    done = subprocess.run([*CRONPIPE, *args], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@dataclass
class Service:
    """A long-running ``cronpipe`` command; its output goes to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, env: dict[str, str], args: list[str], log_dir: Path) -> Service:
        log = log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([*CRONPIPE, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        return cls(name, process, log)

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        try:
            wait_for_http(url, timeout_s=timeout_s, process=self.process, name=self.name)
        except NoAnswer as exc:
            raise RuntimeError(f"{exc}: {self.tail()}") from None

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; SIGKILL only if it does not stop (then the test fails on the code)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class PipelineStack:
    """`cronpipe gateway`, `cronpipe worker --agents checkins` and `cronpipe api` on one
    database and a topic prefix of their own, each stopped by its own pid."""

    def __init__(self, kafka_bootstrap: str, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        gateway_port, api_port = free_port(), free_port()
        self.env = cronpipe_env(kafka_bootstrap, database_url, f"e2e{uuid.uuid4().hex[:8]}-",
                                CRONPIPE_GATEWAY_PORT=str(gateway_port), CRONPIPE_API_PORT=str(api_port))
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.services: list[Service] = []

    @contextmanager
    def running(self) -> Iterator[None]:
        """The three processes, answering HTTP; on exit each is stopped with SIGTERM and
        must exit 0."""
        try:
            self.services = [Service.start("gateway", self.env, ["gateway"], self.log_dir),
                             Service.start("worker", self.env, ["worker", "--agents", "checkins"], self.log_dir),
                             Service.start("api", self.env, ["api"], self.log_dir)]
            self.services[0].wait_http(f"{self.gateway_url}/healthz")
            self.services[2].wait_http(f"{self.api_url}/")
            yield
        finally:
            codes = [service.terminate() for service in self.services]
        assert codes == [0, 0, 0], "\n".join(s.tail() for s in self.services)


def read_check_in_ids(bootstrap: str, topic: str, expected: set[str], timeout_s: float = 60.0) -> set[str]:
    """check_in_ids of the ``check_in`` messages in ``topic``; stops once all ``expected`` are seen."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not expected <= seen:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            message: CheckInMessage | ClockPulse | CheckInAttachmentMessage = decode_ingest_message(msg.value() or b"")
            if isinstance(message, CheckInMessage):
                seen.add(orjson.loads(message.payload)["check_in_id"])
    finally:
        consumer.close()
    return seen
