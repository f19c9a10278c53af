"""Incident thresholds as pure decisions (consumers.incidents.rules)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consumers.incidents.rules import INITIAL_STATE, IncidentChange, IncidentState, apply_result
from schemas.enums import CheckInStatus as S
from schemas.enums import MonitorStatus

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _run(statuses: list[S], failure: int, recovery: int,
         state: IncidentState = INITIAL_STATE) -> list[IncidentChange]:
    """Apply ``statuses`` in order as check-ins 1, 2, ... one minute apart."""
    changes = []
    for i, status in enumerate(statuses, start=1):
        change = apply_result(state, status, i, T0 + timedelta(minutes=i), failure, recovery)
        changes.append(change)
        state = change.state
    return changes


def _opened(changes: list[IncidentChange]) -> list[tuple[int, int]]:
    """(position, starting check-in id) of every incident opening."""
    return [(i, c.open_incident_from[0]) for i, c in enumerate(changes, start=1) if c.open_incident_from]


def _resolved(changes: list[IncidentChange]) -> list[int]:
    return [c.resolve_with[0] for c in changes if c.resolve_with]


@pytest.mark.parametrize("failure", [S.ERROR, S.MISSED, S.TIMEOUT])
def test_two_failures_under_threshold_three_leave_the_environment_ok(failure: S) -> None:
    changes = _run([failure, failure], failure=3, recovery=2)
    assert [c.env_status for c in changes] == [MonitorStatus.OK, MonitorStatus.OK]
    assert _opened(changes) == []
    assert changes[-1].state.failure_run == 2


@pytest.mark.parametrize("failures", [
    [S.ERROR, S.ERROR, S.ERROR],
    [S.MISSED, S.TIMEOUT, S.ERROR],
    [S.TIMEOUT, S.MISSED, S.MISSED],
])
def test_the_third_failure_opens_one_incident_starting_at_the_first(failures: list[S]) -> None:
    changes = _run(failures, failure=3, recovery=2)
    assert _opened(changes) == [(3, 1)]
    assert changes[-1].open_incident_from == (1, T0 + timedelta(minutes=1))
    assert changes[-1].env_status == MonitorStatus.ERROR


def test_a_fourth_failure_extends_the_incident_without_opening_another() -> None:
    changes = _run([S.ERROR] * 4, failure=3, recovery=2)
    assert _opened(changes) == [(3, 1)]
    assert changes[3].env_status == MonitorStatus.ERROR and changes[3].state.failure_run == 4


@pytest.mark.parametrize("oks, resolved", [(1, []), (2, [6]), (3, [6])])
def test_recovery_threshold_two_needs_two_consecutive_oks(oks: int, resolved: list[int]) -> None:
    changes = _run([S.ERROR] * 4 + [S.OK] * oks, failure=3, recovery=2)
    assert _resolved(changes) == resolved
    expected = MonitorStatus.OK if resolved else MonitorStatus.ERROR
    assert changes[-1].env_status == expected


def test_a_failure_between_oks_restarts_the_recovery_count() -> None:
    changes = _run([S.ERROR, S.OK, S.ERROR, S.OK], failure=1, recovery=2)
    assert _opened(changes) == [(1, 1)]
    assert _resolved(changes) == []
    assert changes[-1].env_status == MonitorStatus.ERROR


def test_an_ok_resets_the_failure_run() -> None:
    changes = _run([S.ERROR, S.ERROR, S.OK, S.ERROR, S.ERROR], failure=3, recovery=1)
    assert _opened(changes) == []
    assert changes[-1].state.failure_run == 2 and changes[-1].state.failure_run_start_id == 4


def test_default_thresholds_open_on_the_first_failure_and_resolve_on_the_first_ok() -> None:
    changes = _run([S.MISSED, S.OK], failure=1, recovery=1)
    assert _opened(changes) == [(1, 1)]
    assert _resolved(changes) == [2]
    assert [c.env_status for c in changes] == [MonitorStatus.ERROR, MonitorStatus.OK]


@pytest.mark.parametrize("status", [S.IN_PROGRESS, S.UNKNOWN])
def test_in_progress_and_unknown_change_nothing(status: S) -> None:
    before = _run([S.ERROR, S.ERROR], failure=3, recovery=2)[-1].state
    change = apply_result(before, status, 99, T0, 3, 2)
    assert change.state == before and not change.counted
    assert change.open_incident_from is None and change.resolve_with is None


def test_a_new_run_after_resolution_opens_a_new_incident() -> None:
    changes = _run([S.ERROR, S.OK, S.ERROR], failure=1, recovery=1)
    assert _opened(changes) == [(1, 1), (3, 3)]
    assert _resolved(changes) == [2]


@pytest.mark.parametrize("threshold", [0, -1])
def test_thresholds_below_one_act_as_one(threshold: int) -> None:
    changes = _run([S.ERROR, S.OK], failure=threshold, recovery=threshold)
    assert _opened(changes) == [(1, 1)] and _resolved(changes) == [2]
