"""Sentry-style ``Link`` headers: ``<url>; rel="next"; results="true"; cursor="..."``.

The URL is built from the configured public base (``CRONPIPE_API_PUBLIC_URL``), never from
the client's ``Host`` header, and carries only the parameters that shape a page, so the
header is bounded: a request whose page URL would exceed ``MAX_LINK_TARGET`` characters is
a 400 naming the parameter that takes the most room.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote, urlencode

from starlette.requests import Request

from api.errors import BadParameter
from api.params import Cursor

#: Rows per page unless ``per_page`` asks for fewer (Sentry's default and maximum).
MAX_PER_PAGE = 100
#: Path and query of a page URL, in characters (two of them make one header line).
MAX_LINK_TARGET = 2048
#: Query parameters that select or shape a page; anything else is not echoed.
PAGE_PARAMETERS = frozenset({"environment", "since", "until", "statsPeriod", "per_page", "project", "status",
                             "query", "sort", "owner", "monitor", "resolution"})


def page_target(request: Request) -> str:
    """Path and page-shaping query of ``request``, percent-encoded, without the cursor."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k in PAGE_PARAMETERS]
    path = quote(request.scope.get("root_path", "") + request.scope["path"], safe="/")
    query = urlencode(items)
    if len(path) + len(query) > MAX_LINK_TARGET:
        sizes: Counter[str] = Counter()
        for key, value in items:
            sizes[key] += len(key) + len(value) + 2
        widest = sizes.most_common(1)[0][0] if sizes else "path"
        raise BadParameter(widest, f"the page URL would be longer than {MAX_LINK_TARGET} characters")
    return f"{path}?{query}&" if query else f"{path}?"


def _link(base: str, rel: str, cursor: Cursor, results: bool) -> str:
    target = f"{base}cursor={quote(str(cursor), safe=':')}"
    return f'<{target}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cursor}"'


def link_header(request: Request, previous: Cursor, has_previous: bool, next_: Cursor, has_next: bool) -> str:
    base = request.app.state.public_url + page_target(request)
    return ", ".join((_link(base, "previous", previous, has_previous), _link(base, "next", next_, has_next)))
