"""Headers on every API response that keep stored data inert in a browser.

Attachments are written by anyone holding a DSN key and served with their stored
Content-Type: ``nosniff`` stops a browser from guessing a script out of them and the
sandbox policy stops an HTML attachment opened from this origin from running or reaching
the dashboard's session. JSON responses get the same: they never need active content.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INERT_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: FastAPI's interactive docs load their own scripts; they keep FastAPI's defaults.
_DOC_PATHS = ("/docs", "/redoc")


class InertResponses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_DOC_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_inert(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Content-Security-Policy", INERT_POLICY)
            await send(message)

        await self.app(scope, receive, send_inert)
