"""Builders of the check-in processor's pure inputs (consumers.checkins.processing), shared
by its unit tests: check-in items, a batch state with one project, monitors and check-ins
already stored."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import orjson

from consumers.checkins.batch_state import (
    BatchResult,
    BatchState,
    CheckInItem,
    CheckInState,
    EnvState,
    IdPool,
    MonitorState,
    Project,
)
from schemas.checkin_payload import PayloadError, parse_check_in_payload
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import CheckInMessage
from schemas.monitor_config import parse_monitor_config

T0 = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
HOURLY = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


def item(slug: str = "job", status: str = "ok", *, at: datetime = T0, project_id: int = 1,
         check_in_id: uuid.UUID | None = None, **fields: object) -> CheckInItem:
    """A check-in as the processor receives it; a payload that does not parse carries its
    PayloadError (as the runner hands it on)."""
    payload = orjson.dumps({"check_in_id": (check_in_id or uuid.uuid4()).hex, "monitor_slug": slug,
                            "status": status, **fields})
    message = CheckInMessage(payload=payload, start_time=at.timestamp(), project_id=project_id, retention_days=90)
    parsed: object
    try:
        parsed = parse_check_in_payload(payload)
    except PayloadError as exc:
        parsed = exc
    return CheckInItem(at, message, parsed)


def empty_state() -> BatchState:
    return BatchState(projects={1: Project(1, 10)}, monitors={}, envs={}, checkins={}, in_progress={})


def ids() -> IdPool:
    return IdPool(itertools.count(100), itertools.count(200), itertools.count(300))


def existing_monitor(state: BatchState, **config: object) -> MonitorState:
    """Monitor ``job`` of project 1, hourly (``config`` merged in)."""
    monitor = MonitorState(id=1, project_id=1, organization_id=10, slug="job", name="Job",
                           status=MonitorStatus.ACTIVE, config=parse_monitor_config({**HOURLY, **config}))
    state.monitors[(1, "job")] = monitor
    return monitor


def existing_check_in(state: BatchState, status: CheckInStatus, *, env: str = "production",
                      at: datetime = T0) -> CheckInState:
    """A stored check-in of monitor ``job`` (see :func:`existing_monitor`) in ``env``."""
    monitor = state.monitors[(1, "job")]
    environment = state.envs.setdefault((1, "job", env), EnvState(id=len(state.envs) + 1, monitor=monitor,
                                                                   environment=env))
    checkin = CheckInState(id=len(state.checkins) + 1, guid=uuid.uuid4(), project_id=1, monitor_id=monitor.id,
                           env_id=environment.id, status=status, date_added=at, date_clock=at, expected_time=None,
                           timeout_at=None, duration_ms=None, monitor_config=None, trace_id=None, release=None,
                           loaded=(status, None))
    state.checkins[checkin.guid] = checkin
    if status == CheckInStatus.IN_PROGRESS:
        state.in_progress.setdefault(environment.id, []).append(checkin)
    return checkin


def error_types(result: BatchResult) -> list[ProcessingErrorType]:
    return [e.type for e in result.errors]
