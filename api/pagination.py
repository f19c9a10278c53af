"""Sentry-style ``Link`` headers: ``<url>; rel="next"; results="true"; cursor="..."``."""

from __future__ import annotations

from starlette.datastructures import URL

from api.params import Cursor

#: Rows per page unless ``per_page`` asks for fewer (Sentry's default and maximum).
MAX_PER_PAGE = 100


def _link(url: URL, rel: str, cursor: Cursor, results: bool) -> str:
    target = url.include_query_params(cursor=str(cursor))
    return f'<{target}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cursor}"'


def link_header(url: URL, previous: Cursor, has_previous: bool, next_: Cursor, has_next: bool) -> str:
    return ", ".join((_link(url, "previous", previous, has_previous), _link(url, "next", next_, has_next)))
