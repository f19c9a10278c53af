"""Crontab expressions: parsing (with the reasons a bad one is refused) and evaluation.

The layer under :mod:`schemas.schedule`, which is the API: ``compile_crontab`` turns an
expression into a :class:`Crontab` (cached), ``next_crontab`` finds its next fire instant
in a timezone with the day matching and the daylight-saving rules of Vixie/Debian cron
(``man 8 cron``; docs/schedules-and-dst.md explains why croniter is not used).
"""

from __future__ import annotations

import bisect
import calendar
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["COMPILE_CACHE_ENTRIES", "Crontab", "ScheduleError", "compile_crontab", "day_matches", "next_crontab"]


class ScheduleError(ValueError):
    """A schedule that cannot be used; ``str(error)`` is the human-readable reason."""


# ------------------------------------------------------------------------ crontab parsing

_ALIASES: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# start[-end][/step]; start is "*", a number or a name.
_RANGE = re.compile(r"^(?P<start>\*|[a-z0-9]+)(?:-(?P<end>[a-z0-9]+))?(?:/(?P<step>[0-9]+))?$")
_LAST_WEEKDAY = re.compile(r"^(?P<day>[a-z0-9]+)l$")
_NTH_WEEKDAY = re.compile(r"^(?P<day>[a-z0-9]+)#(?P<nth>[0-9]+)$")


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0  # value of names[0]


_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DOM = _FieldSpec("day-of-month", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES, 1)
# 0-7: both 0 and 7 are Sunday, as in Vixie cron; 7 is folded to 0 after expansion.
_DOW = _FieldSpec("day-of-week", 0, 7, _DAY_NAMES, 0)


@dataclass(frozen=True)
class Crontab:
    """A compiled expression. Weekdays use cron numbering (0 = Sunday)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    last_day: bool  # "L" in day-of-month
    months: frozenset[int]
    weekdays: frozenset[int]
    last_weekdays: frozenset[int]  # "5L": last Friday of the month
    nth_weekdays: frozenset[tuple[int, int]]  # "5#3": (5, 3), third Friday
    # Vixie cron's DOM_STAR/DOW_STAR: the field *begins* with "*" (so "*/2" counts).
    dom_star: bool
    dow_star: bool
    # Vixie cron's MIN_STAR|HR_STAR: such jobs run in real time across DST changes;
    # the others are "fixed-time" jobs that get cron's DST compensation.
    wildcard: bool


#: Entries of the compiled-crontab cache. Each keeps an expression of at most
#: MAX_CRONTAB_LENGTH characters and a Crontab of at most 60 + 24 + 31 + 12 + 7 + 7 + 35
#: small ints: ≤ 12 KiB per entry, so the cache holds ≤ 48 MiB whatever is sent
#: (tests/unit/test_schedule.py measures the largest entry).
COMPILE_CACHE_ENTRIES = 4096


@functools.lru_cache(maxsize=COMPILE_CACHE_ENTRIES)
def compile_crontab(expression: str) -> Crontab:
    """Parse and validate; cached because every next_expected call needs it.
    Callers bound the length first (``_check_length``)."""
    fields = _split_fields(expression)
    minute, hour, dom, month, dow = fields
    # Parsed left to right so the error names the first bad field.
    minutes = tuple(sorted(_parse_field(minute, _MINUTE)))
    hours = tuple(sorted(_parse_field(hour, _HOUR)))
    days, last_day = _parse_dom(dom)
    months = _parse_field(month, _MONTH)
    weekdays, last_weekdays, nth_weekdays = _parse_dow(dow)
    crontab = Crontab(
        minutes=minutes,
        hours=hours,
        days=days,
        last_day=last_day,
        months=months,
        weekdays=weekdays,
        last_weekdays=last_weekdays,
        nth_weekdays=nth_weekdays,
        dom_star=dom.startswith("*"),
        dow_star=dow.startswith("*"),
        wildcard=minute.startswith("*") or hour.startswith("*"),
    )
    _check_fires(crontab)
    return crontab


def _split_fields(expression: str) -> list[str]:
    text = expression.strip().lower()
    if not text:
        raise ScheduleError("crontab is empty")
    if text.startswith("@"):
        return _expand_alias(text)
    fields = text.split()
    if len(fields) != 5:
        noun = "field" if len(fields) == 1 else "fields"
        raise ScheduleError(f"crontab has {len(fields)} {noun}; expected 5")
    return fields


def _expand_alias(alias: str) -> list[str]:
    if alias == "@reboot":
        raise ScheduleError("@reboot is not supported")
    if alias not in _ALIASES:
        known = ", ".join(_ALIASES)
        raise ScheduleError(f"unknown alias {alias!r}; expected one of {known}")
    return _ALIASES[alias].split()


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_range(item, spec))
    if spec is _DOW:
        values = {value % 7 for value in values}
    return frozenset(values)


def _parse_range(item: str, spec: _FieldSpec) -> range:
    match = _RANGE.match(item)
    if match is None:
        raise ScheduleError(f"invalid {spec.name} field item {item!r}")
    start_text, end_text, step_text = match.group("start", "end", "step")
    if start_text == "*":
        if end_text is not None:
            raise ScheduleError(f"invalid {spec.name} field item {item!r}")
        start, end = spec.low, spec.high
    else:
        start = _parse_value(start_text, spec)
        # "5/15" means "5-59/15": not Vixie syntax, but croniter (and so Sentry) accepts it.
        end = _parse_value(end_text, spec) if end_text else (spec.high if step_text else start)
    if start > end:
        raise ScheduleError(f"{spec.name} range {item!r} is backwards")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ScheduleError(f"{spec.name} step must be at least 1 in {item!r}")
    return range(start, end + 1, step)


def _parse_value(text: str, spec: _FieldSpec) -> int:
    if text.isdigit():
        value = int(text)
    elif text in spec.names:
        value = spec.names.index(text) + spec.first_name
    else:
        raise ScheduleError(f"invalid {spec.name} value {text!r}")
    if not spec.low <= value <= spec.high:
        raise ScheduleError(f"{spec.name} value {value} is out of range {spec.low}-{spec.high}")
    return value


def _parse_dom(text: str) -> tuple[frozenset[int], bool]:
    """Day-of-month values, plus whether "L" (last day of the month) is listed."""
    items = text.split(",")
    plain = [item for item in items if item != "l"]
    days = _parse_field(",".join(plain), _DOM) if plain else frozenset[int]()
    return days, len(plain) < len(items)


def _parse_dow(text: str) -> tuple[frozenset[int], frozenset[int], frozenset[tuple[int, int]]]:
    """Plain weekdays, "<day>L" last-of-month weekdays and "<day>#<n>" n-th weekdays."""
    plain: list[str] = []
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        if (match := _NTH_WEEKDAY.match(item)) is not None:
            nth.add((_parse_value(match["day"], _DOW) % 7, _parse_nth(match["nth"], item)))
        elif (match := _LAST_WEEKDAY.match(item)) is not None:
            last.add(_parse_value(match["day"], _DOW) % 7)
        else:
            plain.append(item)
    weekdays = _parse_field(",".join(plain), _DOW) if plain else frozenset[int]()
    return weekdays, frozenset(last), frozenset(nth)


def _parse_nth(text: str, item: str) -> int:
    nth = int(text)
    if not 1 <= nth <= 5:
        raise ScheduleError(f"day-of-week {item!r}: occurrence must be 1-5")
    return nth


# ---------------------------------------------------------------------------- day matching


def _cron_weekday(day: date) -> int:
    return day.isoweekday() % 7  # cron numbering: Sunday is 0


def _dom_matches(crontab: Crontab, day: int, month_length: int) -> bool:
    return day in crontab.days or (crontab.last_day and day == month_length)


def _dow_matches(crontab: Crontab, day: int, month_length: int, weekday: int) -> bool:
    return (
        weekday in crontab.weekdays
        or (weekday in crontab.last_weekdays and day + 7 > month_length)
        or (weekday, (day - 1) // 7 + 1) in crontab.nth_weekdays
    )


def day_matches(crontab: Crontab, day: int, month_length: int, weekday: int) -> bool:
    """Vixie cron: AND if either day field begins with "*", otherwise OR."""
    dom = _dom_matches(crontab, day, month_length)
    dow = _dow_matches(crontab, day, month_length, weekday)
    if crontab.dom_star or crontab.dow_star:
        return dom and dow
    return dom or dow


def _check_fires(crontab: Crontab) -> None:
    """Reject expressions no calendar day can satisfy (e.g. February 30th).

    Every (month, leap year?, weekday of the 1st) combination occurs in the Gregorian
    calendar, so trying each of them once is exhaustive.
    """
    for month in crontab.months:
        # Month lengths in a common (2026) and a leap (2028) year.
        for length in {calendar.monthrange(2026, month)[1], calendar.monthrange(2028, month)[1]}:
            for first_weekday in range(7):
                if any(
                    day_matches(crontab, day, length, (first_weekday + day - 1) % 7)
                    for day in range(1, length + 1)
                ):
                    return
    raise ScheduleError(f"schedule never fires ({_never_fires_detail(crontab)})")


def _never_fires_detail(crontab: Crontab) -> str:
    if crontab.dow_star and not crontab.last_day:
        days = sorted(crontab.days)
        noun = "day" if len(days) == 1 else "days"
        months = ", ".join(calendar.month_name[month] for month in sorted(crontab.months))
        return f"{noun} {', '.join(map(str, days))} of {months}"
    return "no day matches both the day-of-month and the day-of-week field"


# ---------------------------------------------------------------- crontab evaluation
#
# We walk candidate *local wall-clock minutes* in ascending order, skipping whole months
# and days that cannot match, and map each onto real (UTC) instants with zoneinfo.
# The mapping is where Debian cron's DST rules live (see _fire_instants). Walls map to
# their earliest instant monotonically, so once a wall's earliest instant is past the best
# candidate found, no later wall can do better and the walk stops.

# Debian cron compares its virtual clock with the real one once a minute and classifies
# the jump (cron.c): > 5 minutes forward is a DST start, a jump of more than 3 hours in
# either direction is a clock correction that is applied without compensation.
_SMALL_JUMP_MINUTES = 5
_LARGE_JUMP_MINUTES = 3 * 60
# How far ahead to look for a fall-back. DST moves clocks back at most 2 hours today
# (Antarctica/Troll), but zone changes have gone back 7 hours (Antarctica/Vostok 1994).
_FALL_BACK_LOOKAHEAD = timedelta(hours=26)
# Any valid expression fires within a few decades (Feb 29 that is also a Friday...);
# searching 400 years (a full Gregorian cycle) guards against endless loops.
_SEARCH_YEARS = 400


def next_crontab(crontab: Crontab, zone: ZoneInfo, after: datetime) -> datetime:
    best: datetime | None = None
    start = _first_wall(zone, after)
    last_year = _last_search_year(start)
    for wall in _matching_walls(crontab, start, last_year):
        earliest, instants = _fire_instants(wall, zone, crontab.wildcard)
        if best is not None and earliest >= best:
            return best
        candidates = [t for t in instants if t > after] + ([best] if best else [])
        best = min(candidates, default=None)
        if best == earliest:  # no later wall can map to an instant before this one
            return best
    raise ScheduleError(f"schedule does not fire between {after.isoformat()} and {last_year}")


def _last_search_year(start: datetime) -> int:
    # One year short of datetime's limit so month/day arithmetic never overflows.
    return min(start.year + _SEARCH_YEARS, date.max.year - 1)


def _first_wall(zone: ZoneInfo, after: datetime) -> datetime:
    """The first wall minute that can still occur after ``after``.

    Normally the minute following the wall time of ``after``. But if the clock falls
    back by D within D from now, it shows earlier wall times again, so start D earlier.
    """
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None, second=0, microsecond=0)
    fall_back = _offset(local) - _offset((after + _FALL_BACK_LOOKAHEAD).astimezone(zone))
    if fall_back > timedelta(0) and _offset((after + fall_back).astimezone(zone)) != _offset(local):
        return wall - fall_back
    return wall + timedelta(minutes=1)


def _matching_walls(crontab: Crontab, start: datetime, last_year: int) -> Iterator[datetime]:
    """Wall-clock minutes at or after ``start`` that match the expression, ascending."""
    for day in _matching_days(crontab, start.date(), last_year):
        first_day = day == start.date()
        for hour in _from(crontab.hours, start.hour if first_day else 0):
            first_hour = first_day and hour == start.hour
            for minute in _from(crontab.minutes, start.minute if first_hour else 0):
                yield datetime.combine(day, time(hour, minute))


def _from(values: tuple[int, ...], lowest: int) -> tuple[int, ...]:
    return values[bisect.bisect_left(values, lowest) :]


def _matching_days(crontab: Crontab, start: date, last_year: int) -> Iterator[date]:
    """Matching local dates from ``start`` through ``last_year``, skipping months whole."""
    day = start
    while day.year <= last_year:
        if day.month not in crontab.months:
            day = _first_of_next_month(day)
            continue
        length = calendar.monthrange(day.year, day.month)[1]
        if day_matches(crontab, day.day, length, _cron_weekday(day)):
            yield day
        day += timedelta(days=1)


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _fire_instants(
    wall: datetime, zone: ZoneInfo, wildcard: bool
) -> tuple[datetime, tuple[datetime, ...]]:
    """When cron fires for one matching wall minute: (earliest instant, fire instants).

    The earliest instant is where the wall first occurs (or, if it is skipped, the end
    of the gap); it only serves to stop the search.
    """
    before = _offset(wall, zone)
    later = _offset(wall.replace(fold=1), zone)
    if before == later:
        instant = _utc(wall - before)
        return instant, (instant,)
    if before > later:  # clock fell back: this wall time happens twice
        return _repeated_wall(wall, before, later, wildcard)
    return _skipped_wall(wall, zone, before, later, wildcard)


def _repeated_wall(
    wall: datetime, before: timedelta, later: timedelta, wildcard: bool
) -> tuple[datetime, tuple[datetime, ...]]:
    first, second = _utc(wall - before), _utc(wall - later)
    # Debian cron's virtual clock waits for the real one to catch up, so fixed-time
    # jobs already run (first occurrence) are not repeated; wildcard jobs run each real
    # minute. A fall-back of more than 3h is a clock correction: everything repeats.
    jump = 1 - _minutes(before - later)
    if wildcard or jump < -_LARGE_JUMP_MINUTES:
        return first, (first, second)
    return first, (first,)


def _skipped_wall(
    wall: datetime, zone: ZoneInfo, before: timedelta, later: timedelta, wildcard: bool
) -> tuple[datetime, tuple[datetime, ...]]:
    gap_end = _gap_end(wall, zone, before, later)
    # Debian cron runs fixed-time jobs of the skipped minutes right after a jump forward
    # (wildcard jobs too if the jump is under 5 minutes); a jump of more than 3h is a
    # clock correction and skipped times are simply lost.
    jump = _minutes(later - before) + 1
    if jump > _LARGE_JUMP_MINUTES or (wildcard and jump > _SMALL_JUMP_MINUTES):
        return gap_end, ()
    return gap_end, (gap_end,)


def _gap_end(wall: datetime, zone: ZoneInfo, before: timedelta, later: timedelta) -> datetime:
    """The instant the clock jumped over ``wall`` (the first instant after the gap).

    zoneinfo has no public transition list, so bisect (to the second) between the
    two readings of the skipped wall time, which bracket the transition.
    """
    low, high = _utc(wall - later), _utc(wall - before)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        if _offset(middle.astimezone(zone)) == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _offset(moment: datetime, zone: ZoneInfo | None = None) -> timedelta:
    """UTC offset of an aware datetime, or of a naive wall time in ``zone``."""
    offset = (zone or moment.tzinfo or UTC).utcoffset(moment)
    assert offset is not None  # ZoneInfo and UTC always define one
    return offset


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds()) // 60


def _utc(wall: datetime) -> datetime:
    return wall.replace(tzinfo=UTC)
