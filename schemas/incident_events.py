"""Incident events: the value of the ``monitors-incidents`` topic (JSON, version 1).

One event per incident change, written to the outbox in the transaction that made the
change (``consumers/incidents/outbox.py``) and published by the relay; key: the monitor
environment id, so one environment's events stay in order. ``event_id`` is fixed when the
outbox row is written, so every redelivery of an event carries the same id.

Field names follow Sentry's ``monitors-incident-occurrences`` (sentry-kafka-schemas) where
they mean the same thing: ``incident_id``, ``failed_checkin_id`` (the check-in that caused
this event), ``previous_checkin_ids`` (the earlier failing check-ins of the run),
``clock_tick_ts`` and ``received_ts``. Ids are the public ones (guids), as the read API
shows them. The JSON schema is ``schemas/monitors-incidents.v1.schema.json``; golden
examples are ``schemas/examples/incident_*.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer

from schemas.enums import CheckInStatus

__all__ = [
    "EVENT_TYPES",
    "EventType",
    "FailingCheckIn",
    "IncidentEvent",
    "IncidentEventError",
    "complete_event",
    "decode_incident_event",
    "failure_reason",
]

EventType = Literal["opened", "failure", "resolved"]
EVENT_TYPES: tuple[EventType, ...] = ("opened", "failure", "resolved")

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Ref(BaseModel):
    model_config = _STRICT
    id: int
    slug: str


class MonitorRef(BaseModel):
    model_config = _STRICT
    id: UUID
    slug: str
    name: str


class FailingCheckIn(BaseModel):
    model_config = _STRICT
    id: UUID
    status: Literal["error", "missed", "timeout"]
    date_added: datetime
    expected_time: datetime | None


    @field_serializer("date_added", "expected_time")
    def _utc(self, value: datetime | None) -> str | None:
        return None if value is None else _iso(value)


class OkCheckIn(BaseModel):
    model_config = _STRICT
    id: UUID
    date_added: datetime

    @field_serializer("date_added")
    def _utc(self, value: datetime) -> str:
        return _iso(value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class IncidentEvent(BaseModel):
    """One ``monitors-incidents`` value. Times are ISO 8601 UTC, ``*_ts`` unix seconds."""

    model_config = _STRICT

    version: Literal[1] = 1
    event_id: UUID
    type: EventType
    incident_id: UUID
    organization: Ref
    project: Ref
    monitor: MonitorRef
    environment: str
    monitor_environment_id: int
    starting_timestamp: datetime
    resolving_timestamp: datetime | None
    failed_checkin_id: UUID | None
    previous_checkin_ids: list[UUID]
    failing_checkins: list[FailingCheckIn]
    last_ok_checkin: OkCheckIn | None
    reason: str
    is_muted: bool
    clock_tick_ts: float | None
    received_ts: float | None
    #: When the transaction that wrote the event started (commit→delivery latency).
    date_created: datetime

    @field_serializer("starting_timestamp", "resolving_timestamp", "date_created")
    def _utc(self, value: datetime | None) -> str | None:
        return None if value is None else _iso(value)

    def to_json(self) -> bytes:
        """The wire form (compact JSON, times in UTC)."""
        return self.model_dump_json().encode()


class IncidentEventError(ValueError):
    """A ``monitors-incidents`` value that is not a valid event; the message says why."""


def decode_incident_event(raw: bytes | str | dict[str, Any]) -> IncidentEvent:
    """Parse and validate one event; raises IncidentEventError with the first problem."""
    try:
        if isinstance(raw, dict):
            return IncidentEvent.model_validate(raw)
        return IncidentEvent.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise IncidentEventError(f"invalid incident event: {where}: {first['msg']}") from None


_ONE = {
    CheckInStatus.ERROR: "An error check-in was detected",
    CheckInStatus.MISSED: "A missed check-in was detected",
    CheckInStatus.TIMEOUT: "A timeout check-in was detected",
}
_NAMES = {CheckInStatus.ERROR: "error", CheckInStatus.MISSED: "missed", CheckInStatus.TIMEOUT: "timeout"}


def failure_reason(statuses: Sequence[CheckInStatus]) -> str:
    """Sentry's evidence text for a run of failing check-ins, counted in first-seen order:
    "A missed check-in was detected", "3 missed check-ins detected",
    "1 error and 2 missed check-ins detected". Non-failures are ignored."""
    counts = Counter(s for s in statuses if s in _NAMES)
    if sum(counts.values()) == 1:
        return _ONE[next(iter(counts))]
    if not counts:
        return "No failing check-ins"
    parts = [f"{n} {_NAMES[s]}" for s, n in counts.items()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} check-ins detected"


def resolved_reason(ok_count: int) -> str:
    """The text of a ``resolved`` event."""
    return "Resolved by an OK check-in" if ok_count <= 1 else f"Resolved by {ok_count} consecutive OK check-ins"


_STATUS = {"error": CheckInStatus.ERROR, "missed": CheckInStatus.MISSED, "timeout": CheckInStatus.TIMEOUT}


def complete_event(draft: dict[str, Any]) -> IncidentEvent:
    """The event from an outbox row's payload: adds ``reason`` and
    ``previous_checkin_ids`` (both derived from the row, so every publication of it is
    identical) and drops the ``recovery_threshold`` helper. Raises IncidentEventError."""
    body = dict(draft)
    recovery = int(body.pop("recovery_threshold", 1) or 1)
    failing = body.get("failing_checkins") or []
    if body.get("type") == "resolved":
        body["reason"] = resolved_reason(recovery)
    else:
        body["reason"] = failure_reason([_STATUS[f["status"]] for f in failing if f.get("status") in _STATUS])
    body["previous_checkin_ids"] = [f["id"] for f in failing if f.get("id") != body.get("failed_checkin_id")]
    return decode_incident_event(body)
