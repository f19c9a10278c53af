"""`cronpipe api`: the read API under uvicorn on CRONPIPE_BIND:CRONPIPE_API_PORT.

uvicorn handles SIGTERM: it stops accepting, finishes in-flight requests, then the app's
lifespan closes the PostgreSQL pool.
"""

from __future__ import annotations

import os
import signal

import uvicorn
from fastapi import FastAPI

from schemas.settings import Settings, load

_URL_VARIABLE = "CRONPIPE_API_DATABASE_URL"


def app_from_environment() -> FastAPI:
    """uvicorn factory, run in each worker process (workers share nothing but the database)."""
    from api.app import create_app

    return create_app(os.environ.get(_URL_VARIABLE) or load().effective_database_url())


def serve(settings: Settings, workers: int = 1) -> int:
    # Worker processes re-import the app from a string, so the URL travels by environment.
    os.environ[_URL_VARIABLE] = settings.effective_database_url()
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handlers it
    # found; these no-ops make a drained shutdown end with exit status 0.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _drained)
    uvicorn.run("api.server:app_from_environment", factory=True, host=settings.bind, port=settings.api_port,
                workers=max(workers, 1), access_log=False, log_level="warning", timeout_graceful_shutdown=10)
    return 0


def _drained(signum: int, frame: object) -> None:
    """The signal was already handled by uvicorn's graceful shutdown; nothing left to do."""
