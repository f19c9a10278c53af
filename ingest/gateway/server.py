"""``cronpipe gateway``: uvicorn (httptools + uvloop) running the raw ASGI app in N processes.

SIGTERM: uvicorn stops accepting, lets in-flight requests finish (each still waits for its
Kafka acknowledgement), then the app's lifespan shutdown flushes the producer; the
process exits 0. With ``workers > 1`` the parent forwards SIGTERM to every worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading

import uvicorn
from uvicorn.supervisors import Multiprocess

from ingest.gateway.config import GatewayConfig
from schemas.http_limits import HttpLimits, LimitedConfig
from schemas.settings import Settings
from schemas.topics import TopicError, Topics, ensure_topics

log = logging.getLogger("cronpipe.gateway")


def uvicorn_config(settings: Settings, workers: int, port: int | None = None) -> uvicorn.Config:
    """The server settings every gateway process uses (also the benchmark's baseline):
    httptools with the bounds of ``CRONPIPE_HTTP_*`` (schemas/http_limits.py)."""
    # The benchmark's baseline runs the same server around a do-nothing app (baseline.py).
    app = "ingest.gateway.baseline:create_baseline_app" if settings.gateway_noop else "ingest.gateway.app:create_app"
    return LimitedConfig(
        app, factory=True, limits=HttpLimits.from_settings(settings),
        host=settings.bind, port=settings.gateway_port if port is None else port, workers=workers,
        loop="uvloop", lifespan="on",
        access_log=False, log_level="info", server_header=False, date_header=False,
        proxy_headers=False,  # nothing reads the client address; skip the middleware
        backlog=4096, timeout_graceful_shutdown=30,
    )


def serve(settings: Settings, workers: int) -> int:
    """Run until SIGTERM/SIGINT; return 0 after a clean shutdown, 1 when startup failed."""
    GatewayConfig.from_settings(settings)  # fail now, with the variable's name, not in a worker
    _ensure_topics(settings)
    config = uvicorn_config(settings, workers)
    absorb_drained_signals()
    metrics_dir = _multiprocess_metrics_dir() if workers > 1 else None
    try:
        if workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
            return 0
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def absorb_drained_signals() -> None:
    """Make a drained shutdown exit 0.

    uvicorn handles SIGTERM/SIGINT itself (stop accepting, drain, lifespan shutdown) and
    afterwards re-raises the signal under the handlers it found; with the default ones
    the process would die by the signal after a perfectly clean shutdown. Must run
    before ``Server.run`` installs uvicorn's handlers. (Worker processes of ``--workers N``
    may still end by the re-raised signal after their drain; the parent exits 0.)
    """
    if threading.current_thread() is threading.main_thread():
        for handled in (signal.SIGTERM, signal.SIGINT):
            signal.signal(handled, _drained)


def _drained(signum: int, frame: object) -> None:
    """The signal was already handled by uvicorn's graceful shutdown."""


def _ensure_topics(settings: Settings) -> None:
    # A gateway started while Kafka is down still serves: it answers 503 until Kafka is back.
    try:
        ensure_topics(settings.kafka_bootstrap, Topics(prefix=settings.topic_prefix).specs(), timeout_s=10.0)
    except TopicError as exc:
        log.warning("%s; check-ins get 503 until Kafka answers", exc)


def _multiprocess_metrics_dir() -> str | None:
    """Give the workers a shared folder for Prometheus counters (set before they start).

    PROMETHEUS_MULTIPROC_DIR is prometheus_client's own variable, not a cronpipe setting: the
    library reads it in every worker process, so it is handed on through the environment.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None  # the operator chose one; leave it alone
    path = tempfile.mkdtemp(prefix="cronpipe-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path
