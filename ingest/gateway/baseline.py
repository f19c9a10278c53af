"""The benchmark's do-nothing gateway (``CRONPIPE_GATEWAY_NOOP=1``, `cronpipe bench gateway`).

Same server, protocol and HTTP limits as the real gateway (`server.uvicorn_config` picks
this factory instead of `app.create_app`), so the difference between the two runs is the
gateway's own work. It lives apart from the real handlers so that no production request
path carries a benchmark switch.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from ingest.gateway.asgi import Receive, Scope, Send

# The largest body any gateway route reads (an envelope).
MAX_BODY_BYTES = 1024 * 1024
_ACCEPTED = b'{"id":"' + uuid.UUID(int=0).hex.encode() + b'"}'
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_HEALTH_PATHS = {"/healthz", "/livez", "/readyz"}


def create_baseline_app() -> ASGIApp:
    return _baseline


async def _baseline(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body (bounded) and answer like an accepted check-in; health paths say ok."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] in _HEALTH_PATHS:
        await _answer(send, 200, b'{"status":"ok"}')
        return
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False) and size <= MAX_BODY_BYTES
    await _answer(send, 202 if size <= MAX_BODY_BYTES else 413, _ACCEPTED)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
