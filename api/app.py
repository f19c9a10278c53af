"""The read API application: routes, error shapes, metrics, and a PostgreSQL pool per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from psycopg_pool import AsyncConnectionPool
from starlette.types import Receive, Scope, Send

from api.auth import Authenticator
from api.channel_routes import channel_routes
from api.deletions import purge_forever
from api.errors import install_error_handlers
from api.metrics import MetricsMiddleware, metrics_endpoint
from api.resolve import organization_monitor, organization_monitor_path, project_monitor, project_monitor_path
from api.responses import JsonResponse
from api.routes import ORG_PREFIX, PROJECT_PREFIX, monitor_routes, organization_routes, project_routes
from api.stats_cache import StatsCache
from api.system_incidents import system_incident_routes
from api.timeline_routes import timeline_routes
from api.ui import ui_routes
from api.ui.headers import InertResponses
from api.write_routes import monitor_write_routes, organization_write_routes, project_write_routes
from schemas.settings import load

DESCRIPTION = ("Monitor API with Sentry's paths and field names. Bearer token of one organization;"
               " write routes need a write token.")
WRITE_POOL_SIZE = 2
WRITE_LOCK_TIMEOUT = "5s"
# Plans chosen per execution: the optional-filter idiom (`x IS NULL OR col = x`) makes a
# generic plan a poor fit for most parameter combinations.
CONNECTION_OPTIONS = "-c plan_cache_mode=force_custom_plan -c TimeZone=UTC -c default_transaction_read_only=on"


#: psycopg_pool retries a failed connection with a delay that doubles from 1 s until
#: ``reconnect_timeout`` (default 300 s), so after a long outage the next attempt could be a
#: minute away. Giving up after 4 s keeps the gaps ≤ 2 s; the next checkout starts over.
RECONNECT_TIMEOUT_S = 4.0
#: A request waits this long for a connection before its 503.
POOL_TIMEOUT_S = 3.0


async def _configure(conn: Any) -> None:
    await conn.set_autocommit(True)


def create_pool(database_url: str, max_size: int = 8, read_only: bool = True) -> AsyncConnectionPool[Any]:
    """Connections are checked on checkout, so one broken by a PostgreSQL restart is replaced
    instead of failing a request; an unreachable database is a PoolTimeout (→ 503)."""
    # Writes wait at most WRITE_LOCK_TIMEOUT for a row a processor batch or clock task holds
    # (api.resolve.writing answers 503 then), never indefinitely.
    options = CONNECTION_OPTIONS if read_only else (
        CONNECTION_OPTIONS.replace("read_only=on", "read_only=off") + f" -c lock_timeout={WRITE_LOCK_TIMEOUT}")
    return AsyncConnectionPool(database_url, min_size=1, max_size=max_size, open=False, configure=_configure,
                               kwargs={"options": options, "connect_timeout": 3},
                               timeout=POOL_TIMEOUT_S, check=AsyncConnectionPool.check_connection,
                               reconnect_timeout=RECONNECT_TIMEOUT_S)


def create_app(database_url: str, pool_size: int = 8, public_url: str | None = None,
               purge_in_background: bool = True, stats_cache_seconds: float = 0.0) -> FastAPI:
    """``public_url`` prefixes the ``Link`` headers (default ``CRONPIPE_API_PUBLIC_URL`` or the bind address);
    ``stats_cache_seconds`` bounds how old a stats response may be: 0 (no cache) here and in
    the tests that call this, ``api.stats_cache.STATS_CACHE_SECONDS`` under `cronpipe api`."""
    pool = create_pool(database_url, pool_size)
    # Write routes and the purge of deleted monitors: their own small pool, so the read
    # pool stays read-only by construction.
    write_pool = create_pool(database_url, WRITE_POOL_SIZE, read_only=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)  # serve (503s, /readyz) while PostgreSQL is still away
        await write_pool.open(wait=False)
        purge = asyncio.create_task(purge_forever(write_pool)) if purge_in_background else None
        try:
            yield
        finally:
            if purge is not None:
                purge.cancel()
                await asyncio.gather(purge, return_exceptions=True)
            await write_pool.close()
            await pool.close()

    app = FastAPI(title="cronpipe read API", version="0", description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=JsonResponse)
    app.state.pool = pool
    app.state.database_url = database_url  # the alert-channel routes (api.channel_routes)
    app.state.write_pool = write_pool
    app.state.now = lambda: datetime.now(UTC)  # the write routes' "now"; tests drive it
    app.state.authenticator = Authenticator()
    app.state.stats_cache = StatsCache(stats_cache_seconds)
    app.state.public_url = (public_url or load().effective_api_public_url()).rstrip("/")
    install_error_handlers(app)
    app.include_router(organization_routes(), prefix=ORG_PREFIX, tags=["organizations"])
    app.include_router(monitor_routes(organization_monitor, organization_monitor_path),
                       prefix=f"{ORG_PREFIX}/monitors/{{monitor_id_or_slug}}", tags=["monitors"])
    app.include_router(project_routes(), prefix=PROJECT_PREFIX, tags=["projects"])
    app.include_router(organization_write_routes(), prefix=ORG_PREFIX, tags=["manage monitors"])
    app.include_router(project_write_routes(), prefix=PROJECT_PREFIX, tags=["manage monitors"])
    for resolve, prefix in ((organization_monitor, ORG_PREFIX), (project_monitor, PROJECT_PREFIX)):
        app.include_router(monitor_write_routes(resolve), prefix=f"{prefix}/monitors/{{monitor_id_or_slug}}",
                           tags=["manage monitors"])
    app.include_router(monitor_routes(project_monitor, project_monitor_path), prefix=f"{PROJECT_PREFIX}/monitors/{{monitor_id_or_slug}}",
                       tags=["project monitors"])
    app.include_router(channel_routes(), prefix=ORG_PREFIX, tags=["alert channels"])
    app.include_router(timeline_routes())
    app.include_router(system_incident_routes())
    app.include_router(ui_routes())
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/readyz", readyz, include_in_schema=False)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RejectNulBytes)
    app.add_middleware(InertResponses)
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 on every route; this API answers 400 (see api.errors)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in document["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            document.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = document
    return app.openapi_schema


async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Whether it can serve is /readyz."""
    return {"status": "ok"}


async def readyz(request: Request) -> JsonResponse:
    """Readiness: PostgreSQL answers a query within a second."""
    try:
        async with request.app.state.pool.connection(timeout=1.0) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return JsonResponse({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
                            status_code=503)
    return JsonResponse({"status": "ok", "database": "ok"})


class RejectNulBytes:
    """PostgreSQL text cannot hold NUL: answer 400 before such a path or query reaches SQL."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in query or b"\x00" in query):
            response = JsonResponse({"detail": "NUL bytes are not allowed in the path or query", "parameter": None},
                                    status_code=400)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
