"""`cronpipe api`: the read API under uvicorn on CRONPIPE_BIND:CRONPIPE_API_PORT.

uvicorn handles SIGTERM: it stops accepting, finishes in-flight requests, then the app's
lifespan closes the PostgreSQL pool. Connections are bounded like the gateway's
(``CRONPIPE_HTTP_*``, schemas/http_limits.py), with the API's error body.
"""

from __future__ import annotations

import os
import signal
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from schemas.http_limits import HttpLimits, LimitedConfig, LimitedHttpToolsProtocol
from schemas.settings import Settings, load

#: Not a setting (schemas.settings declares it internal): uvicorn's worker processes import the
#: app from a string, so the URL `serve` was given reaches them through the environment.
_URL_VARIABLE = "CRONPIPE_API_DATABASE_URL"


class ApiHttpProtocol(LimitedHttpToolsProtocol):
    """Refusals by the HTTP layer (431, 408, 503) carry the API's error shape."""

    error_fields: ClassVar[dict[str, Any]] = {"parameter": None}


def app_from_environment() -> FastAPI:
    """uvicorn factory, run in each worker process (workers share nothing but the database)."""
    from api.app import create_app
    from api.stats_cache import STATS_CACHE_SECONDS

    return create_app(os.environ.get(_URL_VARIABLE) or load().effective_database_url(),
                      stats_cache_seconds=STATS_CACHE_SECONDS)


def uvicorn_config(settings: Settings, workers: int = 1) -> uvicorn.Config:
    return LimitedConfig("api.server:app_from_environment", factory=True, limits=HttpLimits.from_settings(settings),
                         protocol=ApiHttpProtocol, host=settings.bind, port=settings.api_port,
                         workers=max(workers, 1), access_log=False, log_level="warning",
                         timeout_graceful_shutdown=10)


def serve(settings: Settings, workers: int = 1) -> int:
    # Worker processes re-import the app from a string, so the URL travels by environment.
    os.environ[_URL_VARIABLE] = settings.effective_database_url()
    config = uvicorn_config(settings, workers)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handlers it
    # found; these no-ops make a drained shutdown end with exit status 0.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _drained)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _drained(signum: int, frame: object) -> None:
    """The signal was already handled by uvicorn's graceful shutdown; nothing left to do."""
