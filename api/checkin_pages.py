"""Keyset pages of check-ins, newest first, with the cursors for their Link header."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from api import store
from api.params import Cursor, TimeRange
from api.store import CheckInRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Page:
    rows: list[CheckInRow]
    previous: Cursor
    has_previous: bool
    next: Cursor
    has_next: bool


def _key(row: CheckInRow, is_prev: bool) -> Cursor:
    return Cursor((row.date_added - _EPOCH) // _MICROSECOND, row.id, is_prev)


def _key_params(cursor: Cursor | None) -> dict[str, Any]:
    if cursor is None:
        return {"key_date": None, "key_id": None}
    try:
        key_date = _EPOCH + cursor.value * _MICROSECOND
    except OverflowError:
        key_date = datetime.max.replace(tzinfo=UTC)
    return {"key_date": key_date, "key_id": cursor.offset}


async def checkin_page(conn: AsyncConnection[Any], monitor_id: int, environments: list[str] | None,
                       window: TimeRange, cursor: Cursor | None, limit: int) -> Page:
    """One page: older than ``cursor`` (or the newest), or newer than it for a previous-cursor."""
    params = {"monitor_id": monitor_id, "environments": environments, "since": window.since,
              "until": window.until, "limit": limit + 1, **_key_params(cursor)}
    backwards = cursor is not None and cursor.is_prev
    query = store.CHECKINS_NEWER if backwards else store.CHECKINS_OLDER
    fetched = await store.fetch_all(conn, CheckInRow, query, params)
    more = len(fetched) > limit
    rows = fetched[:limit]
    if backwards:
        rows.reverse()
    here = cursor or Cursor(0, 0, False)
    return Page(
        rows=rows,
        previous=_key(rows[0], True) if rows else Cursor(here.value, here.offset, True),
        has_previous=more if backwards else cursor is not None,
        next=_key(rows[-1], False) if rows else Cursor(here.value, here.offset, False),
        has_next=True if backwards else more,
    )
