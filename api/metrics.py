"""Prometheus metrics of the read API, declared once here, and the ASGI middleware that records them.

Each uvicorn worker process keeps its own registry; ``/metrics`` shows the worker that
answered (run one worker, or scrape with that in mind).
"""

from __future__ import annotations

import time

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()

REQUESTS = Counter("cronpipe_api_requests_total", "Read API requests by route template and status",
                   ["route", "status"], registry=REGISTRY)
LATENCY = Histogram("cronpipe_api_request_seconds", "Read API request latency by route template", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0), registry=REGISTRY)

VOLUME_DECISION = Gauge("cronpipe_volume_decision", "volume-anomaly guard: 1 for the newest tick's decision",
                        ["decision"], registry=REGISTRY)
VOLUME_PCT_DEVIATION = Gauge("cronpipe_volume_pct_deviation",
                             "volume-anomaly guard: the newest evaluated minute against its baseline, percent "
                             "(NaN with too little history)", registry=REGISTRY)
DECISIONS = ("normal", "abnormal", "incident", "recovering")


class MetricsMiddleware:
    """Counts requests by route *template* (never the raw path, which would explode labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope)
            REQUESTS.labels(route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route with its parameters named (``/monitors/{monitor_id_or_slug}/``), never raw ids."""
    if scope.get("route") is None:
        return "unmatched"
    names = {str(value): f"{{{name}}}" for name, value in scope.get("path_params", {}).items()}
    return "/".join(names.get(segment, segment) for segment in scope["path"].split("/"))


async def metrics_endpoint(request: Request) -> Response:
    from api.system_incidents import latest_decision

    # Read at scrape time: the clock runs in the worker, the newest decision is in PostgreSQL.
    # The request metrics must still be served while PostgreSQL is down: the guard's
    # gauges then keep their last values.
    try:
        async with request.app.state.pool.connection(timeout=2.0) as conn:
            latest = await latest_decision(conn)
    except (psycopg.Error, PoolTimeout):
        pass
    else:
        decision, pct = latest or ("normal", None)
        for value in DECISIONS:
            VOLUME_DECISION.labels(value).set(1 if value == decision else 0)
        VOLUME_PCT_DEVIATION.set(float("nan") if pct is None else pct)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
