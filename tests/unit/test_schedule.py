"""Schedule math: crontab parsing, Vixie/Debian cron day and DST rules, intervals.

Expected times are written with explicit UTC offsets ("2026-11-01T01:00-05:00") so each
case reads as the local time a cron daemon in that zone would show.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]  # only to show its answers

from schemas.crontab import compile_crontab, day_matches
from schemas.schedule import (
    CrontabSchedule,
    IntervalSchedule,
    Schedule,
    ScheduleError,
    expected_times,
    next_expected,
    parse_crontab,
)


def at(text: str) -> datetime:
    """An instant from an ISO string that must carry its UTC offset."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return moment.astimezone(UTC)


def times(expression: str, tz: str, after: str, until: str) -> list[datetime]:
    return expected_times(parse_crontab(expression), tz, at(after), at(until), 10_000)


# ------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/15 * * * *",
        "10-50/5 * * * *",
        "5/15 * * * *",
        "0 9-17 * * mon-fri",
        "0 0 1 jan,jul *",
        "0 0 * * SUN",
        "0 0 * * 7",
        "0 0 L * *",
        "0 0 1,15,L * *",
        "0 0 * * 5L",
        "0 0 * * FRI#3",
        "0 0 29 2 *",
        "  0   0 * *   *  ",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@DAILY",
    ],
)
def test_it_accepts_a_valid_crontab(expression: str) -> None:
    assert parse_crontab(expression).expression == " ".join(expression.split())


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 * * * * *", "crontab has 6 fields; expected 5"),
        ("0 0 * * * * 2026", "crontab has 7 fields; expected 5"),
        ("every day at noon", "crontab has 4 fields; expected 5"),
        ("garbage", "crontab has 1 field; expected 5"),
        ("", "crontab is empty"),
        ("@reboot", "@reboot is not supported"),
        ("@fortnightly", "unknown alias '@fortnightly'; expected one of @yearly, @annually, "
         "@monthly, @weekly, @daily, @midnight, @hourly"),
        ("61 * * * *", "minute value 61 is out of range 0-59"),
        ("0 24 * * *", "hour value 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("a b c d e", "invalid minute value 'a'"),
        ("0 0 * * funday", "invalid day-of-week value 'funday'"),
        ("0 0 * * L", "invalid day-of-week value 'l'"),
        ("1,,2 * * * *", "invalid minute field item ''"),
        ("*/0 * * * *", "minute step must be at least 1 in '*/0'"),
        ("50-10 * * * *", "minute range '50-10' is backwards"),
        ("0 0 * * 5#6", "day-of-week '5#6': occurrence must be 1-5"),
        ("* * 31 2 *", "schedule never fires (day 31 of February)"),
        ("0 0 30 2 *", "schedule never fires (day 30 of February)"),
        ("0 0 30,31 feb *", "schedule never fires (days 30, 31 of February)"),
        ("0 0 31 4,6,9,11 *", "schedule never fires (day 31 of April, June, September, November)"),
    ],
)
def test_it_rejects_an_invalid_crontab_with_a_specific_reason(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_crontab(expression)
    assert str(caught.value) == reason


def test_constructing_a_crontab_schedule_validates_it() -> None:
    with pytest.raises(ScheduleError, match="crontab has 6 fields"):
        CrontabSchedule("0 0 * * * *")


@pytest.mark.parametrize(
    ("value", "unit", "reason"),
    [
        (0, "day", "interval must be a positive whole number, got 0"),
        (-5, "minute", "interval must be a positive whole number, got -5"),
        (True, "day", "interval must be a positive whole number, got True"),
        (1, "fortnight", "unknown interval unit 'fortnight'"),
    ],
)
def test_it_rejects_an_invalid_interval(value: int, unit: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        IntervalSchedule(value, unit)  # type: ignore[arg-type]
    assert str(caught.value) == reason


# ------------------------------------------------------------------ crontab, no DST involved


@pytest.mark.parametrize(
    ("expression", "after", "until", "expected"),
    [
        pytest.param(
            "*/15 * * * *", "2026-05-04T10:07Z", "2026-05-04T11:00Z",
            ["10:15", "10:30", "10:45", "11:00"], id="step",
        ),
        pytest.param(
            "10-50/20 9 * * *", "2026-05-04T00:00Z", "2026-05-04T23:59Z",
            ["09:10", "09:30", "09:50"], id="range-with-step",
        ),
        pytest.param(
            "5/20 9 * * *", "2026-05-04T00:00Z", "2026-05-04T23:59Z",
            ["09:05", "09:25", "09:45"], id="start-with-step",
        ),
        pytest.param(
            "0 9,12,18 * * *", "2026-05-04T10:00Z", "2026-05-05T09:00Z",
            ["12:00", "18:00", "09:00"], id="list",
        ),
    ],
)
def test_it_expands_minute_and_hour_fields(
    expression: str, after: str, until: str, expected: list[str]
) -> None:
    assert [t.strftime("%H:%M") for t in times(expression, "UTC", after, until)] == expected


def first_days(expression: str, count: int) -> list[str]:
    """The first ``count`` days (MM-DD) the expression fires on after 2026-04-30 (UTC)."""
    fired = expected_times(
        parse_crontab(expression), "UTC", at("2026-04-30T12:00Z"), at("2027-12-31T00:00Z"), count
    )
    return [t.strftime("%m-%d") for t in fired]


# May 1 2026 is a Friday, May 31 a Sunday.
@pytest.mark.parametrize(
    ("expression", "expected_days"),
    [
        pytest.param("0 0 * * 1", ["05-04", "05-11", "05-18"], id="monday"),
        pytest.param("0 0 * * mon", ["05-04", "05-11", "05-18"], id="name"),
        pytest.param("0 0 * * 0", ["05-03", "05-10", "05-17"], id="sunday-as-0"),
        pytest.param("0 0 * * 7", ["05-03", "05-10", "05-17"], id="sunday-as-7"),
        pytest.param("0 0 * * 5-7", ["05-01", "05-02", "05-03", "05-08"], id="range-to-7"),
        pytest.param("0 0 * * */3", ["05-02", "05-03", "05-06", "05-09"], id="step"),
        pytest.param("0 0 L * *", ["05-31", "06-30", "07-31"], id="last-day"),
        pytest.param("0 0 15,L * *", ["05-15", "05-31", "06-15", "06-30"], id="list-with-L"),
        pytest.param("0 0 * * 5L", ["05-29", "06-26", "07-31"], id="last-friday"),
        pytest.param("0 0 * * 0L", ["05-31", "06-28", "07-26"], id="last-sunday"),
        pytest.param("0 0 * * 5#3", ["05-15", "06-19", "07-17"], id="third-friday"),
        pytest.param("0 0 * * 5#5", ["05-29", "07-31", "10-30"], id="fifth-friday"),
        pytest.param("0 0 * * mon#1,fri#2", ["05-04", "05-08", "06-01", "06-12"], id="nth-list"),
        pytest.param("0 0 * jun mon", ["06-01", "06-08", "06-15"], id="month-name"),
        pytest.param("0 0 1 */4 *", ["05-01", "09-01", "01-01"], id="month-step"),
    ],
)
def test_it_matches_days(expression: str, expected_days: list[str]) -> None:
    assert first_days(expression, len(expected_days)) == expected_days


@pytest.mark.parametrize(
    ("expression", "expected_days"),
    [
        # Neither day field begins with "*": a day matching EITHER field fires.
        pytest.param("0 0 1 * 1", ["05-01", "05-04", "05-11", "05-18", "05-25"], id="or"),
        pytest.param("0 0 L * 1", ["05-04", "05-11", "05-18", "05-25", "05-31"], id="or-with-L"),
        pytest.param("0 0 1-3 * fri", ["05-01", "05-02", "05-03", "05-08"], id="or-range"),
        pytest.param("0 0 13 * 5#3", ["05-13", "05-15", "06-13", "06-19"], id="or-nth"),
        # Feb 31 never exists, but Vixie cron still fires on February Mondays (croniter
        # 5.0.1 raises CroniterBadDateError here).
        pytest.param("0 0 31 2 1", ["02-01", "02-08", "02-15", "02-22"], id="or-impossible-dom"),
        # A day field beginning with "*" (even "*/2") makes it AND, as Vixie's DOM_STAR.
        pytest.param("0 0 */2 * 1", ["05-11", "05-25", "06-01", "06-15"], id="and-dom-step"),
        pytest.param("0 0 1-7 * */6", ["05-02", "05-03", "06-06", "06-07"], id="and-dow-step"),
        pytest.param("0 0 */10 * 5#3", ["08-21", "05-21"], id="and-nth"),
    ],
)
def test_it_combines_day_of_month_and_day_of_week_like_vixie_cron(
    expression: str, expected_days: list[str]
) -> None:
    assert first_days(expression, len(expected_days)) == expected_days


@pytest.mark.parametrize(
    ("alias", "after", "expected"),
    [
        ("@yearly", "2026-05-04T10:00Z", "2027-01-01T00:00Z"),
        ("@annually", "2026-05-04T10:00Z", "2027-01-01T00:00Z"),
        ("@monthly", "2026-05-04T10:00Z", "2026-06-01T00:00Z"),
        ("@weekly", "2026-05-04T10:00Z", "2026-05-10T00:00Z"),
        ("@daily", "2026-05-04T10:00Z", "2026-05-05T00:00Z"),
        ("@midnight", "2026-05-04T10:00Z", "2026-05-05T00:00Z"),
        ("@hourly", "2026-05-04T10:00Z", "2026-05-04T11:00Z"),
    ],
)
def test_it_expands_aliases(alias: str, after: str, expected: str) -> None:
    assert next_expected(parse_crontab(alias), "UTC", at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        pytest.param("0 0 29 2 *", "UTC", "2026-01-01T00:00Z", "2028-02-29T00:00Z", id="leap"),
        pytest.param(
            "0 0 29 2 *", "UTC", "2097-01-01T00:00Z", "2104-02-29T00:00Z", id="skips-2100"
        ),
        pytest.param("0 9 * * *", "Asia/Kolkata", "2026-05-04T00:00Z", "2026-05-04T09:00+05:30",
                     id="local-time"),
        pytest.param("@yearly", "Europe/Berlin", "2026-05-04T00:00Z", "2027-01-01T00:00+01:00",
                     id="local-new-year"),
    ],
)
def test_it_evaluates_in_the_monitor_timezone(
    expression: str, tz: str, after: str, expected: str
) -> None:
    assert next_expected(parse_crontab(expression), tz, at(after)) == at(expected)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2026-05-04T10:15:00Z", "2026-05-04T10:30Z"),  # exactly on a fire time
        ("2026-05-04T10:14:59.999999Z", "2026-05-04T10:15Z"),
        ("2026-05-04T10:15:00.000001Z", "2026-05-04T10:30Z"),
        ("2026-05-04T12:15:00+02:00", "2026-05-04T10:30Z"),  # any input offset
    ],
)
def test_next_expected_is_strictly_after_the_reference(after: str, expected: str) -> None:
    result = next_expected(parse_crontab("*/15 * * * *"), "Europe/Paris", at(after))
    assert result == at(expected)
    assert result.tzinfo is UTC


# -------------------------------------------------------------- DST: spring forward (a gap)


@pytest.mark.parametrize(
    ("expression", "tz", "after", "until", "expected"),
    [
        pytest.param(
            "30 2 * * *", "America/New_York", "2026-03-07T12:00-05:00", "2026-03-09T12:00-04:00",
            ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"], id="new-york",
        ),
        pytest.param(
            "0,20,40 2 * * *", "America/New_York", "2026-03-08T00:00-05:00",
            "2026-03-08T12:00-04:00", ["2026-03-08T03:00-04:00"], id="new-york-coalesced",
        ),
        pytest.param(
            "30 2,3 * * *", "America/New_York", "2026-03-08T00:00-05:00",
            "2026-03-08T12:00-04:00", ["2026-03-08T03:00-04:00", "2026-03-08T03:30-04:00"],
            id="new-york-then-next-hour",
        ),
        pytest.param(
            "30 2 * * *", "Europe/Berlin", "2026-03-28T12:00+01:00", "2026-03-30T12:00+02:00",
            ["2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"], id="berlin",
        ),
        pytest.param(
            "30 1 * * *", "Europe/London", "2026-03-28T12:00Z", "2026-03-29T12:00+01:00",
            ["2026-03-29T02:00+01:00"], id="london",
        ),
        pytest.param(
            "15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00+10:30",
            "2026-10-05T12:00+11:00", ["2026-10-04T02:30+11:00", "2026-10-05T02:15+11:00"],
            id="lord-howe-half-hour",
        ),
        pytest.param(
            "0,15,30,45 2 * * *", "Australia/Lord_Howe", "2026-10-04T00:00+10:30",
            "2026-10-04T12:00+11:00", ["2026-10-04T02:30+11:00", "2026-10-04T02:45+11:00"],
            id="lord-howe-coalesced-with-existing-time",
        ),
        pytest.param(
            "30 2 * * *", "Australia/Sydney", "2026-10-03T12:00+10:00", "2026-10-04T12:00+11:00",
            ["2026-10-04T03:00+11:00"], id="sydney",
        ),
        pytest.param(
            "@daily", "America/Santiago", "2026-09-05T12:00-04:00", "2026-09-07T12:00-03:00",
            ["2026-09-06T01:00-03:00", "2026-09-07T00:00-03:00"], id="santiago-midnight",
        ),
    ],
)
def test_it_fires_a_skipped_fixed_time_at_the_end_of_the_gap(
    expression: str, tz: str, after: str, until: str, expected: list[str]
) -> None:
    assert times(expression, tz, after, until) == [at(t) for t in expected]


@pytest.mark.parametrize(
    ("expression", "tz", "after", "until", "expected"),
    [
        pytest.param(
            "*/30 * * * *", "America/New_York", "2026-03-08T01:00-05:00",
            "2026-03-08T03:30-04:00",
            ["2026-03-08T01:30-05:00", "2026-03-08T03:00-04:00", "2026-03-08T03:30-04:00"],
            id="new-york-every-30-minutes",
        ),
        pytest.param(
            "@hourly", "America/New_York", "2026-03-08T00:30-05:00", "2026-03-08T04:00-04:00",
            ["2026-03-08T01:00-05:00", "2026-03-08T03:00-04:00", "2026-03-08T04:00-04:00"],
            id="new-york-hourly",
        ),
        pytest.param(
            "*/20 2 * * *", "America/New_York", "2026-03-08T00:00-05:00",
            "2026-03-09T02:20-04:00", ["2026-03-09T02:00-04:00", "2026-03-09T02:20-04:00"],
            id="new-york-wildcard-minute-in-the-skipped-hour",
        ),
        pytest.param(
            "15,45 * * * *", "Europe/Berlin", "2026-03-29T01:30+01:00", "2026-03-29T03:30+02:00",
            ["2026-03-29T01:45+01:00", "2026-03-29T03:15+02:00"], id="berlin",
        ),
        pytest.param(
            "*/15 * * * *", "Australia/Lord_Howe", "2026-10-04T01:30+10:30",
            "2026-10-04T02:45+11:00",
            ["2026-10-04T01:45+10:30", "2026-10-04T02:30+11:00", "2026-10-04T02:45+11:00"],
            id="lord-howe",
        ),
        pytest.param(
            "*/20 0 * * *", "America/Santiago", "2026-09-05T12:00-04:00",
            "2026-09-07T00:00-03:00", ["2026-09-07T00:00-03:00"], id="santiago",
        ),
    ],
)
def test_it_does_not_fire_a_wildcard_expression_at_nonexistent_local_times(
    expression: str, tz: str, after: str, until: str, expected: list[str]
) -> None:
    assert times(expression, tz, after, until) == [at(t) for t in expected]


# ---------------------------------------------------------- DST: fall back (a repeated hour)


@pytest.mark.parametrize(
    ("expression", "tz", "after", "until", "expected"),
    [
        pytest.param(
            "30 1 * * *", "America/New_York", "2026-10-31T12:00-04:00", "2026-11-02T12:00-05:00",
            ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"], id="new-york",
        ),
        pytest.param(
            "0 1 * * *", "America/New_York", "2026-11-01T01:00-04:00", "2026-11-02T12:00-05:00",
            ["2026-11-02T01:00-05:00"], id="new-york-from-the-first-occurrence",
        ),
        pytest.param(
            "30 2 * * *", "Europe/Berlin", "2026-10-24T12:00+02:00", "2026-10-26T12:00+01:00",
            ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"], id="berlin",
        ),
        pytest.param(
            "45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00+11:00",
            "2026-04-06T12:00+10:30", ["2026-04-05T01:45+11:00", "2026-04-06T01:45+10:30"],
            id="lord-howe-half-hour",
        ),
        pytest.param(
            "30 2 * * *", "Australia/Sydney", "2026-04-04T12:00+11:00", "2026-04-05T12:00+10:00",
            ["2026-04-05T02:30+11:00"], id="sydney",
        ),
        pytest.param(
            "30 23 * * *", "America/Santiago", "2026-04-04T12:00-03:00", "2026-04-05T23:59-04:00",
            ["2026-04-04T23:30-03:00", "2026-04-05T23:30-04:00"], id="santiago-before-midnight",
        ),
    ],
)
def test_it_fires_a_repeated_fixed_time_once_at_its_first_occurrence(
    expression: str, tz: str, after: str, until: str, expected: list[str]
) -> None:
    assert times(expression, tz, after, until) == [at(t) for t in expected]


@pytest.mark.parametrize(
    ("expression", "tz", "after", "until", "expected"),
    [
        pytest.param(
            "*/30 * * * *", "America/New_York", "2026-11-01T00:45-04:00",
            "2026-11-01T02:00-05:00",
            [
                "2026-11-01T01:00-04:00", "2026-11-01T01:30-04:00",
                "2026-11-01T01:00-05:00", "2026-11-01T01:30-05:00", "2026-11-01T02:00-05:00",
            ],
            id="new-york-every-30-minutes",
        ),
        pytest.param(
            "0 * * * *", "America/New_York", "2026-11-01T00:30-04:00", "2026-11-01T02:00-05:00",
            ["2026-11-01T01:00-04:00", "2026-11-01T01:00-05:00", "2026-11-01T02:00-05:00"],
            id="new-york-hourly",
        ),
        pytest.param(
            "*/20 1 * * *", "America/New_York", "2026-11-01T00:00-04:00",
            "2026-11-01T03:00-05:00",
            [
                "2026-11-01T01:00-04:00", "2026-11-01T01:20-04:00", "2026-11-01T01:40-04:00",
                "2026-11-01T01:00-05:00", "2026-11-01T01:20-05:00", "2026-11-01T01:40-05:00",
            ],
            id="new-york-wildcard-minute-in-the-repeated-hour",
        ),
        pytest.param(
            "30 * * * *", "Europe/Berlin", "2026-10-25T01:45+02:00", "2026-10-25T03:30+01:00",
            ["2026-10-25T02:30+02:00", "2026-10-25T02:30+01:00", "2026-10-25T03:30+01:00"],
            id="berlin",
        ),
        pytest.param(
            "*/15 * * * *", "Australia/Lord_Howe", "2026-04-05T01:20+11:00",
            "2026-04-05T02:00+10:30",
            [
                "2026-04-05T01:30+11:00", "2026-04-05T01:45+11:00",
                "2026-04-05T01:30+10:30", "2026-04-05T01:45+10:30", "2026-04-05T02:00+10:30",
            ],
            id="lord-howe-half-hour",
        ),
        pytest.param(
            "0 * * * *", "America/Santiago", "2026-04-04T22:30-03:00", "2026-04-05T00:00-04:00",
            ["2026-04-04T23:00-03:00", "2026-04-04T23:00-04:00", "2026-04-05T00:00-04:00"],
            id="santiago-before-midnight",
        ),
    ],
)
def test_it_fires_a_wildcard_expression_at_every_real_occurrence(
    expression: str, tz: str, after: str, until: str, expected: list[str]
) -> None:
    assert times(expression, tz, after, until) == [at(t) for t in expected]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Inside the first 01:xx: the repeated 01:00 is still ahead.
        ("0 * * * *", "2026-11-01T01:40-04:00", "2026-11-01T01:00-05:00"),
        ("*/15 * * * *", "2026-11-01T01:50-04:00", "2026-11-01T01:00-05:00"),
        # Inside the second 01:xx: a fixed 01:30 already ran today.
        ("30 1 * * *", "2026-11-01T01:10-05:00", "2026-11-02T01:30-05:00"),
        ("30 1 * * *", "2026-11-01T01:40-04:00", "2026-11-02T01:30-05:00"),
        ("0 2 * * *", "2026-11-01T01:40-05:00", "2026-11-01T02:00-05:00"),
    ],
)
def test_next_expected_from_inside_the_repeated_hour_is_strictly_after_it(
    expression: str, after: str, expected: str
) -> None:
    assert next_expected(parse_crontab(expression), "America/New_York", at(after)) == at(expected)


# ------------------------------------------------- clock changes Debian does not compensate


@pytest.mark.parametrize(
    ("expression", "tz", "after", "until", "expected"),
    [
        pytest.param(
            # 2022-10-02 00:01 +08 jumped to 03:01 +11: a 3-hour change is a "correction".
            "30 1 * * *", "Antarctica/Casey", "2022-10-01T12:00+08:00", "2022-10-03T12:00+11:00",
            ["2022-10-03T01:30+11:00"], id="casey-3h-forward-loses-the-skipped-time",
        ),
        pytest.param(
            # Samoa skipped 2011-12-30 entirely.
            "0 12 * * *", "Pacific/Apia", "2011-12-29T00:00-10:00", "2011-12-31T23:00+14:00",
            ["2011-12-29T12:00-10:00", "2011-12-31T12:00+14:00"], id="apia-skipped-day",
        ),
        pytest.param(
            # 1994-02-01 00:00 +07 fell back to 1994-01-31 17:00 +00.
            "0 20 * * *", "Antarctica/Vostok", "1994-01-31T12:00+07:00",
            "1994-02-01T21:00+00:00",
            ["1994-01-31T20:00+07:00", "1994-01-31T20:00+00:00", "1994-02-01T20:00+00:00"],
            id="vostok-7h-back-repeats-fixed-times",
        ),
        pytest.param(
            # LMT -0:01:15 to GMT: a jump of under 5 minutes runs skipped wildcard times too.
            "* * * * *", "Europe/London", "1847-12-01T00:00Z", "1847-12-01T00:03Z",
            ["1847-12-01T00:00:15Z", "1847-12-01T00:01:15Z", "1847-12-01T00:02Z",
             "1847-12-01T00:03Z"],
            id="london-1847-small-jump",
        ),
    ],
)
def test_it_treats_clock_changes_like_debian_cron_outside_the_dst_range(
    expression: str, tz: str, after: str, until: str, expected: list[str]
) -> None:
    assert times(expression, tz, after, until) == [at(t) for t in expected]


# ---------------------------------------------- cross-check against a model of Debian cron


def debian_cron_fire_times(
    expression: str, tz: str, after: datetime, until: datetime
) -> list[datetime]:
    """Brute-force model of Debian cron's main loop (cron.c), one real minute at a time.

    ``virtual`` is cron's virtualTime and ``running`` its timeRunning, both in local
    wall-clock minutes; a job fires at the real minute in which find_jobs selects it.
    Field matching reuses the module's parser; only the DST handling is modelled here.
    """
    crontab, zone, epoch = compile_crontab(expression), ZoneInfo(tz), datetime(1970, 1, 1)
    fired: list[datetime] = []

    def wall_minutes(moment: datetime) -> int:
        return (moment.astimezone(zone).replace(tzinfo=None) - epoch) // timedelta(minutes=1)

    def selects(minutes: int, wild: bool, fixed: bool) -> bool:
        wall = epoch + timedelta(minutes=minutes)
        length = ((wall.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
        return (
            (wild if crontab.wildcard else fixed)
            and wall.minute in crontab.minutes
            and wall.hour in crontab.hours
            and wall.month in crontab.months
            and day_matches(crontab, wall.day, length, wall.isoweekday() % 7)
        )

    moment = after
    virtual = wall_minutes(moment)
    while (moment := moment + timedelta(minutes=1)) <= until:
        running = wall_minutes(moment)
        diff, selected = running - virtual, []
        if diff == 1 or not -180 <= diff <= 180:  # normal tick, or a clock "correction"
            virtual = running
            selected.append(selects(running, True, True))
        elif diff > 5:  # DST begins: wildcard jobs now, fixed jobs of each skipped minute
            selected.append(selects(running, True, False))
            while virtual < running:
                virtual += 1
                selected.append(selects(virtual, False, True))
        elif diff > 0:  # woke up late: run every missed minute
            while virtual < running:
                virtual += 1
                selected.append(selects(virtual, True, True))
        else:  # DST ends: wildcard jobs only until the real clock catches up
            selected.append(selects(running, True, False))
        if any(selected):
            fired.append(moment)
    return fired


TRANSITIONS = [
    ("America/New_York", "2026-03-08T07:00Z"),
    ("America/New_York", "2026-11-01T06:00Z"),
    ("Europe/Berlin", "2026-03-29T01:00Z"),
    ("Europe/Berlin", "2026-10-25T01:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30Z"),
    ("Australia/Sydney", "2026-04-04T16:00Z"),
    ("America/Santiago", "2026-04-05T03:00Z"),
    ("America/Santiago", "2026-09-06T04:00Z"),
    ("Antarctica/Troll", "2026-03-29T01:00Z"),  # +00 to +02
    ("Antarctica/Troll", "2026-10-25T01:00Z"),
    ("Antarctica/Casey", "2022-10-01T16:01Z"),  # +08 to +11
    ("Pacific/Apia", "2011-12-30T10:00Z"),  # skipped a whole day
    ("Antarctica/Vostok", "1994-01-31T17:00Z"),  # +07 to +00
]
EXPRESSIONS = [
    "* * * * *", "*/7 * * * *", "0 * * * *", "30 * * * *", "*/10 1,2 * * *",
    "0 0 * * *", "30 1 * * *", "30 2 * * *", "0,15,30,45 0-3 * * *", "59 1 * * *",
    "0 2,3 * * *", "45 23 * * *", "0-59 2 * * *",
]


@pytest.mark.parametrize(("tz", "transition"), TRANSITIONS)
def test_it_agrees_with_a_minute_by_minute_model_of_debian_cron(tz: str, transition: str) -> None:
    after = at(transition) - timedelta(hours=26)
    until = at(transition) + timedelta(hours=26)
    for expression in EXPRESSIONS:
        expected = debian_cron_fire_times(expression, tz, after, until)
        assert times(expression, tz, after.isoformat(), until.isoformat()) == expected, expression


# ------------------------------------------------- why we do not use croniter 5.0.1 for this


@pytest.mark.parametrize(
    ("expression", "tz", "after", "croniter_says", "cron_says"),
    [
        pytest.param(
            "30 2 * * *", "America/New_York", "2026-03-08T00:00-05:00",
            "2026-03-08T07:30Z", "2026-03-08T07:00Z", id="skipped-time-fires-late",
        ),
        pytest.param(
            "0 * * * *", "America/New_York", "2026-11-01T01:00-04:00",
            "2026-11-01T07:00Z", "2026-11-01T06:00Z", id="repeated-hour-dropped",
        ),
        pytest.param(
            "30 1 * * *", "America/New_York", "2026-11-01T01:45-04:00",
            "2026-11-02T07:30Z", "2026-11-02T06:30Z", id="day-after-fall-back-an-hour-late",
        ),
        pytest.param(
            "15 2 * * *", "Australia/Lord_Howe", "2026-10-04T01:30+10:30",
            "2026-10-03T15:45Z", "2026-10-03T15:30Z", id="half-hour-gap-fires-late",
        ),
    ],
)
def test_croniter_5_0_1_disagrees_with_debian_cron_across_dst(
    expression: str, tz: str, after: str, croniter_says: str, cron_says: str
) -> None:
    start = at(after).astimezone(ZoneInfo(tz))
    croniter_next = croniter(expression, start).get_next(datetime).astimezone(UTC)
    ours = next_expected(parse_crontab(expression), tz, at(after))
    assert croniter_next == at(croniter_says)
    assert ours == at(cron_says)
    assert croniter_next != ours


# ---------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    ("value", "unit", "after", "expected"),
    [
        (5, "minute", "2026-05-04T10:07:42.5Z", "2026-05-04T10:12Z"),
        (2, "hour", "2026-05-04T10:07:42Z", "2026-05-04T12:07Z"),
        (1, "day", "2026-05-04T10:07Z", "2026-05-05T10:07Z"),
        (2, "week", "2026-05-04T10:07Z", "2026-05-18T10:07Z"),
        (1, "month", "2026-05-04T10:07Z", "2026-06-04T10:07Z"),
        (1, "month", "2026-01-31T10:07Z", "2026-02-28T10:07Z"),
        (1, "month", "2028-01-31T10:07Z", "2028-02-29T10:07Z"),
        (3, "month", "2026-11-30T00:00Z", "2027-02-28T00:00Z"),
        (14, "month", "2026-12-31T00:00Z", "2028-02-29T00:00Z"),
        (1, "year", "2028-02-29T06:00Z", "2029-02-28T06:00Z"),
        (4, "year", "2028-02-29T06:00Z", "2032-02-29T06:00Z"),
        # Reference given in another offset: the arithmetic is done in UTC.
        (1, "day", "2026-05-04T23:30+02:00", "2026-05-05T21:30Z"),
    ],
)
def test_an_interval_adds_calendar_units_to_the_reference_floored_to_the_minute(
    value: int, unit: str, after: str, expected: str
) -> None:
    schedule = IntervalSchedule(value, unit)  # type: ignore[arg-type]
    assert next_expected(schedule, "UTC", at(after)) == at(expected)


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Australia/Lord_Howe"])
def test_an_interval_ignores_the_timezone_and_dst(tz: str) -> None:
    # 24 real hours across New York's spring-forward night, whatever the zone.
    schedule = IntervalSchedule(1, "day")
    assert next_expected(schedule, tz, at("2026-03-07T12:00Z")) == at("2026-03-08T12:00Z")


def test_an_interval_is_strictly_after_a_reference_on_the_minute() -> None:
    schedule = IntervalSchedule(1, "minute")
    assert next_expected(schedule, "UTC", at("2026-05-04T10:07Z")) == at("2026-05-04T10:08Z")


def test_consecutive_monthly_intervals_chain_from_the_previous_time() -> None:
    # As with relativedelta, a clamped day is not restored: Jan 31, Feb 28, Mar 28.
    schedule = IntervalSchedule(1, "month")
    fired = expected_times(schedule, "UTC", at("2026-01-31T00:00Z"), at("2026-12-31T00:00Z"), 2)
    assert fired == [at("2026-02-28T00:00Z"), at("2026-03-28T00:00Z")]


# ------------------------------------------------------------------------ expected_times


@pytest.mark.parametrize(
    ("schedule", "limit", "expected"),
    [
        (parse_crontab("0 * * * *"), 10, ["11:00", "12:00", "13:00"]),
        (parse_crontab("0 * * * *"), 2, ["11:00", "12:00"]),
        (parse_crontab("0 * * * *"), 0, []),
        (IntervalSchedule(90, "minute"), 10, ["11:30", "13:00"]),
        (IntervalSchedule(30, "minute"), 1, ["10:30"]),
    ],
)
def test_expected_times_lists_times_after_the_start_through_the_end_up_to_the_limit(
    schedule: Schedule, limit: int, expected: list[str]
) -> None:
    # Both bounds are fire times: the start is excluded, the end included.
    fired = expected_times(schedule, "UTC", at("2026-05-04T10:00Z"), at("2026-05-04T13:00Z"), limit)
    assert [t.strftime("%H:%M") for t in fired] == expected


def test_expected_times_is_empty_when_nothing_fires_in_the_window() -> None:
    fired = expected_times(
        parse_crontab("@yearly"), "UTC", at("2026-05-04T00:00Z"), at("2026-12-31T23:59Z"), 10
    )
    assert fired == []


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("schedule", [parse_crontab("@daily"), IntervalSchedule(1, "day")])
def test_it_rejects_a_naive_reference_time(schedule: Schedule) -> None:
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        next_expected(schedule, "UTC", datetime(2026, 5, 4))


def test_it_rejects_an_unknown_timezone() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Mars/Olympus_Mons'"):
        next_expected(parse_crontab("@daily"), "Mars/Olympus_Mons", at("2026-05-04T00:00Z"))


def test_it_reports_when_the_calendar_runs_out() -> None:
    with pytest.raises(ScheduleError, match="schedule does not fire between"):
        next_expected(parse_crontab("0 0 29 2 *"), "UTC", at("9996-03-01T00:00Z"))


# --------------------------------------------------------------------------- efficiency


# No timing assertions here (shared, noisy machines): these only prove the long walks
# end at the right instant; speed is measured in BENCHMARKS.md.
def test_it_computes_100000_consecutive_times_in_order() -> None:
    fired = expected_times(
        parse_crontab("*/5 * * * *"), "America/New_York",
        at("2026-01-01T00:00Z"), at("2028-01-01T00:00Z"), 100_000,
    )
    assert len(fired) == 100_000
    assert all(b - a >= timedelta(minutes=5) for a, b in itertools.pairwise(fired))
    assert fired[0] == at("2026-01-01T00:05Z")


def test_it_walks_820_years_of_leap_days() -> None:
    schedule = parse_crontab("0 0 29 2 *")
    moment = at("2000-01-01T00:00Z")
    for _ in range(200):  # 820 years of leap days: 2100, 2200, ... are not leap years
        moment = next_expected(schedule, "Europe/Berlin", moment)
    assert moment == at("2820-02-28T23:00Z")  # Feb 29 00:00 in Berlin
