"""Monitor configuration: parsed from check-in upserts, stored as JSON, shown by the API.

:func:`parse_monitor_config` reads what producers send (the ``monitor_config`` of a
check-in payload), with the shapes and limits of Sentry's ``ConfigValidator``:

* ``{"schedule": {"type": "crontab", "value": "0 * * * *"}}``
* ``{"schedule": {"type": "interval", "value": 2, "unit": "hour"}}``
* ``{"schedule_type": "crontab", "schedule": "0 * * * *"}``
* ``{"schedule_type": "interval", "schedule": [2, "hour"]}``

plus ``checkin_margin`` / ``max_runtime`` (minutes), ``timezone`` (IANA) and the two
incident thresholds. A schedule without any type is rejected, as Sentry does. Unknown
keys (``owner``, ``alert_rule_id``, ...) are ignored.

:func:`config_to_json` / :func:`config_from_json` are the stored and API form
(``monitors.config``): ``schedule_type`` is ``"crontab"``/``"interval"`` and ``schedule``
is the crontab string or ``[value, unit]``, as Sentry's API shows them.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.enums import ScheduleType
from schemas.limits import MAX_INTEGER_TEXT_LENGTH, excerpt, storable_text
from schemas.schedule import CrontabSchedule, IntervalSchedule, ScheduleError, parse_crontab
from schemas.wire_fields import describe_validation_error

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_CHECKIN_MARGIN",
    "DEFAULT_MAX_RUNTIME",
    "DEFAULT_TIMEZONE",
    "INTERVAL_UNITS",
    "MAX_CHECKIN_MARGIN",
    "MAX_MAX_RUNTIME",
    "MAX_THRESHOLD",
    "ConfigError",
    "MonitorConfig",
    "config_from_json",
    "config_to_json",
    "merge_config",
    "parse_monitor_config",
]

# Limits and defaults of Sentry's monitors/constants.py.
DEFAULT_CHECKIN_MARGIN: Final = 1
DEFAULT_MAX_RUNTIME: Final = 30
MAX_CHECKIN_MARGIN: Final = 40_320  # 28 days, in minutes
MAX_MAX_RUNTIME: Final = 40_320
MAX_THRESHOLD: Final = 720
DEFAULT_TIMEZONE: Final = "UTC"

#: The fields that make up a config's value (equality, hashing, merging an update).
_VALUE_FIELDS: Final = (
    "schedule",
    "checkin_margin",
    "max_runtime",
    "timezone",
    "failure_issue_threshold",
    "recovery_threshold",
)
#: Every key of the stored form; what ``present_keys`` holds for a complete config.
CONFIG_KEYS: Final = frozenset({"schedule_type", *_VALUE_FIELDS})
#: Interval units, as in Sentry's validators (and DESIGN.md).
INTERVAL_UNITS: Final = ("minute", "hour", "day", "week", "month", "year")
# Sentry always replaces both schedule keys on an upsert, whatever else was sent.
_ALWAYS_PRESENT: Final = frozenset({"schedule_type", "schedule"})
_INTEGER_TEXT = re.compile(r"\s*[-+]?\d+\s*")
# Sentry's stored configs use integers for the schedule type.
_SENTRY_SCHEDULE_TYPES: Final = {1: ScheduleType.CRONTAB, 2: ScheduleType.INTERVAL}


class ConfigError(ValueError):
    """An invalid monitor config; ``str(error)`` / ``.reason`` is ``"<field>: <problem>"``."""

    def __init__(self, reason: str) -> None:
        reason = storable_text(reason)  # quotes client input; stored as text
        super().__init__(reason)
        self.reason = reason


@functools.cache
def _iana_zones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk: do it once per process.
    return frozenset(zoneinfo.available_timezones())


Schedule = CrontabSchedule | IntervalSchedule


class MonitorConfig(BaseModel):
    """A valid monitor configuration.

    ``None`` for ``checkin_margin`` / ``max_runtime`` means "the default" (see the
    ``effective_*`` properties); ``None`` thresholds mean "1". ``present_keys`` names the
    keys the producer actually sent, so an upsert touches only those (:func:`merge_config`);
    it takes no part in equality.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    schedule: Schedule
    checkin_margin: Annotated[int, Field(strict=True, ge=1, le=MAX_CHECKIN_MARGIN)] | None = None
    max_runtime: Annotated[int, Field(strict=True, ge=1, le=MAX_MAX_RUNTIME)] | None = None
    timezone: str = DEFAULT_TIMEZONE
    failure_issue_threshold: Annotated[int, Field(strict=True, ge=1, le=MAX_THRESHOLD)] | None = None
    recovery_threshold: Annotated[int, Field(strict=True, ge=1, le=MAX_THRESHOLD)] | None = None
    present_keys: frozenset[str] = Field(default=CONFIG_KEYS, exclude=True, repr=False)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        if name not in _iana_zones():
            raise ValueError(f"unknown timezone {name!r}")
        return name

    @property
    def schedule_type(self) -> ScheduleType:
        """CRONTAB or INTERVAL, from the schedule's type (never stored apart from it)."""
        return ScheduleType.CRONTAB if isinstance(self.schedule, CrontabSchedule) else ScheduleType.INTERVAL

    @property
    def effective_checkin_margin(self) -> int:
        """Minutes after the expected time before a check-in counts as missed."""
        return self.checkin_margin if self.checkin_margin is not None else DEFAULT_CHECKIN_MARGIN

    @property
    def effective_max_runtime(self) -> int:
        """Minutes an IN_PROGRESS check-in may run before it times out."""
        return self.max_runtime if self.max_runtime is not None else DEFAULT_MAX_RUNTIME

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, key) for key in _VALUE_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MonitorConfig):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())


# --------------------------------------------------------------------------- parsing


def parse_monitor_config(raw: Mapping[str, Any]) -> MonitorConfig:
    """Validate a producer's ``monitor_config``.

    Returns the config with ``present_keys`` = the known keys that were sent (both
    schedule keys always count as sent). Raises :class:`ConfigError` with a specific
    reason, e.g. ``"schedule: field required"``, ``"checkin_margin: must be between 1
    and 40320, got 40321"``, ``"timezone: unknown timezone 'Mars/Olympus'"``.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("monitor_config: must be an object")
    schedule = _read_schedule(raw)
    values: dict[str, Any] = {}
    for key, read in _FIELD_READERS.items():
        if key in raw:
            values[key] = read(raw[key])
    if values.get("timezone") is None:
        # Blank or null timezone: treated as not sent (Sentry drops a blank one).
        values.pop("timezone", None)
    present = _ALWAYS_PRESENT | values.keys()
    return _build(schedule=schedule, present_keys=frozenset(present), **values)


def _build(**fields: Any) -> MonitorConfig:
    """Construct the model; its own checks are a backstop, reported as ConfigError."""
    try:
        return MonitorConfig(**fields)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def _read_schedule(raw: Mapping[str, Any]) -> Schedule:
    """The schedule in any of Sentry's shapes; raises ConfigError."""
    schedule = raw.get("schedule")
    if schedule is None or schedule == "" or schedule == [] or schedule == {}:
        raise ConfigError("schedule: field required")
    if _schedule_type(raw, schedule) is ScheduleType.CRONTAB:
        return _read_crontab(schedule)
    return _read_interval(schedule)


def _schedule_type(raw: Mapping[str, Any], schedule: object) -> ScheduleType:
    """The ``type`` inside an object schedule wins over ``schedule_type``, as in Sentry."""
    if isinstance(schedule, Mapping) and schedule.get("type"):
        return _schedule_type_named(schedule["type"], "schedule.type")
    if raw.get("schedule_type"):
        return _schedule_type_named(raw["schedule_type"], "schedule_type")
    raise ConfigError("schedule_type: field required (or give schedule as {\"type\": ...})")


def _schedule_type_named(name: object, where: str) -> ScheduleType:
    for member in ScheduleType:
        if name == member.value:
            return member
    raise ConfigError(f"{where}: must be 'crontab' or 'interval', not {excerpt(name)}")


def _read_crontab(schedule: object) -> CrontabSchedule:
    """A crontab string (or ``{"value": str}``); raises ConfigError with the parser's reason."""
    expression = schedule.get("value") if isinstance(schedule, Mapping) else schedule
    if not isinstance(expression, str):
        raise ConfigError("schedule: crontab must be a string")
    try:
        return parse_crontab(expression)
    except ScheduleError as exc:
        raise ConfigError(f"schedule: {exc}") from None


def _read_interval(schedule: object) -> IntervalSchedule:
    """``[value, unit]`` (or ``{"value", "unit"}``); raises ConfigError."""
    if isinstance(schedule, Mapping):
        schedule = [schedule.get("value"), schedule.get("unit")]
    if not isinstance(schedule, list | tuple) or len(schedule) != 2:
        raise ConfigError("schedule: interval must be [value, unit]")
    value, unit = schedule
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"schedule: interval value must be an integer, not {excerpt(value)}")
    if value <= 0:
        raise ConfigError("schedule: interval value must be greater than zero")
    if unit not in INTERVAL_UNITS:
        raise ConfigError(f"schedule: unknown interval unit {excerpt(unit)}")
    try:
        return IntervalSchedule(value, unit)
    except ScheduleError as exc:
        raise ConfigError(f"schedule: {exc}") from None


def _read_integer(key: str, value: object) -> int | None:
    """An integer as Sentry's EmptyIntegerField reads it: null or "" is None, "5" and 5.0
    are 5, a bool or a fraction is an error."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= MAX_INTEGER_TEXT_LENGTH and _INTEGER_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be an integer, not {excerpt(value)}")
    return value



def _read_bounded(key: str, value: object, high: int) -> int | None:
    """An optional integer in 1..high; raises ConfigError."""
    number = _read_integer(key, value)
    if number is not None and not 1 <= number <= high:
        raise ConfigError(f"{key}: must be between 1 and {high}, got {number}")
    return number


def _read_checkin_margin(value: object) -> int | None:
    # Sentry raised the minimum from 0 to 1 but still accepts 0 from old SDKs, as 1.
    number = _read_integer("checkin_margin", value)
    return _read_bounded("checkin_margin", 1 if number == 0 else number, MAX_CHECKIN_MARGIN)


def _read_timezone(value: object) -> str | None:
    """An IANA timezone name; None for null or blank (meaning "not sent")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"timezone: must be a string, not {excerpt(value)}")
    if value not in _iana_zones():
        raise ConfigError(f"timezone: unknown timezone {value[:64]!r}")
    return value


_FIELD_READERS: Final[dict[str, Callable[[object], object]]] = {
    "checkin_margin": _read_checkin_margin,
    "max_runtime": lambda value: _read_bounded("max_runtime", value, MAX_MAX_RUNTIME),
    "timezone": _read_timezone,
    "failure_issue_threshold": lambda value: _read_bounded("failure_issue_threshold", value, MAX_THRESHOLD),
    "recovery_threshold": lambda value: _read_bounded("recovery_threshold", value, MAX_THRESHOLD),
}


# --------------------------------------------------------------------------- stored form


def merge_config(existing: MonitorConfig, update: MonitorConfig) -> MonitorConfig:
    """Apply an upsert to an existing monitor's config: only ``update.present_keys``
    change (the schedule always does), as Sentry's ``Monitor.update_config``."""
    changed: dict[str, Any] = {key: getattr(update, key) for key in _VALUE_FIELDS if key in update.present_keys}
    changed["schedule"] = update.schedule
    return existing.model_copy(update={**changed, "present_keys": CONFIG_KEYS})


def config_to_json(config: MonitorConfig) -> dict[str, Any]:
    """The stored / API form: every key present, ``None`` where unset."""
    schedule = config.schedule
    return {
        "schedule_type": config.schedule_type.value,
        "schedule": (
            schedule.expression if isinstance(schedule, CrontabSchedule) else [schedule.value, schedule.unit]
        ),
        "checkin_margin": config.checkin_margin,
        "max_runtime": config.max_runtime,
        "timezone": config.timezone,
        "failure_issue_threshold": config.failure_issue_threshold,
        "recovery_threshold": config.recovery_threshold,
    }


def config_from_json(stored: Mapping[str, Any]) -> MonitorConfig:
    """Read the stored form back (also Sentry's, with an integer ``schedule_type``).

    The result counts as complete (``present_keys`` = :data:`CONFIG_KEYS`).
    Raises :class:`ConfigError` if the stored data is not a valid config.
    """
    data = dict(stored)
    if data.get("schedule_type") in _SENTRY_SCHEDULE_TYPES:
        data["schedule_type"] = _SENTRY_SCHEDULE_TYPES[data["schedule_type"]].value
    return parse_monitor_config(data).model_copy(update={"present_keys": CONFIG_KEYS})
