"""Database rows to wire models (schemas.api): status names, guids as strings, camelCase."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from api.store import CheckInRow, EnvironmentRow, MonitorRow, ProcessingErrorRow
from schemas.api import (
    CheckIn,
    EnvironmentDetails,
    Incident,
    Monitor,
    MonitorConfigOut,
    MonitorEnvironment,
    ProcessingError,
    ProcessingErrorDetail,
    ProjectRef,
)
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType, api_name


def _enum_name(enum_type: type[CheckInStatus] | type[MonitorStatus], value: int) -> str:
    try:
        return api_name(enum_type(value))
    except ValueError:  # a value from a newer writer: show it rather than fail the page
        return str(value)


def environment(row: EnvironmentRow) -> MonitorEnvironment:
    return MonitorEnvironment(**_environment_fields(row))


def _environment_fields(row: EnvironmentRow) -> dict[str, Any]:
    incident = None
    if row.incident_guid is not None and row.incident_start is not None:
        incident = Incident(id=str(row.incident_guid), starting_timestamp=row.incident_start,
                            resolving_timestamp=row.incident_end)
    return {
        "name": row.environment, "status": _enum_name(MonitorStatus, row.status), "is_muted": row.is_muted,
        "last_check_in": row.last_checkin, "next_check_in": row.next_checkin,
        "next_check_in_latest": row.next_checkin_latest, "date_created": row.date_created,
        "active_incident": incident,
    }


def environment_details(row: EnvironmentRow, recent: Iterable[CheckInRow]) -> EnvironmentDetails:
    return EnvironmentDetails(**_environment_fields(row), recent_check_ins=[checkin(c) for c in recent])


def _config(stored: dict[str, Any]) -> MonitorConfigOut:
    known = {key: stored.get(key) for key in MonitorConfigOut.model_fields}
    return MonitorConfigOut.model_validate(known)


def monitor(row: MonitorRow, environments: Iterable[EnvironmentRow]) -> Monitor:
    environments = list(environments)
    return Monitor(
        id=str(row.guid), slug=row.slug, name=row.name, status=_enum_name(MonitorStatus, row.status),
        config=_config(row.config), date_created=row.date_created,
        project=ProjectRef(id=str(row.project_id), slug=row.project_slug),
        environments=[environment(e) for e in environments],
        is_muted=all(e.is_muted for e in environments) if environments else row.is_muted,
        is_upserting=row.is_upserting,
        alert_channels="all" if row.alert_channels is None else [str(g) for g in row.alert_channels],
    )


def checkin(row: CheckInRow) -> CheckIn:
    return CheckIn(
        id=str(row.guid), environment=row.environment, status=_enum_name(CheckInStatus, row.status),
        duration=row.duration_ms, date_created=row.date_added, date_added=row.date_added,
        date_updated=row.date_updated, expected_time=row.expected_time, monitor_config=row.monitor_config,
        has_attachment=row.has_attachment, date_in_progress=row.date_in_progress, date_clock=row.date_clock,
    )


def _error_name(value: int) -> str:
    try:
        return api_name(ProcessingErrorType(value))
    except ValueError:
        return str(value)


def processing_error(row: ProcessingErrorRow) -> ProcessingError:
    return ProcessingError(
        id=str(row.guid), project_id=None if row.project_id is None else str(row.project_id),
        monitor_id=None if row.monitor_guid is None else str(row.monitor_guid), checkin=row.checkin,
        errors=[ProcessingErrorDetail(type=row.type, name=_error_name(row.type), reason=row.reason)],
        date_added=row.date_added,
    )


def content_disposition(filename: str) -> str:
    """``attachment; filename="..."``, plus an RFC 5987 ``filename*`` when the name is not plain ASCII.

    Quotes, backslashes and control characters never reach the plain form, so a stored
    name cannot break out of the header.
    """
    plain = "".join(c for c in filename if c.isascii() and c.isprintable() and c not in '"\\') or "attachment"
    if plain == filename:
        return f'attachment; filename="{plain}"'
    return f"attachment; filename=\"{plain}\"; filename*=utf-8''{quote(filename, safe='')}"
