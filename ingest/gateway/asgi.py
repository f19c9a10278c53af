"""The thin HTTP layer under the gateway: a request view over an ASGI scope, bodies read
with a size limit, and responses. Raw ASGI rather than a framework: measured on this
machine, a framework's routing and request objects cost 2-6x the whole budget of a
check-in (docs/gateway.md, "Why raw ASGI").
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ingest.gateway.errors import GatewayError, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected before its body arrived; there is no one to answer."""


@dataclass
class Request:
    scope: Scope
    receive: Receive
    started: float
    """Unix time the request was received: the check-in's ``start_time``."""
    _headers: dict[str, str] | None = field(default=None, repr=False)
    _query: dict[str, str] | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: str) -> str | None:
        """A request header by lower-case name (latin-1 decoded, as HTTP says)."""
        if self._headers is None:
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}
        return self._headers.get(name)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; a repeated name keeps its last value."""
        if self._query is None:
            self._query = dict(parse_qsl(self.scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return self._query

    async def body(self, limit: int, what: str = "body") -> bytes:
        """The whole body; GatewayError(413) as soon as it exceeds ``limit`` bytes."""
        declared = self.header("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(what, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(what, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send) -> None:
        headers = [(b"content-type", self.content_type), (b"content-length", str(len(self.body)).encode()),
                   *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, content: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return Response(status, orjson.dumps(content), _JSON, tuple(headers))


def error_response(error: GatewayError) -> Response:
    """Sentry's error shape, ``{"detail": ...}``, with the error's headers."""
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return json_response(error.status, {"detail": error.detail}, headers)


def retry_after(seconds: float) -> str:
    """Whole seconds for a Retry-After header, at least 1."""
    return str(max(1, math.ceil(seconds)))
