"""JSON responses rendered with orjson (stats bodies hold thousands of buckets)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response


def render_json(content: Any) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


class JsonResponse(JSONResponse):
    """A JSONResponse (so OpenAPI shows each route's response model) rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


class RenderedJsonResponse(Response):
    """A body already rendered by :func:`render_json` (a cached one), with JsonResponse's headers."""

    media_type = "application/json"
