"""What the check-in processor works on: one batch's decoded messages (inputs), the rows
they touch (state, mutated by the decisions) and everything the batch writes (outputs).

Plain dataclasses. ``consumers.checkins.runner.decode`` makes the items,
``consumers.checkins.store`` loads a :class:`BatchState` and writes it back with the
:class:`BatchResult` that ``consumers.checkins.processing.process_batch`` returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from consumers.incidents.rules import INITIAL_STATE, IncidentState
from schemas.checkin_payload import CheckInPayload, PayloadError, error_excerpt
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import CheckInAttachmentMessage, CheckInMessage, MessageRejected
from schemas.monitor_config import MonitorConfig, config_to_json

__all__ = [
    "DEFAULT_MAX_ENVIRONMENTS",
    "DEFAULT_RATE_LIMIT",
    "AttachmentItem",
    "BatchResult",
    "BatchState",
    "CheckInItem",
    "CheckInState",
    "EnvKey",
    "EnvState",
    "IdPool",
    "IncidentOpen",
    "IncidentResolve",
    "Item",
    "MonitorKey",
    "MonitorState",
    "ProcessingError",
    "ProcessorConfig",
    "Project",
    "RejectedItem",
]

DEFAULT_RATE_LIMIT: Final = 6
#: Sentry's MAX_ENVIRONMENTS_PER_MONITOR.
DEFAULT_MAX_ENVIRONMENTS: Final = 1000


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CheckInItem:
    """One decoded ``check_in`` message; ``payload`` is the parsed JSON or why it is invalid."""

    ts: datetime
    """The Kafka message timestamp: the message minute of the rate limit."""
    message: CheckInMessage
    payload: CheckInPayload | PayloadError


@dataclass(frozen=True)
class AttachmentItem:
    ts: datetime
    message: CheckInAttachmentMessage


@dataclass(frozen=True)
class RejectedItem:
    """A message that decoded far enough to name its project but broke a content rule."""

    ts: datetime
    rejection: MessageRejected


Item = CheckInItem | AttachmentItem | RejectedItem


@dataclass(frozen=True)
class ProcessorConfig:
    #: Check-ins per monitor environment and message minute; 0 disables the limit.
    rate_limit: int = DEFAULT_RATE_LIMIT
    #: Retention of a check-in whose message says 0 (none sent); CRONPIPE_RETENTION_DAYS_DEFAULT.
    retention_days_default: int = 90
    #: Environments one monitor may have; a check-in that would create one more is rejected.
    max_environments: int = DEFAULT_MAX_ENVIRONMENTS


@dataclass(frozen=True)
class Project:
    id: int
    organization_id: int


@dataclass
class MonitorState:
    id: int
    project_id: int
    organization_id: int
    slug: str
    name: str
    status: MonitorStatus
    config: MonitorConfig
    is_new: bool = False
    dirty: bool = False
    _config_json: str | None = field(default=None, repr=False)

    def config_json(self) -> str:
        """The stored form, serialized once per batch (it is copied onto each check-in)."""
        if self._config_json is None:
            self._config_json = orjson.dumps(config_to_json(self.config)).decode()
        return self._config_json

    def set_config(self, config: MonitorConfig) -> None:
        self.config = config
        self._config_json = None
        self.dirty = True


@dataclass
class EnvState:
    id: int
    monitor: MonitorState
    environment: str
    status: MonitorStatus = MonitorStatus.ACTIVE
    last_checkin: datetime | None = None
    next_checkin: datetime | None = None
    next_checkin_latest: datetime | None = None
    rate_minute: datetime | None = None
    rate_count: int = 0
    incident: IncidentState = INITIAL_STATE
    is_new: bool = False
    dirty: bool = False
    incident_dirty: bool = False


@dataclass
class CheckInState:
    id: int
    guid: uuid.UUID
    project_id: int
    monitor_id: int
    env_id: int
    status: CheckInStatus
    date_added: datetime
    date_clock: datetime | None
    expected_time: datetime | None
    timeout_at: datetime | None
    duration_ms: int | None
    monitor_config: str | None
    trace_id: uuid.UUID | None
    release: str | None
    #: Days kept after the day it ran (consumers.maintenance deletes it after that).
    retention_days: int = 90
    is_new: bool = False
    dirty: bool = False
    #: What the row counted in the rollups when loaded (None for a new row).
    loaded: tuple[CheckInStatus, int | None] | None = None


EnvKey = tuple[int, str, str]  # project_id, monitor slug, environment
MonitorKey = tuple[int, str]


@dataclass
class BatchState:
    """The rows a batch touches, keyed the way messages name them. Mutated by processing."""

    projects: dict[int, Project]
    monitors: dict[MonitorKey, MonitorState]
    envs: dict[EnvKey, EnvState]
    checkins: dict[uuid.UUID, CheckInState]
    #: Per environment id, its IN_PROGRESS check-ins (the newest last), for zero-UUID pairing.
    in_progress: dict[int, list[CheckInState]]
    #: Per monitor id, how many environments it has (loaded for monitors the batch may add to).
    env_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class IdPool:
    """Ids drawn from the tables' sequences before processing, so decisions can name rows."""

    checkin_ids: Iterator[int]
    monitor_ids: Iterator[int]
    env_ids: Iterator[int]


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ProcessingError:
    type: ProcessingErrorType
    reason: str
    project_id: int | None
    organization_id: int | None
    monitor_id: int | None
    checkin: dict[str, Any] | None


@dataclass(frozen=True)
class IncidentOpen:
    monitor_id: int
    env_id: int
    checkin_id: int
    ts: datetime


@dataclass(frozen=True)
class IncidentResolve:
    env_id: int
    checkin_id: int
    ts: datetime


@dataclass
class BatchResult:
    """Everything a batch writes, besides the rows marked new/dirty in its BatchState."""

    errors: list[ProcessingError] = field(default_factory=list)
    attachments: list[tuple[CheckInAttachmentMessage, MonitorState]] = field(default_factory=list)
    incidents_opened: list[IncidentOpen] = field(default_factory=list)
    incidents_resolved: list[IncidentResolve] = field(default_factory=list)
    #: (env id, "opened|failure|resolved", check-in id, its date_added), in result order.
    incident_events: list[tuple[int, str, int, datetime]] = field(default_factory=list)
    accepted: int = 0
    #: Accepted check-ins per message minute (the volume-anomaly guard's history).
    volume: dict[datetime, int] = field(default_factory=dict)

    def reject(self, kind: ProcessingErrorType, reason: str, item: CheckInItem,
               project: Project | None = None, monitor: MonitorState | None = None) -> None:
        self.errors.append(ProcessingError(
            type=kind, reason=reason, project_id=item.message.project_id,
            organization_id=project.organization_id if project else None,
            monitor_id=monitor.id if monitor else None, checkin=_error_payload(item)))


def _error_payload(item: CheckInItem) -> dict[str, Any] | None:
    """The offending check-in as users see it in the API, always storable (``error_excerpt``)."""
    return error_excerpt(item.message.payload)
