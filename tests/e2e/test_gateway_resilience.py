"""The gateway's promise under stress: a 202 means the check-in is in Kafka — across a
SIGTERM in the middle of traffic and across a broker outage (on a throwaway broker of
its own, never the shared one)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx

from cronpipe.local import kafka
from schemas.topics import Topics
from tests.e2e.gateway_processes import Service, cronpipe, cronpipe_env, free_port, read_check_in_ids


class Traffic:
    """Threads sending check-ins with ids of their own, remembering every answer."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: list[tuple[str, int]] = []  # (check_in_id, status or -1 for no answer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._send_forever, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _send_forever(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                check_in_id = uuid.uuid4().hex
                try:
                    status = client.get(self.url, params={"status": "in_progress", "check_in_id": check_in_id}).status_code
                except httpx.HTTPError:
                    status = -1
                with self._changed:
                    self.answers.append((check_in_id, status))
                    self._changed.notify_all()

    def count(self, status: int) -> int:
        with self._lock:
            return sum(1 for _, s in self.answers if s == status)

    def wait_until(self, status: int, count: int, timeout_s: float = 120.0) -> None:
        """Block until ``count`` answers with ``status`` were seen (in total)."""
        with self._changed:
            if not self._changed.wait_for(lambda: sum(1 for _, s in self.answers if s == status) >= count, timeout_s):
                raise AssertionError(f"fewer than {count} answers {status} after {timeout_s}s: "
                                     f"{sorted({s for _, s in self.answers})}")

    def accepted(self) -> set[str]:
        with self._lock:
            return {check_in_id for check_in_id, status in self.answers if status == 202}


def start_gateway(bootstrap: str, database_url: str, log_dir: Path, *, workers: int = 1,
                  **extra: str) -> tuple[Service, str, Topics]:
    prefix = f"e2e{uuid.uuid4().hex[:8]}-"
    port = free_port()
    env = cronpipe_env(bootstrap, database_url, prefix, CRONPIPE_GATEWAY_PORT=str(port), **extra)
    cronpipe(env, "org", "create", "acme")
    key = cronpipe(env, "project", "create", "--org", "acme", "--slug", "backend", "--id", "1")["public_key"]
    service = Service.start("gateway", env, ["gateway", "--workers", str(workers)], log_dir)
    service.wait_http(f"http://127.0.0.1:{port}/healthz")
    return service, f"http://127.0.0.1:{port}/api/1/cron/job/{key}/", Topics(prefix=prefix)


def test_sigterm_in_the_middle_of_traffic_exits_0_and_every_202_is_in_kafka(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    gateway, url, topics = start_gateway(kafka_bootstrap, database_url, tmp_path, workers=2)
    with Traffic(url) as traffic:
        traffic.wait_until(202, 200)
        assert gateway.terminate() == 0, gateway.tail()
    accepted = traffic.accepted()
    assert read_check_in_ids(kafka_bootstrap, topics.ingest, accepted) >= accepted


def test_a_broker_outage_gives_503s_and_an_unready_gateway_then_recovers_without_losing_any_202(
    own_broker: kafka.KafkaLayout, database_url: str, tmp_path: Path
) -> None:
    gateway, url, topics = start_gateway(own_broker.bootstrap, database_url, tmp_path,
                                         CRONPIPE_GATEWAY_DELIVERY_TIMEOUT="3")
    base = url.split("/api/")[0] + "/"
    try:
        with Traffic(url) as traffic:
            traffic.wait_until(202, 50)
            ready_before = httpx.get(base + "readyz", timeout=30)
            assert kafka.stop(own_broker)
            traffic.wait_until(503, traffic.count(503) + 8)
            ready_during, live_during = httpx.get(base + "readyz", timeout=30), httpx.get(base + "healthz", timeout=30)
            before_restart = traffic.count(202)
            kafka.start(own_broker)
            traffic.wait_until(202, before_restart + 50, timeout_s=180)
            ready_after = httpx.get(base + "readyz", timeout=30)
    finally:
        code = gateway.terminate()
    assert code == 0, gateway.tail()
    assert [r.status_code for r in (ready_before, ready_during, ready_after)] == [200, 503, 200]
    assert ready_during.json()["kafka"] == "unreachable"
    assert live_during.status_code == 200
    statuses = {status for _, status in traffic.answers}
    assert statuses <= {202, 503}, statuses
    accepted = traffic.accepted()
    assert read_check_in_ids(own_broker.bootstrap, topics.ingest, accepted, timeout_s=120) >= accepted
