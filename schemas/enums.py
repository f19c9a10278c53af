"""Status and kind enums shared by every cronpipe service.

The integer values are part of the contract: they are stored in PostgreSQL and match
Sentry's (``sentry.monitors.models`` and ``processing_errors/errors.py``), so data and
dashboards can be compared side by side. API responses use the lower-case names.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import TypeVar


class CheckInStatus(IntEnum):
    """Status of one check-in (one run of a job)."""

    UNKNOWN = 0
    OK = 1
    ERROR = 2
    IN_PROGRESS = 3
    MISSED = 4
    TIMEOUT = 5


class MonitorStatus(IntEnum):
    """Status of one monitor environment.

    ACTIVE means "no result yet"; ERROR means an incident is open. Values 2 and 3 are
    Sentry's deletion states, which cronpipe does not use, hence the gap.
    """

    ACTIVE = 0
    DISABLED = 1
    OK = 4
    ERROR = 5


class ProcessingErrorType(IntEnum):
    """Why a well-formed check-in was rejected; values as in Sentry's errors.py."""

    CHECKIN_ENVIRONMENT_MISMATCH = 0
    CHECKIN_FINISHED = 1
    CHECKIN_GUID_PROJECT_MISMATCH = 2
    CHECKIN_INVALID_DURATION = 3
    CHECKIN_INVALID_GUID = 4
    CHECKIN_VALIDATION_FAILED = 5
    MONITOR_DISABLED = 6
    MONITOR_DISABLED_NO_QUOTA = 7
    MONITOR_INVALID_CONFIG = 8
    MONITOR_INVALID_ENVIRONMENT = 9
    MONITOR_LIMIT_EXCEEDED = 10
    MONITOR_NOT_FOUND = 11
    MONITOR_OVER_QUOTA = 12
    MONITOR_ENVIRONMENT_LIMIT_EXCEEDED = 13
    MONITOR_ENVIRONMENT_RATELIMITED = 14
    ORGANIZATION_KILLSWITCH_ENABLED = 15
    # Added later by Sentry; kept so stored values never collide if owners come.
    MONITOR_INVALID_OWNER = 16


class ScheduleType(StrEnum):
    """How a monitor's schedule is expressed; the value is the API and JSON name."""

    CRONTAB = "crontab"
    INTERVAL = "interval"


#: Statuses that count as a failure for incident thresholds.
FAILED_CHECKIN_STATUSES: frozenset[CheckInStatus] = frozenset(
    {CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT}
)

#: Terminal statuses: a check-in in one of these is finished.
FINISHED_CHECKIN_STATUSES: frozenset[CheckInStatus] = frozenset(
    {CheckInStatus.OK, CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT}
)

#: Terminal statuses a job reports itself (the others are synthesized by the clock).
USER_TERMINAL_CHECKIN_STATUSES: frozenset[CheckInStatus] = frozenset(
    {CheckInStatus.OK, CheckInStatus.ERROR}
)

#: The only statuses a producer may send in a check-in payload.
INGEST_CHECKIN_STATUSES: frozenset[CheckInStatus] = frozenset(
    {CheckInStatus.IN_PROGRESS, CheckInStatus.OK, CheckInStatus.ERROR}
)

_E = TypeVar("_E", CheckInStatus, MonitorStatus, ProcessingErrorType)


def api_name(status: CheckInStatus | MonitorStatus | ProcessingErrorType) -> str:
    """Return the lower-case API name of ``status`` (``CheckInStatus.IN_PROGRESS`` → ``"in_progress"``)."""
    return status.name.lower()


def parse_api_name(enum_type: type[_E], name: str) -> _E:
    """Return the member of ``enum_type`` whose API name is ``name``.

    Exact match only (``"OK"`` is not ``"ok"``), as in Sentry's choice fields.
    Raises ValueError naming the accepted values.
    """
    member = enum_type.__members__.get(name.upper()) if name.islower() else None
    if member is None:
        accepted = ", ".join(api_name(m) for m in enum_type)
        raise ValueError(f"unknown {enum_type.__name__} {name!r}; expected one of {accepted}")
    return member


def parse_check_in_status(name: str) -> CheckInStatus:
    """Parse a check-in status API name; raises ValueError when unknown."""
    return parse_api_name(CheckInStatus, name)


def parse_monitor_status(name: str) -> MonitorStatus:
    """Parse a monitor environment status API name; raises ValueError when unknown."""
    return parse_api_name(MonitorStatus, name)
