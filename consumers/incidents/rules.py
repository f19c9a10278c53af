"""Incident thresholds: pure decisions over one monitor environment's run of results.

``failure_issue_threshold`` consecutive failures (ERROR, MISSED, TIMEOUT) open one
incident per monitor environment; its starting check-in is the FIRST failure of the run.
Further failures extend the open incident (never a second one). ``recovery_threshold``
consecutive OKs resolve it. An OK resets the failure run, a failure resets the OK run;
IN_PROGRESS and UNKNOWN change nothing.

The state mirrors the columns ``monitor_environments.failure_run``,
``failure_run_start_id``, ``failure_run_start_at``, ``ok_run`` plus "an incident is open"
(a row of ``incidents`` with ``resolving_timestamp IS NULL``); see
``consumers.incidents.store`` for loading and saving it. Muted environments are not
special here: they record incidents too (muting only silences notifications).

Both the check-in processor and the clock tasks call :func:`apply_result` once per
result, in the order they write the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.enums import FAILED_CHECKIN_STATUSES, CheckInStatus, MonitorStatus

__all__ = ["INITIAL_STATE", "IncidentChange", "IncidentState", "apply_result"]


@dataclass(frozen=True)
class IncidentState:
    """One monitor environment's current runs of consecutive failures and OKs."""

    failure_run: int
    failure_run_start_id: int | None
    failure_run_start_at: datetime | None
    ok_run: int
    open_incident: bool


#: A monitor environment that has never reported a result.
INITIAL_STATE = IncidentState(
    failure_run=0, failure_run_start_id=None, failure_run_start_at=None, ok_run=0, open_incident=False
)


@dataclass(frozen=True)
class IncidentChange:
    """What one result does to the environment.

    ``env_status`` is the environment status after the result: ERROR while an incident
    is open, otherwise OK. For IN_PROGRESS/UNKNOWN (``counted`` is False) it still
    reports ERROR/OK from the open flag; callers that keep an environment ACTIVE until
    its first result should not write it then.
    """

    state: IncidentState
    env_status: MonitorStatus
    #: (starting check-in id, starting timestamp) when an incident opens with this result.
    open_incident_from: tuple[int, datetime] | None
    #: (resolving check-in id, timestamp) when the open incident resolves with this result.
    resolve_with: tuple[int, datetime] | None

    #: False for results that do not count (IN_PROGRESS, UNKNOWN): nothing to write.
    counted: bool = True

    #: The incident event this result causes (``schemas.incident_events.EventType``):
    #: "opened", "failure" (a failure added to an already open incident), "resolved".
    event_type: str | None = None


def _status_of(state: IncidentState) -> MonitorStatus:
    return MonitorStatus.ERROR if state.open_incident else MonitorStatus.OK


def apply_result(
    state: IncidentState,
    status: CheckInStatus,
    checkin_id: int,
    ts: datetime,
    failure_threshold: int,
    recovery_threshold: int,
) -> IncidentChange:
    """Apply one check-in result (``checkin_id`` written at ``ts``) to ``state``.

    Thresholds below 1 are treated as 1 (Sentry's default). Never raises.
    """
    if status in FAILED_CHECKIN_STATUSES:
        return _apply_failure(state, checkin_id, ts, max(1, failure_threshold))
    if status == CheckInStatus.OK:
        return _apply_ok(state, checkin_id, ts, max(1, recovery_threshold))
    return IncidentChange(state, _status_of(state), None, None, counted=False)


def _apply_failure(state: IncidentState, checkin_id: int, ts: datetime, threshold: int) -> IncidentChange:
    # The states are built directly, not with dataclasses.replace: this runs for every
    # result the processor accepts, and replace costs several times a constructor.
    was_open = state.open_incident
    if state.failure_run == 0:
        state = IncidentState(1, checkin_id, ts, 0, was_open)
    else:
        state = IncidentState(state.failure_run + 1, state.failure_run_start_id, state.failure_run_start_at, 0,
                              was_open)
    opened: tuple[int, datetime] | None = None
    if not state.open_incident and state.failure_run >= threshold:
        assert state.failure_run_start_id is not None and state.failure_run_start_at is not None
        opened = (state.failure_run_start_id, state.failure_run_start_at)
        state = IncidentState(state.failure_run, state.failure_run_start_id, state.failure_run_start_at, 0, True)
    event = "opened" if opened is not None else "failure" if was_open else None
    return IncidentChange(state, _status_of(state), opened, None, event_type=event)


def _apply_ok(state: IncidentState, checkin_id: int, ts: datetime, threshold: int) -> IncidentChange:
    state = IncidentState(0, None, None, state.ok_run + 1, state.open_incident)
    resolved: tuple[int, datetime] | None = None
    if state.open_incident and state.ok_run >= threshold:
        resolved = (checkin_id, ts)
        state = IncidentState(0, None, None, state.ok_run, False)
    return IncidentChange(state, _status_of(state), None, resolved,
                          event_type="resolved" if resolved is not None else None)
