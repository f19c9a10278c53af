"""Guards of the check-in processor against hostile or careless clients (issues #10, #18):
attachments stay with their monitor's check-in, environments per monitor are capped, and a
client's retry of a closing check-in is not an error."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from consumers.checkins.processing import (
    AttachmentItem,
    BatchResult,
    BatchState,
    CheckInItem,
    CheckInState,
    EnvState,
    IdPool,
    MonitorState,
    ProcessorConfig,
    Project,
    process_batch,
)
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import (
    CheckInAttachmentMessage,
    CheckInMessage,
    parse_check_in_payload,
)
from schemas.monitor_config import parse_monitor_config

T0 = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
HOURLY = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


def item(slug: str = "job", status: str = "ok", *, at: datetime = T0, check_in_id: uuid.UUID | None = None,
         **fields: object) -> CheckInItem:
    payload = orjson.dumps({"check_in_id": (check_in_id or uuid.uuid4()).hex, "monitor_slug": slug,
                            "status": status, **fields})
    message = CheckInMessage(payload=payload, start_time=at.timestamp(), project_id=1, retention_days=90)
    return CheckInItem(at, message, parse_check_in_payload(payload))


def empty_state() -> BatchState:
    return BatchState(projects={1: Project(1, 10)}, monitors={}, envs={}, checkins={}, in_progress={})


def ids() -> IdPool:
    return IdPool(itertools.count(100), itertools.count(200), itertools.count(300))


def existing_monitor(state: BatchState) -> MonitorState:
    monitor = MonitorState(id=1, project_id=1, organization_id=10, slug="job", name="Job",
                           status=MonitorStatus.ACTIVE, config=parse_monitor_config(HOURLY))
    state.monitors[(1, "job")] = monitor
    return monitor


def existing_check_in(state: BatchState, status: CheckInStatus, *, env: str = "production") -> CheckInState:
    monitor = state.monitors[(1, "job")]
    environment = state.envs.setdefault((1, "job", env), EnvState(id=len(state.envs) + 1, monitor=monitor,
                                                                   environment=env))
    checkin = CheckInState(id=len(state.checkins) + 1, guid=uuid.uuid4(), project_id=1, monitor_id=monitor.id,
                           env_id=environment.id, status=status, date_added=T0, date_clock=T0, expected_time=None,
                           timeout_at=None, duration_ms=None, monitor_config=None, trace_id=None, release=None,
                           loaded=(status, None))
    state.checkins[checkin.guid] = checkin
    if status == CheckInStatus.IN_PROGRESS:
        state.in_progress.setdefault(environment.id, []).append(checkin)
    return checkin


def error_types(result: BatchResult) -> list[ProcessingErrorType]:
    return [e.type for e in result.errors]


def attachment(check_in_id: uuid.UUID, *, project_id: int = 1, slug: str = "job") -> AttachmentItem:
    return AttachmentItem(T0, CheckInAttachmentMessage(
        project_id=project_id, monitor_slug=slug, check_in_id=check_in_id, filename="out.log",
        content_type="text/plain", data=b"output", start_time=T0.timestamp()))


def other_monitor(state: BatchState, project_id: int = 1, slug: str = "other") -> MonitorState:
    monitor = MonitorState(id=2, project_id=project_id, organization_id=10, slug=slug, name=slug,
                           status=MonitorStatus.ACTIVE,
                           config=parse_monitor_config({"schedule": {"type": "crontab", "value": "0 * * * *"}}))
    state.monitors[(project_id, slug)] = monitor
    return monitor


def test_an_attachment_naming_another_monitors_check_in_is_the_uploaders_processing_error() -> None:
    state = empty_state()
    existing_monitor(state)
    checkin = existing_check_in(state, CheckInStatus.OK)
    uploader = other_monitor(state)

    result = process_batch([attachment(checkin.guid, slug="other")], state, ids())

    assert result.attachments == []
    assert error_types(result) == [ProcessingErrorType.CHECKIN_GUID_PROJECT_MISMATCH]
    assert result.errors[0].monitor_id == uploader.id


def test_an_attachment_of_the_monitors_own_or_a_not_yet_known_check_in_is_kept() -> None:
    state = empty_state()
    monitor = existing_monitor(state)
    checkin = existing_check_in(state, CheckInStatus.IN_PROGRESS)
    later = uuid.uuid4()

    result = process_batch([attachment(checkin.guid), attachment(later)], state, ids())

    assert [(m.check_in_id, mon.id) for m, mon in result.attachments] == [(checkin.guid, monitor.id),
                                                                            (later, monitor.id)]
    assert result.errors == []


def test_a_monitor_gets_no_more_environments_than_the_cap_and_existing_ones_keep_working() -> None:
    state = empty_state()
    existing_monitor(state)
    existing_check_in(state, CheckInStatus.OK, env="production")
    state.env_counts[1] = 1
    items = [item("job", "ok", environment=f"env-{n}") for n in range(5)] + [item("job", "ok")]

    result = process_batch(items, state, ids(), ProcessorConfig(rate_limit=0, max_environments=3))

    assert sorted(env for _, _, env in state.envs) == ["env-0", "env-1", "production"]
    assert error_types(result) == [ProcessingErrorType.MONITOR_ENVIRONMENT_LIMIT_EXCEEDED] * 3
    assert result.accepted == 3


def test_an_identical_repeat_of_a_finished_check_in_is_a_no_op_not_an_error() -> None:
    state = empty_state()
    existing_monitor(state)
    checkin: CheckInState = existing_check_in(state, CheckInStatus.IN_PROGRESS)
    closing = item("job", "ok", check_in_id=checkin.guid, duration=12.5, at=T0 + timedelta(seconds=13))
    retry = item("job", "ok", check_in_id=checkin.guid, duration=12.5, at=T0 + timedelta(seconds=20))

    result = process_batch([closing, retry], state, ids(), ProcessorConfig(rate_limit=0))

    assert (checkin.status, checkin.duration_ms) == (CheckInStatus.OK, 12_500)
    assert result.errors == [] and result.accepted == 1


def test_a_different_closing_status_or_duration_for_a_finished_check_in_is_still_checkin_finished() -> None:
    state = empty_state()
    existing_monitor(state)
    checkin = existing_check_in(state, CheckInStatus.IN_PROGRESS)
    items = [item("job", "ok", check_in_id=checkin.guid, duration=12.5),
             item("job", "ok", check_in_id=checkin.guid, duration=99.0),
             item("job", "error", check_in_id=checkin.guid, duration=12.5)]

    result = process_batch(items, state, ids(), ProcessorConfig(rate_limit=0))

    assert error_types(result) == [ProcessingErrorType.CHECKIN_FINISHED] * 2
