"""The clock topics: ``monitors-clock-tick`` and ``monitors-clock-tasks`` (JSON values).

A tick says "every partition of ingest-monitors has passed this minute"; a task is one
decision the tick led to, keyed by monitor environment so tasks of one environment stay
in order. Shapes follow sentry-kafka-schemas (``monitors-clock-tick.v1``,
``monitors-clock-tasks.v1``) with integers where Sentry allows any number.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from schemas.json_object import NotAnObject, load_object
from schemas.messages import MessageDecodeError, validate_tagged
from schemas.wire_fields import describe_validation_error

__all__ = [
    "ClockTask",
    "ClockTick",
    "MarkMissing",
    "MarkTimeout",
    "decode_clock_task",
    "decode_clock_tick",
    "encode_clock_task",
    "encode_clock_tick",
    "encode_mark_missing",
    "encode_mark_timeout",
    "task_key",
]


def _whole_number(value: object) -> object:
    """Let an integral float through as int (Sentry's own producers send floats);
    anything else is left for the strict int check to reject."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number), Field(strict=True)]
Id = Annotated[int, BeforeValidator(_whole_number), Field(strict=True, ge=1)]


class ClockTick(BaseModel):
    """``{"ts": T}``: the clock reached T, unix seconds on a minute boundary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: WholeNumber

    @field_validator("ts")
    @classmethod
    def _minute_aligned(cls, ts: int) -> int:
        if ts % 60:
            raise ValueError(f"must be minute-aligned, got {ts}")
        return ts


class MarkMissing(BaseModel):
    """Write MISSED check-ins for the monitor environment's slots due before ``ts``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["mark_missing"] = "mark_missing"
    ts: WholeNumber
    monitor_environment_id: Id


class MarkTimeout(BaseModel):
    """Mark check-in ``checkin_id`` (a database id, as in Sentry) TIMEOUT as of ``ts``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["mark_timeout"] = "mark_timeout"
    ts: WholeNumber
    monitor_environment_id: Id
    checkin_id: Id


ClockTask = Annotated[MarkMissing | MarkTimeout, Field(discriminator="type")]
"""Any message of ``monitors-clock-tasks``, told apart by ``type``."""

CLOCK_TASK_ADAPTER: Final[TypeAdapter[ClockTask]] = TypeAdapter(ClockTask)
_TASK_MODELS: Final[dict[str, type[MarkMissing | MarkTimeout]]] = {
    "mark_missing": MarkMissing,
    "mark_timeout": MarkTimeout,
}


def _load_object(raw: bytes) -> dict[str, Any]:
    """JSON-decode ``raw`` into an object; raises MessageDecodeError."""
    try:
        return load_object(raw, not_object="not an object")
    except NotAnObject as exc:
        raise MessageDecodeError(exc.reason) from None


def encode_clock_tick(ts: int) -> bytes:
    """``{"ts": ts}``; raises pydantic's ValidationError when ``ts`` is not minute-aligned."""
    return orjson.dumps(ClockTick(ts=ts).model_dump())


def decode_clock_tick(raw: bytes) -> ClockTick:
    """Decode a tick; raises MessageDecodeError (``"ts: must be minute-aligned, got 61"``)."""
    data = _load_object(raw)
    try:
        return ClockTick.model_validate(data)
    except ValidationError as exc:
        raise MessageDecodeError(describe_validation_error(exc)) from None


def encode_clock_task(task: MarkMissing | MarkTimeout) -> bytes:
    """Serialize a task to JSON bytes."""
    return orjson.dumps(task.model_dump())


def encode_mark_missing(ts: int, monitor_environment_id: int) -> bytes:
    """``{"type": "mark_missing", "ts", "monitor_environment_id"}`` as JSON bytes."""
    return encode_clock_task(MarkMissing(ts=ts, monitor_environment_id=monitor_environment_id))


def encode_mark_timeout(ts: int, monitor_environment_id: int, checkin_id: int) -> bytes:
    """``{"type": "mark_timeout", "ts", "monitor_environment_id", "checkin_id"}`` as JSON bytes."""
    task = MarkTimeout(ts=ts, monitor_environment_id=monitor_environment_id, checkin_id=checkin_id)
    return encode_clock_task(task)


def decode_clock_task(raw: bytes) -> MarkMissing | MarkTimeout:
    """Decode a task; raises MessageDecodeError (``"type: field required"``,
    ``"unknown type 'mark_unknown'"``, ``"checkin_id: field required"``, ...)."""
    return validate_tagged(_load_object(raw), "type", _TASK_MODELS)


def task_key(task: MarkMissing | MarkTimeout) -> bytes:
    """The Kafka key of a task: its monitor environment id, so one environment's tasks
    land on one partition, in order."""
    return str(task.monitor_environment_id).encode("ascii")
