"""Guards of the check-in processor against hostile or careless clients (issues #10, #18):
attachments stay with their monitor's check-in, environments per monitor are capped, and a
client's retry of a closing check-in is not an error."""

from __future__ import annotations

import uuid
from datetime import timedelta

from consumers.checkins.batch_state import AttachmentItem, BatchState, CheckInState, MonitorState, ProcessorConfig
from consumers.checkins.processing import process_batch
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import CheckInAttachmentMessage
from schemas.monitor_config import parse_monitor_config
from tests.unit.processing_builders import (
    HOURLY,
    T0,
    empty_state,
    error_types,
    existing_check_in,
    existing_monitor,
    ids,
    item,
)


def attachment(check_in_id: uuid.UUID, *, project_id: int = 1, slug: str = "job") -> AttachmentItem:
    return AttachmentItem(T0, CheckInAttachmentMessage(
        project_id=project_id, monitor_slug=slug, check_in_id=check_in_id, filename="out.log",
        content_type="text/plain", data=b"output", start_time=T0.timestamp()))


def other_monitor(state: BatchState, project_id: int = 1, slug: str = "other") -> MonitorState:
    monitor = MonitorState(id=2, project_id=project_id, organization_id=10, slug=slug, name=slug,
                           status=MonitorStatus.ACTIVE,
                           config=parse_monitor_config(HOURLY))
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
