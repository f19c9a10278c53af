"""Pure decisions of the check-in processor (consumers.checkins.processing): no Kafka, no SQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from consumers.checkins.batch_state import CheckInState, EnvState, ProcessorConfig, RejectedItem
from consumers.checkins.dlq import DeadLetter, DlqLimiter, DlqLimitExceeded, DlqPolicy
from consumers.checkins.processing import process_batch, rollup_deltas, take_rate_slot
from consumers.rollups import RollupDelta, bucket_start
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import MessageRejected
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

UTC = timezone.utc


@pytest.mark.parametrize(("existing", "incoming", "final", "error"), [
    (CheckInStatus.IN_PROGRESS, "ok", CheckInStatus.OK, None),
    (CheckInStatus.IN_PROGRESS, "error", CheckInStatus.ERROR, None),
    (CheckInStatus.IN_PROGRESS, "in_progress", CheckInStatus.IN_PROGRESS, None),
    (CheckInStatus.OK, "in_progress", CheckInStatus.OK, None),
    (CheckInStatus.OK, "error", CheckInStatus.OK, ProcessingErrorType.CHECKIN_FINISHED),
    (CheckInStatus.ERROR, "ok", CheckInStatus.ERROR, ProcessingErrorType.CHECKIN_FINISHED),
    (CheckInStatus.MISSED, "ok", CheckInStatus.MISSED, ProcessingErrorType.CHECKIN_FINISHED),
    (CheckInStatus.TIMEOUT, "ok", CheckInStatus.TIMEOUT, None),
    (CheckInStatus.TIMEOUT, "error", CheckInStatus.TIMEOUT, None),
])
def test_a_check_in_id_pairs_with_its_check_in_by_these_rules(
        existing: CheckInStatus, incoming: str, final: CheckInStatus, error: ProcessingErrorType | None) -> None:
    state = empty_state()
    existing_monitor(state)
    checkin = existing_check_in(state, existing)

    result = process_batch([item("job", incoming, check_in_id=checkin.guid, at=T0 + timedelta(seconds=42))],
                           state, ids())

    assert checkin.status == final
    assert error_types(result) == ([error] if error else [])


@pytest.mark.parametrize(("existing", "expected_duration"), [
    (CheckInStatus.IN_PROGRESS, 42_000),
    (CheckInStatus.TIMEOUT, 42_000),
    (CheckInStatus.OK, None),
])
def test_a_closing_check_in_without_duration_takes_it_from_the_timestamps(
        existing: CheckInStatus, expected_duration: int | None) -> None:
    state = empty_state()
    existing_monitor(state)
    checkin = existing_check_in(state, existing)

    process_batch([item("job", "ok", check_in_id=checkin.guid, at=T0 + timedelta(seconds=42))], state, ids())

    assert checkin.duration_ms == expected_duration


def test_a_new_finished_check_in_with_a_duration_started_that_long_ago() -> None:
    state = empty_state()
    existing_monitor(state, max_runtime=10)

    process_batch([item("job", "ok", duration=90)], state, ids())

    (checkin,) = state.checkins.values()
    assert (checkin.date_added, checkin.timeout_at) == (T0 - timedelta(seconds=90), None)


def test_an_in_progress_check_in_times_out_max_runtime_after_its_start_minute() -> None:
    state = empty_state()
    existing_monitor(state, max_runtime=10)

    process_batch([item("job", "in_progress")], state, ids())

    (checkin,) = state.checkins.values()
    assert checkin.timeout_at == T0.replace(second=0) + timedelta(minutes=10)


def test_the_zero_uuid_closes_the_newest_in_progress_check_in_of_the_same_environment() -> None:
    state = empty_state()
    existing_monitor(state)
    older = existing_check_in(state, CheckInStatus.IN_PROGRESS, at=T0 - timedelta(minutes=2))
    newer = existing_check_in(state, CheckInStatus.IN_PROGRESS, at=T0 - timedelta(minutes=1))
    other_env = existing_check_in(state, CheckInStatus.IN_PROGRESS, env="staging", at=T0)

    process_batch([item("job", "ok", check_in_id=uuid.UUID(int=0)),
                   item("job", "ok", check_in_id=uuid.UUID(int=0))], state, ids())

    assert (older.status, newer.status, other_env.status) == (
        CheckInStatus.OK, CheckInStatus.OK, CheckInStatus.IN_PROGRESS)


def test_the_zero_uuid_without_an_in_progress_check_in_creates_a_new_one() -> None:
    state = empty_state()
    existing_monitor(state)

    process_batch([item("job", "ok", check_in_id=uuid.UUID(int=0))], state, ids())

    (checkin,) = state.checkins.values()
    assert checkin.status == CheckInStatus.OK and checkin.guid.int != 0


@pytest.mark.parametrize(("case", "expected"), [
    ({"project_id": 2}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED),
    ({"slug": "unknown"}, ProcessingErrorType.MONITOR_NOT_FOUND),
    ({"slug": "new", "monitor_config": {"schedule": {"type": "crontab", "value": "@reboot"}}},
     ProcessingErrorType.MONITOR_INVALID_CONFIG),
    ({"duration": -1}, ProcessingErrorType.CHECKIN_INVALID_DURATION),
    ({"environment": "a/b"}, ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT),
])
def test_a_check_in_breaking_a_rule_becomes_this_processing_error_and_writes_nothing(
        case: dict[str, object], expected: ProcessingErrorType) -> None:
    state = empty_state()
    existing_monitor(state)
    fields: dict[str, Any] = dict(case)
    slug = str(fields.pop("slug", "job"))
    project_id = int(fields.pop("project_id", 1))

    result = process_batch([item(slug, project_id=project_id, **fields)], state, ids())

    assert error_types(result) == [expected]
    assert state.checkins == {} and state.envs == {}
    assert [m.slug for m in state.monitors.values()] == ["job"]


def test_an_invalid_config_for_an_existing_monitor_keeps_the_stored_config_and_records_the_check_in() -> None:
    state = empty_state()
    monitor = existing_monitor(state, checkin_margin=5)
    stored = monitor.config

    result = process_batch([item("job", monitor_config={**HOURLY, "timezone": "Mars/Olympus"})], state, ids())

    assert error_types(result) == [ProcessingErrorType.MONITOR_INVALID_CONFIG]
    assert result.errors[0].reason == "timezone: unknown timezone 'Mars/Olympus'"
    assert result.errors[0].monitor_id == monitor.id
    assert monitor.config == stored and not monitor.dirty
    (checkin,) = state.checkins.values()
    assert checkin.status == CheckInStatus.OK and checkin.monitor_config == monitor.config_json()
    assert result.accepted == 1


def test_an_invalid_config_for_a_new_monitor_creates_nothing() -> None:
    state = empty_state()

    result = process_batch([item("fresh", monitor_config={"schedule": {"type": "crontab", "value": "* * * * * *"}})],
                           state, ids())

    assert error_types(result) == [ProcessingErrorType.MONITOR_INVALID_CONFIG]
    assert result.errors[0].reason == "schedule: crontab has 6 fields; expected 5"
    assert state.monitors == {} and state.checkins == {}


def test_a_rejected_message_becomes_a_processing_error_of_its_project() -> None:
    state = empty_state()
    rejection = MessageRejected(1, ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
                                "filename: must not contain a NUL character", {"filename": "a\\x00"})

    result = process_batch([RejectedItem(T0, rejection)], state, ids())

    [error] = result.errors
    assert (error.type, error.reason, error.project_id, error.organization_id, error.checkin) == (
        ProcessingErrorType.CHECKIN_VALIDATION_FAILED, "filename: must not contain a NUL character", 1, 10,
        {"filename": "a\\x00"})


def test_a_disabled_monitor_rejects_its_check_ins() -> None:
    state = empty_state()
    existing_monitor(state).status = MonitorStatus.DISABLED

    assert error_types(process_batch([item()], state, ids())) == [ProcessingErrorType.MONITOR_DISABLED]


def test_an_upsert_of_a_new_monitor_names_it_after_its_slug_and_an_update_keeps_unsent_keys() -> None:
    state = empty_state()

    process_batch([item("fresh", monitor_config={**HOURLY, "checkin_margin": 7, "timezone": "Asia/Tokyo"}),
                   item("fresh", monitor_config={"schedule": {"type": "interval", "value": 2, "unit": "hour"}},
                        at=T0 + timedelta(hours=1))], state, ids())

    monitor = state.monitors[(1, "fresh")]
    assert (monitor.name, monitor.is_new, monitor.id) == ("fresh", True, 200)
    assert (monitor.config.checkin_margin, monitor.config.timezone) == (7, "Asia/Tokyo")
    assert monitor.config.schedule.unit == "hour"  # type: ignore[union-attr]


@pytest.mark.parametrize(("limit", "sent", "accepted"), [(6, 8, 6), (6, 6, 6), (1, 3, 1), (0, 20, 20)])
def test_the_rate_limit_accepts_this_many_check_ins_per_environment_and_minute(
        limit: int, sent: int, accepted: int) -> None:
    state = empty_state()
    existing_monitor(state)

    result = process_batch([item(at=T0 + timedelta(seconds=n)) for n in range(sent)], state, ids(),
                           ProcessorConfig(rate_limit=limit))

    assert result.accepted == accepted
    assert error_types(result) == [ProcessingErrorType.MONITOR_ENVIRONMENT_RATELIMITED] * (sent - accepted)


def test_the_rate_limit_starts_over_in_the_next_message_minute() -> None:
    env = EnvState(id=1, monitor=None, environment="production")  # type: ignore[arg-type]
    assert all(take_rate_slot(env, T0, 2) for _ in range(2))
    assert not take_rate_slot(env, T0, 2)
    assert take_rate_slot(env, T0 + timedelta(minutes=1), 2)


def test_next_checkin_moves_forward_only_and_expected_time_is_the_previous_next_checkin() -> None:
    state = empty_state()
    existing_monitor(state, checkin_margin=3)

    process_batch([item(at=T0), item(at=T0 + timedelta(hours=1)), item(at=T0 + timedelta(minutes=5))],
                  state, ids())

    env = state.envs[(1, "job", "production")]
    first_next = T0.replace(minute=0, second=0) + timedelta(hours=1)
    assert env.last_checkin == T0 + timedelta(hours=1)
    assert env.next_checkin == first_next + timedelta(hours=1)
    assert env.next_checkin_latest == first_next + timedelta(hours=1, minutes=3)
    assert [c.expected_time for c in state.checkins.values()] == [None, first_next, first_next + timedelta(hours=1)]


def test_ok_and_error_results_drive_incidents_with_the_monitor_thresholds() -> None:
    state = empty_state()
    existing_monitor(state, failure_issue_threshold=2, recovery_threshold=1)

    result = process_batch([item("job", "error", at=T0), item("job", "error", at=T0 + timedelta(hours=1)),
                            item("job", "ok", at=T0 + timedelta(hours=2))], state, ids())

    first = min(c.id for c in state.checkins.values())
    assert [(o.checkin_id, o.ts) for o in result.incidents_opened] == [(first, T0)]
    assert [r.ts for r in result.incidents_resolved] == [T0 + timedelta(hours=2)]
    assert state.envs[(1, "job", "production")].status == MonitorStatus.OK


@pytest.mark.parametrize(("loaded", "final", "duration", "delta"), [
    (None, CheckInStatus.OK, 1000, [1, 0, 0, 0, 0, 1000, 1]),
    (None, CheckInStatus.ERROR, None, [0, 1, 0, 0, 0, 0, 0]),
    (None, CheckInStatus.IN_PROGRESS, None, None),
    ((CheckInStatus.IN_PROGRESS, None), CheckInStatus.OK, 500, [1, 0, 0, 0, 0, 500, 1]),
    ((CheckInStatus.TIMEOUT, None), CheckInStatus.TIMEOUT, 700, [0, 0, 0, 0, 0, 700, 1]),
    ((CheckInStatus.OK, 5), CheckInStatus.OK, 5, None),
])
def test_rollup_deltas_count_each_final_status_once(
        loaded: tuple[CheckInStatus, int | None] | None, final: CheckInStatus, duration: int | None,
        delta: list[int] | None) -> None:
    checkin = CheckInState(id=1, guid=uuid.uuid4(), project_id=1, monitor_id=1, env_id=9, status=final,
                           date_added=T0, date_clock=T0, expected_time=None, timeout_at=None, duration_ms=duration,
                           monitor_config=None, trace_id=None, release=None, is_new=loaded is None, loaded=loaded)

    deltas = rollup_deltas([checkin])

    if delta is None:
        assert deltas == {}
    else:
        assert deltas == {(9, 3600, datetime(2024, 5, 1, 12, tzinfo=UTC)): RollupDelta(*delta),
                          (9, 86400, datetime(2024, 5, 1, tzinfo=UTC)): RollupDelta(*delta)}


@pytest.mark.parametrize(("resolution", "expected"), [
    (3600, datetime(2024, 5, 1, 12, tzinfo=UTC)), (86400, datetime(2024, 5, 1, tzinfo=UTC))])
def test_buckets_start_at_whole_utc_hours_and_days(resolution: int, expected: datetime) -> None:
    assert bucket_start(T0, resolution) == expected


def test_the_dlq_limit_counts_within_a_sliding_window() -> None:
    limiter = DlqLimiter(DlqPolicy(max_messages=3, window_s=10))
    letter = DeadLetter("ingest", 0, 0, None, b"", "undecodable")
    limiter.admit([letter] * 2, now=0)
    limiter.admit([letter], now=5)
    with pytest.raises(DlqLimitExceeded):
        limiter.admit([letter], now=9)
    limiter.admit([letter] * 2, now=10.5)  # the first two fell out of the window
