"""API errors and their one JSON shape: ``{"detail": ..., "parameter": ...}``.

FastAPI's own validation errors (422 with a list) are rewritten to 400 naming the first
bad parameter, so every client sees the same shape whatever rejected the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import JsonResponse


class ApiError(Exception):
    """A request that gets an error response; ``detail`` is shown to the client."""

    def __init__(self, status: int, detail: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


class BadParameter(ApiError):
    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(400, f"Invalid parameter {parameter!r}: {problem}", parameter)


def _body(detail: str, parameter: str | None) -> dict[str, Any]:
    return {"detail": detail, "parameter": parameter}


async def _api_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, ApiError)
    return JsonResponse(_body(exc.detail, exc.parameter), status_code=exc.status, headers=exc.headers)


def describe_validation(errors: Sequence[Any]) -> BadParameter:
    """The first FastAPI validation error as a BadParameter naming the parameter."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
    parameter = loc[0] if loc else "request"
    return BadParameter(parameter, str(first.get("msg", "invalid value")))


async def _validation_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    return await _api_error(request, describe_validation(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JsonResponse(_body(str(exc.detail), None), status_code=exc.status_code,
                          headers=getattr(exc, "headers", None))


#: Seconds a client is asked to wait when PostgreSQL cannot answer.
DATABASE_RETRY_AFTER_S = 5


async def _database_unavailable(request: Request, exc: Exception) -> JsonResponse:
    """PostgreSQL down, restarting or out of connections (``PoolTimeout`` is an
    OperationalError too): a 503 the client may retry, never a 500."""
    return JsonResponse(_body("The database is unavailable; retry later.", None), status_code=503,
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
