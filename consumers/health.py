"""The worker's own liveness and readiness, for operators to alert on (issue #10.1).

The gateway's ``/healthz`` says nothing about the pipeline behind it, so ``cronpipe worker``
answers for itself on ``CRONPIPE_WORKER_HEALTH_PORT`` (0 = off):

* ``GET /livez``  — 200 while every agent runs and no stop began; 503 when the worker is
  stopping or an agent stopped it (the DLQ limit, a bug): restart or page.
* ``GET /readyz`` — 200 when live and batches commit; 503 while the check-in batch in
  flight is being retried (PostgreSQL or the DLQ producer unavailable).
* ``GET /healthz`` — everything as JSON (status code as ``/readyz``): agents, the last
  committed batch (wall time and age), the retry in progress, the DLQ-limit state.
* ``GET /metrics`` — this process's Prometheus metrics.

:class:`WorkerHealth` is the state; agents update it, :func:`serve` exposes it. Times are
arguments where it matters (``snapshot(now)``), so tests need no clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("cronpipe.health")


@dataclass
class WorkerHealth:
    """What the worker's agents report about themselves; thread-safe."""

    dlq_limit: int = 1000
    dlq_window_s: float = 60.0
    dlq_project_budget: int = 100
    agents: dict[str, str] = field(default_factory=dict)
    last_commit_at: float | None = None  # wall seconds
    retrying: str | None = None
    retrying_since: float | None = None
    stopping: str | None = None
    fatal: str | None = None
    dlq_exceeded: bool = False
    _dead: deque[tuple[float, int | None, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_agent(self, name: str, state: str) -> None:
        with self._lock:
            self.agents[name] = state

    def committed(self, dead_letters: dict[int | None, int], now: float) -> None:
        with self._lock:
            self.last_commit_at = now
            self.retrying = self.retrying_since = None
            self._dead.extend((now, project, n) for project, n in dead_letters.items())

    def recovered(self) -> None:
        """The batch that was being retried went through (it may have committed nothing)."""
        with self._lock:
            self.retrying = self.retrying_since = None

    def retry(self, reason: str, now: float) -> None:
        with self._lock:
            if self.retrying_since is None:
                self.retrying_since = now
            self.retrying = reason

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stopping = self.stopping or reason

    def fail(self, reason: str, *, dlq_exceeded: bool = False) -> None:
        with self._lock:
            self.fatal = self.fatal or reason
            self.dlq_exceeded = self.dlq_exceeded or dlq_exceeded

    def live(self) -> bool:
        with self._lock:
            return self.stopping is None and self.fatal is None and all(s == "running" for s in self.agents.values())

    def ready(self) -> bool:
        return self.live() and self.retrying is None

    def snapshot(self, now: float) -> dict[str, Any]:
        live, ready = self.live(), self.ready()
        with self._lock:
            while self._dead and self._dead[0][0] <= now - self.dlq_window_s:
                self._dead.popleft()
            per_project: dict[int | None, int] = {}
            for _, project, n in self._dead:
                per_project[project] = per_project.get(project, 0) + n
            counted = sum(min(n, self.dlq_project_budget) for n in per_project.values())
            return {
                "status": "ready" if ready else "live" if live else "down",
                "live": live, "ready": ready, "agents": dict(self.agents),
                "last_commit": _iso(self.last_commit_at),
                "last_commit_age_s": None if self.last_commit_at is None else round(now - self.last_commit_at, 3),
                "retrying": self.retrying,
                "retrying_for_s": None if self.retrying_since is None else round(now - self.retrying_since, 3),
                "stopping": self.stopping, "fatal": self.fatal,
                "dlq": {"dead_letters": sum(per_project.values()), "counted": counted, "limit": self.dlq_limit,
                        "window_s": self.dlq_window_s, "project_budget": self.dlq_project_budget,
                        "projects_over_budget": sorted(str(p) for p, n in per_project.items()
                                                       if n > self.dlq_project_budget),
                        "exceeded": self.dlq_exceeded},
            }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _handler(health: WorkerHealth, clock: Callable[[], float]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/metrics":
                return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            snapshot = health.snapshot(clock())
            if path == "/livez":
                return self._json(200 if snapshot["live"] else 503, {"live": snapshot["live"]})
            if path == "/readyz":
                return self._json(200 if snapshot["ready"] else 503, {"ready": snapshot["ready"]})
            if path == "/healthz":
                return self._json(200 if snapshot["ready"] else 503, snapshot)
            return self._json(404, {"detail": "not found: /livez, /readyz, /healthz, /metrics"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, orjson.dumps(body), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds must not fill the worker's log

    return Handler


@contextmanager
def serve(health: WorkerHealth, bind: str, port: int,
          clock: Callable[[], float] = time.time) -> Iterator[ThreadingHTTPServer | None]:
    """Serve ``health`` on ``bind:port`` in a daemon thread until the block ends; port 0 = off."""
    if port <= 0:
        yield None
        return
    server = ThreadingHTTPServer((bind, port), _handler(health, clock))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="worker-health", daemon=True)
    thread.start()
    log.info("worker health on http://%s:%d/healthz (/livez, /readyz, /metrics)", bind, port)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
