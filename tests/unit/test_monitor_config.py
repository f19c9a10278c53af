"""Monitor config: Sentry's upsert shapes and limits, the stored form, partial updates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.enums import ScheduleType
from schemas.monitor_config import (
    CONFIG_KEYS,
    ConfigError,
    MonitorConfig,
    config_from_json,
    config_to_json,
    merge_config,
    parse_monitor_config,
)
from schemas.schedule import CrontabSchedule, IntervalSchedule

HOURLY = CrontabSchedule("0 * * * *")


def crontab(expression: str = "0 * * * *", /, **fields: Any) -> dict[str, Any]:
    return {"schedule": {"type": "crontab", "value": expression}, **fields}


def config_error(raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_monitor_config(raw)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("raw", "schedule"),
    [
        ({"schedule": {"type": "crontab", "value": "0 * * * *"}}, HOURLY),
        ({"schedule": {"type": "interval", "value": 2, "unit": "hour"}}, IntervalSchedule(2, "hour")),
        ({"schedule_type": "crontab", "schedule": "0 * * * *"}, HOURLY),
        ({"schedule_type": "interval", "schedule": [2, "hour"]}, IntervalSchedule(2, "hour")),
        ({"schedule_type": "crontab", "schedule": {"value": "0 * * * *"}}, HOURLY),
        ({"schedule_type": "interval", "schedule": {"value": 5, "unit": "day"}}, IntervalSchedule(5, "day")),
        # The type inside the schedule object wins over schedule_type, as in Sentry.
        ({"schedule_type": "interval", "schedule": {"type": "crontab", "value": "0 * * * *"}}, HOURLY),
        ({"schedule_type": "crontab", "schedule": "  0   *  * * *  "}, HOURLY),
    ],
)
def test_sentrys_schedule_shapes_are_accepted(raw: dict[str, Any], schedule: object) -> None:
    config = parse_monitor_config(raw)

    assert config.schedule == schedule


@pytest.mark.parametrize("unit", ["minute", "hour", "day", "week", "month", "year"])
def test_every_interval_unit_is_accepted(unit: str) -> None:
    config = parse_monitor_config({"schedule": {"type": "interval", "value": 1, "unit": unit}})

    assert config.schedule == IntervalSchedule(1, unit)  # type: ignore[arg-type]
    assert config.schedule_type is ScheduleType.INTERVAL


@pytest.mark.parametrize("alias", ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
def test_crontab_aliases_are_accepted(alias: str) -> None:
    assert parse_monitor_config(crontab(alias)).schedule_type is ScheduleType.CRONTAB


def test_a_minimal_config_has_documented_defaults() -> None:
    config = parse_monitor_config(crontab())

    assert (config.checkin_margin, config.max_runtime, config.timezone) == (None, None, "UTC")
    assert (config.effective_checkin_margin, config.effective_max_runtime) == (1, 30)
    assert (config.failure_issue_threshold, config.recovery_threshold) == (None, None)


def test_unknown_keys_such_as_owner_are_ignored() -> None:
    config = parse_monitor_config(crontab(owner="team:1", alert_rule_id=4))

    assert config == parse_monitor_config(crontab())
    assert config.present_keys == {"schedule", "schedule_type"}


def test_present_keys_name_what_the_producer_sent() -> None:
    raw = crontab(checkin_margin=5, max_runtime=None, timezone="Europe/Vienna", recovery_threshold=2)

    config = parse_monitor_config(raw)

    assert config.present_keys == {"schedule", "schedule_type", "checkin_margin", "max_runtime", "timezone", "recovery_threshold"}


@pytest.mark.parametrize("timezone", ["", None])
def test_blank_timezone_counts_as_not_sent_and_means_utc(timezone: str | None) -> None:
    config = parse_monitor_config(crontab(timezone=timezone))

    assert config.timezone == "UTC"
    assert "timezone" not in config.present_keys


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Vienna", "America/Los_Angeles", "Asia/Kolkata"])
def test_iana_timezones_are_accepted(timezone: str) -> None:
    assert parse_monitor_config(crontab(timezone=timezone)).timezone == timezone


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("checkin_margin", 0, 1),  # Sentry still accepts 0 from old SDKs, as 1
        ("checkin_margin", 1, 1),
        ("checkin_margin", 40320, 40320),
        ("max_runtime", 1, 1),
        ("max_runtime", 40320, 40320),
        ("failure_issue_threshold", 1, 1),
        ("failure_issue_threshold", 720, 720),
        ("recovery_threshold", 720, 720),
        ("max_runtime", "30", 30),  # Sentry's integer fields read numeric strings
        ("max_runtime", 30.0, 30),
        ("max_runtime", "", None),
        ("max_runtime", None, None),
    ],
)
def test_integer_settings_within_limits_are_stored(key: str, value: object, stored: int | None) -> None:
    assert getattr(parse_monitor_config(crontab(**{key: value})), key) == stored


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("checkin_margin", 40321, "checkin_margin: must be between 1 and 40320, got 40321"),
        ("checkin_margin", -1, "checkin_margin: must be between 1 and 40320, got -1"),
        ("max_runtime", 0, "max_runtime: must be between 1 and 40320, got 0"),
        ("max_runtime", 40321, "max_runtime: must be between 1 and 40320, got 40321"),
        ("failure_issue_threshold", 721, "failure_issue_threshold: must be between 1 and 720, got 721"),
        ("failure_issue_threshold", 0, "failure_issue_threshold: must be between 1 and 720, got 0"),
        ("recovery_threshold", 721, "recovery_threshold: must be between 1 and 720, got 721"),
        ("max_runtime", 1.5, "max_runtime: must be an integer, not 1.5"),
        ("max_runtime", True, "max_runtime: must be an integer, not True"),
        ("max_runtime", "ten", "max_runtime: must be an integer, not 'ten'"),
        ("timezone", "Mars/Olympus_Mons", "timezone: unknown timezone 'Mars/Olympus_Mons'"),
        ("timezone", "utc", "timezone: unknown timezone 'utc'"),
        ("timezone", 3, "timezone: must be a string, not 3"),
    ],
)
def test_settings_out_of_limits_are_rejected(key: str, value: object, reason: str) -> None:
    assert config_error(crontab(**{key: value})) == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({}, "schedule: field required"),
        ({"schedule": ""}, "schedule: field required"),
        ({"schedule": None, "schedule_type": "crontab"}, "schedule: field required"),
        ({"schedule": "0 * * * *"}, 'schedule_type: field required (or give schedule as {"type": ...})'),
        ({"schedule": [1, "hour"]}, 'schedule_type: field required (or give schedule as {"type": ...})'),
        ({"schedule": {"type": "cron", "value": "0 * * * *"}}, "schedule.type: must be 'crontab' or 'interval', not 'cron'"),
        ({"schedule_type": "weekly", "schedule": "0 * * * *"}, "schedule_type: must be 'crontab' or 'interval', not 'weekly'"),
        ({"schedule_type": "crontab", "schedule": 5}, "schedule: crontab must be a string"),
        ({"schedule": {"type": "interval", "value": 0, "unit": "hour"}}, "schedule: interval value must be greater than zero"),
        ({"schedule": {"type": "interval", "value": -2, "unit": "hour"}}, "schedule: interval value must be greater than zero"),
        ({"schedule": {"type": "interval", "value": "2", "unit": "hour"}}, "schedule: interval value must be an integer, not '2'"),
        ({"schedule": {"type": "interval", "value": 1, "unit": "fortnight"}}, "schedule: unknown interval unit 'fortnight'"),
        ({"schedule": {"type": "interval", "value": 1}}, "schedule: unknown interval unit None"),
        ({"schedule_type": "interval", "schedule": [1]}, "schedule: interval must be [value, unit]"),
        ({"schedule_type": "interval", "schedule": "1 hour"}, "schedule: interval must be [value, unit]"),
        (["not", "an", "object"], "monitor_config: must be an object"),
    ],
)
def test_bad_schedules_are_rejected_with_a_specific_reason(raw: Any, reason: str) -> None:
    assert config_error(raw) == reason


@pytest.mark.parametrize(
    ("expression", "mentions"),
    [
        ("0 0 * * * *", "6"),  # seconds field: only 5-field crontabs, as Sentry
        ("@reboot", "@reboot"),
        ("* * 31 2 *", "never"),  # February 31st never comes
        ("61 * * * *", ""),
        ("not a crontab", ""),
    ],
)
def test_unusable_crontabs_are_rejected_with_the_parsers_reason(expression: str, mentions: str) -> None:
    reason = config_error(crontab(expression))

    assert reason.startswith("schedule: ")
    assert mentions in reason


# --------------------------------------------------------------------------- stored form


def test_config_to_json_is_the_stored_and_api_form_for_crontabs() -> None:
    config = parse_monitor_config(crontab("*/5 * * * *", checkin_margin=3, timezone="Europe/Vienna", failure_issue_threshold=2))

    assert config_to_json(config) == {
        "schedule_type": "crontab",
        "schedule": "*/5 * * * *",
        "checkin_margin": 3,
        "max_runtime": None,
        "timezone": "Europe/Vienna",
        "failure_issue_threshold": 2,
        "recovery_threshold": None,
    }


def test_config_to_json_writes_intervals_as_value_and_unit() -> None:
    config = parse_monitor_config({"schedule": {"type": "interval", "value": 2, "unit": "hour"}})

    stored = config_to_json(config)

    assert (stored["schedule_type"], stored["schedule"]) == ("interval", [2, "hour"])


@pytest.mark.parametrize(
    "raw",
    [
        crontab(),
        crontab("30 2 * * 1-5", checkin_margin=0, max_runtime=60, timezone="Asia/Tokyo", recovery_threshold=3),
        {"schedule": {"type": "interval", "value": 10, "unit": "minute"}, "failure_issue_threshold": 720},
    ],
)
def test_stored_form_round_trips(raw: dict[str, Any]) -> None:
    config = parse_monitor_config(raw)

    restored = config_from_json(config_to_json(config))

    assert restored == config
    assert restored.present_keys == CONFIG_KEYS


def test_config_from_json_reads_sentrys_integer_schedule_type() -> None:
    stored = {"schedule_type": 2, "schedule": [1, "day"], "checkin_margin": None, "max_runtime": None, "alert_rule_id": 3}

    assert config_from_json(stored).schedule == IntervalSchedule(1, "day")


def test_config_from_json_rejects_corrupt_stored_data() -> None:
    with pytest.raises(ConfigError, match=r"^max_runtime: "):
        config_from_json({"schedule_type": "crontab", "schedule": "0 * * * *", "max_runtime": 99999})


# --------------------------------------------------------------------------- updates and equality


def test_an_upsert_changes_only_the_keys_it_sends_and_always_the_schedule() -> None:
    existing = parse_monitor_config(crontab(checkin_margin=5, max_runtime=60, timezone="Europe/Vienna"))
    update = parse_monitor_config({"schedule": {"type": "interval", "value": 1, "unit": "day"}, "max_runtime": 90})

    merged = merge_config(existing, update)

    assert merged.schedule == IntervalSchedule(1, "day")
    assert (merged.checkin_margin, merged.max_runtime, merged.timezone) == (5, 90, "Europe/Vienna")
    assert merged.present_keys == CONFIG_KEYS


def test_an_upsert_can_reset_a_setting_to_its_default_with_null() -> None:
    existing = parse_monitor_config(crontab(checkin_margin=5))

    merged = merge_config(existing, parse_monitor_config(crontab(checkin_margin=None)))

    assert merged.checkin_margin is None and merged.effective_checkin_margin == 1


def test_equality_and_hash_ignore_which_keys_were_sent() -> None:
    sparse = parse_monitor_config(crontab())
    full = parse_monitor_config(crontab(checkin_margin=None, timezone="UTC"))

    assert sparse.present_keys != full.present_keys
    assert sparse == full and hash(sparse) == hash(full)
    assert sparse != parse_monitor_config(crontab(checkin_margin=2))


def test_config_is_frozen() -> None:
    config = parse_monitor_config(crontab())

    with pytest.raises(ValidationError):
        config.checkin_margin = 3


@pytest.mark.parametrize(
    "fields",
    [
        {"checkin_margin": 0},
        {"max_runtime": 40321},
        {"failure_issue_threshold": 721},
        {"timezone": "Nowhere/Town"},
    ],
)
def test_the_model_itself_refuses_out_of_range_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MonitorConfig(schedule=HOURLY, **fields)
