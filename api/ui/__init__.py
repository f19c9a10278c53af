"""The read-only dashboard: static files served by the API process under ``/ui/``.

Plain HTML, CSS and ES modules (``static/``), no build step and no third-party code: the
pages call the same read API a script would, with the token the person signed in with.
Every UI response carries a strict Content-Security-Policy (scripts and styles from this
origin only, no inline script or style attribute, no form submission, no framing).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

STATIC = Path(__file__).parent / "static"

#: The dashboard's policy. ``form-action 'none'`` keeps a sign-in form from ever being
#: submitted as a request (JavaScript reads it); ``connect-src 'self'`` limits the token to
#: this origin.
UI_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
UI_HEADERS = {
    "Content-Security-Policy": UI_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: Only these names are served: a fixed set read once, never a path built from the request.
FILES: dict[str, tuple[bytes, str]] = {
    path.name: (path.read_bytes(), _TYPES[path.suffix]) for path in sorted(STATIC.iterdir())
    if path.suffix in _TYPES and path.name != "root.html"
}
_ROOT = (STATIC / "root.html").read_bytes()


def _file(name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        return Response(b"Not found", status_code=404, media_type="text/plain", headers=UI_HEADERS)
    body, media_type = found
    return Response(body, media_type=media_type, headers=UI_HEADERS)


def ui_routes() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> Response:
        return Response(_ROOT, media_type=_TYPES[".html"], headers=UI_HEADERS)

    @router.get("/ui")
    async def ui_redirect() -> Response:
        return RedirectResponse("/ui/", status_code=308, headers=UI_HEADERS)

    @router.get("/ui/")
    async def ui_index() -> Response:
        return _file("index.html")

    @router.get("/ui/{name}")
    async def ui_file(name: str) -> Response:
        return _file(name)

    return router
