"""Schedule math: when is the next check-in of a monitor expected?

Pure functions. Time is always an argument (tz-aware ``datetime``); nothing here reads
the clock. Two kinds of schedule, as in Sentry Crons:

* ``CrontabSchedule`` -- a 5-field crontab (or an ``@alias``) evaluated in the monitor's
  IANA timezone with the day matching and the daylight-saving rules of Vixie/Debian cron
  (``man 8 cron``, "Daylight Saving Time and other time changes").
* ``IntervalSchedule`` -- "every N units" counted from the reference time, in UTC.

croniter is deliberately not used to evaluate schedules: the only version our dependency
set allows (5.0.1; mode-streaming requires ``croniter<6``) gives different answers from
cron across DST. See docs/schedules-and-dst.md.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.crontab import ScheduleError, compile_crontab, next_crontab
from schemas.limits import MAX_CRONTAB_LENGTH
from schemas.minutes import floor_minute

__all__ = [
    "CrontabSchedule",
    "IntervalSchedule",
    "Schedule",
    "ScheduleError",
    "expected_times",
    "next_expected",
    "parse_crontab",
]

IntervalUnit = Literal["minute", "hour", "day", "week", "month", "year"]


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class CrontabSchedule:
    """A crontab expression; constructing one validates it (raises ``ScheduleError``)."""

    expression: str

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise ScheduleError(f"crontab must be a string, got {self.expression!r:.40}")
        _check_length(self.expression)
        compile_crontab(self.expression)


@dataclass(frozen=True)
class IntervalSchedule:
    """Every ``value`` ``unit``s, counted from the reference time floored to the minute."""

    value: int
    unit: IntervalUnit

    def __post_init__(self) -> None:
        # bool is an int subclass; "every True days" is a caller bug, not a schedule.
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 1:
            raise ScheduleError(f"interval must be a positive whole number, got {self.value!r}")
        if self.unit not in get_args(IntervalUnit):
            raise ScheduleError(f"unknown interval unit {self.unit!r}")


Schedule = CrontabSchedule | IntervalSchedule


def parse_crontab(expression: str) -> CrontabSchedule:
    """Validate a crontab expression; raises ``ScheduleError`` with the reason
    (``"crontab longer than 512 characters"`` before any other work)."""
    _check_length(expression)
    return CrontabSchedule(" ".join(expression.split()))


def _check_length(expression: str) -> None:
    # Before splitting or caching: parse time and the _compile cache's keys grow with it.
    if len(expression) > MAX_CRONTAB_LENGTH:
        raise ScheduleError(f"crontab longer than {MAX_CRONTAB_LENGTH} characters")


def next_expected(schedule: Schedule, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, as an aware UTC datetime.

    ``tz`` is the monitor's IANA timezone; interval schedules ignore it.
    Raises ``ScheduleError`` for an unknown timezone or when no fire time exists
    before the end of the calendar, ``ValueError`` if ``after`` is naive.
    """
    moment = _as_utc(after, "after")
    if isinstance(schedule, IntervalSchedule):
        return _next_interval(schedule, moment)
    return next_crontab(compile_crontab(schedule.expression), _zone(tz), moment)


def expected_times(
    schedule: Schedule, tz: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """All fire times ``t`` with ``after < t <= until``, ascending, at most ``limit``.

    Interval schedules are chained: each time is counted from the previous one.
    """
    end = _as_utc(until, "until")
    times: list[datetime] = []
    current = _as_utc(after, "after")
    while len(times) < limit:
        current = next_expected(schedule, tz, current)
        if current > end:
            break
        times.append(current)
    return times


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleError(f"unknown timezone {name!r}") from error


# ------------------------------------------------------------------------------ intervals
#
# Sentry adds a dateutil relativedelta to the reference time in UTC. We do the same
# arithmetic by hand: minute/hour/day/week are fixed durations (a "day" is always 24h;
# in UTC there is no DST, so this equals calendar arithmetic), month/year step the
# calendar and clamp the day to the end of a shorter month (Jan 31 + 1 month = Feb 28),
# exactly like relativedelta. Chaining therefore drifts: Jan 31, Feb 28, Mar 28, ...

_FIXED_UNITS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}


def _next_interval(schedule: IntervalSchedule, after: datetime) -> datetime:
    start = floor_minute(after)
    try:
        if schedule.unit in _FIXED_UNITS:
            return start + schedule.value * _FIXED_UNITS[schedule.unit]
        months = schedule.value * (12 if schedule.unit == "year" else 1)
        return _add_months(start, months)
    except (OverflowError, ValueError) as error:
        raise ScheduleError("next expected time is after the year 9999") from error


def _add_months(moment: datetime, months: int) -> datetime:
    year, month_index = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month_index + 1)[1])
    return moment.replace(year=year, month=month_index + 1, day=day)
