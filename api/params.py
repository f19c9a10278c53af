"""Query parameters that need more than a type: time ranges, periods, resolutions, cursors.

Pure functions; each raises BadParameter naming the parameter it rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.errors import BadParameter

_DURATION = re.compile(r"^([0-9]{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Unix seconds accepted for since/until: 1970 to the end of year 9999 (datetime's range).
MAX_TIMESTAMP = 253_402_300_799
_MAX_PERIOD_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class TimeRange:
    since: datetime | None
    until: datetime | None


def parse_duration(parameter: str, text: str) -> int:
    """Seconds in ``text``: ``"3600"`` or ``"<n>[smhdw]"`` (``1h``, ``24h``, ``14d``)."""
    if text.isascii() and text.isdigit() and len(text) <= 9:
        seconds = int(text)
    elif match := _DURATION.match(text):
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise BadParameter(parameter, f"{text!r} is not a duration such as 3600, 1h, 24h or 14d")
    if not 0 < seconds <= _MAX_PERIOD_SECONDS:
        raise BadParameter(parameter, "must be positive and at most 10 years")
    return seconds


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def time_range(since: float | None, until: float | None, stats_period: str | None, now: datetime) -> TimeRange:
    """The range a request asks for: ``since``/``until`` (unix seconds) or ``statsPeriod`` back from now."""
    if stats_period is not None:
        if since is not None or until is not None:
            raise BadParameter("statsPeriod", "cannot be combined with since/until")
        return TimeRange(now - timedelta(seconds=parse_duration("statsPeriod", stats_period)), now)
    if since is not None and until is not None and since > until:
        raise BadParameter("since", "must not be after until")
    return TimeRange(None if since is None else from_unix(since), None if until is None else from_unix(until))


@dataclass(frozen=True)
class Cursor:
    """Sentry's cursor shape ``value:offset:is_prev``.

    Check-in lists use keyset paging: ``value`` is the boundary row's ``date_added`` in
    microseconds and ``offset`` its id. Offset-paged lists use ``0:<offset>:0``.
    """

    value: int
    offset: int
    is_prev: bool

    def __str__(self) -> str:
        return f"{self.value}:{self.offset}:{int(self.is_prev)}"


def parse_cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts) or parts[2] not in "01":
        raise BadParameter("cursor", f"{text!r} is not a cursor from a Link header")
    return Cursor(int(parts[0]), int(parts[1]), parts[2] == "1")
