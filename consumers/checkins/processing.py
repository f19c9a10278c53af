"""Check-in processing decisions: pure functions over one batch and the state it touches.

No SQL, no Kafka, no clock. The data types are in ``consumers.checkins.batch_state``, the
monitor and environment upserts in ``consumers.checkins.monitors``. :func:`process_batch` takes the decoded messages of one batch
(in partition order), the rows the batch refers to (loaded by ``consumers.checkins.store``) and a
pool of pre-allocated ids, and returns every write the batch implies. The rules are
DESIGN.md "Semantics" and Sentry's ``monitor_consumer``:

* a check-in needs a known project; its monitor is upserted from ``monitor_config``
  (new monitor: name = slug; existing: only the keys sent change); an invalid config is a
  MONITOR_INVALID_CONFIG processing error — for a new monitor nothing is written, an
  existing one keeps its stored config and the check-in is still recorded (Sentry's
  consumer); a disabled monitor rejects the check-in as a processing error;
* per monitor environment, at most ``rate_limit`` check-ins per message minute;
* pairing by ``check_in_id``, or for the zero UUID the newest IN_PROGRESS check-in of the
  same environment; a finished check-in stays finished (a late in_progress is dropped,
  another final status is CHECKIN_FINISHED), a TIMEOUT one only records the duration;
* every accepted check-in moves the environment's ``last_checkin`` / ``next_checkin`` /
  ``next_checkin_latest`` forward (never backwards) and OK/ERROR results drive incidents;
* rollup deltas are the difference between what a row counted before and after the
  batch, so a status transition (in_progress → ok) is counted exactly once.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Final

from consumers.checkins.batch_state import (
    AttachmentItem,
    BatchResult,
    BatchState,
    CheckInItem,
    CheckInState,
    EnvState,
    IdPool,
    IncidentOpen,
    IncidentResolve,
    Item,
    MonitorState,
    ProcessingError,
    ProcessorConfig,
    Project,
    RejectedItem,
)
from consumers.checkins.monitors import ensure_environment, has_environment_room, upsert_monitor
from consumers.incidents.rules import IncidentChange, apply_result
from consumers.rollups import ROLLUP_RESOLUTIONS, RollupDelta, RollupKey, bucket_at
from schemas.checkin_payload import CheckInPayload, PayloadError
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.minutes import floor_minute
from schemas.monitor_config import (
    MonitorConfig,
)
from schemas.schedule import Schedule, ScheduleError, next_expected

UTC = timezone.utc
_FINAL_STATUSES: Final = frozenset({CheckInStatus.OK, CheckInStatus.ERROR})
__all__ = [
    "advance_environment",
    "apply_check_in",
    "attach",
    "create_check_in",
    "drive_incident",
    "find_existing",
    "is_repeat",
    "next_expected_minute",
    "process_batch",
    "process_check_in",
    "record_rejection",
    "rollup_deltas",
    "take_rate_slot",
    "timeout_at",
    "update_check_in",
]


# --------------------------------------------------------------------------- the batch


_DEFAULT_CONFIG: Final = ProcessorConfig()


def process_batch(items: Sequence[Item], state: BatchState, ids: IdPool,
                  config: ProcessorConfig = _DEFAULT_CONFIG) -> BatchResult:
    """Apply ``items`` in order to ``state``; return the errors, attachments and incident
    changes. Never raises for bad input: every rejection is a ProcessingError."""
    result = BatchResult()
    for item in items:
        if isinstance(item, CheckInItem):
            process_check_in(item, state, ids, config, result)
        elif isinstance(item, AttachmentItem):
            attach(item, state, result)
        else:
            record_rejection(item, state, result)
    return result


def record_rejection(item: RejectedItem, state: BatchState, result: BatchResult) -> None:
    """A rejected message becomes a processing error of its project (if it exists)."""
    rejection = item.rejection
    project = state.projects.get(rejection.project_id)
    result.errors.append(ProcessingError(
        type=rejection.kind, reason=rejection.reason, project_id=rejection.project_id,
        organization_id=project.organization_id if project else None, monitor_id=None,
        checkin=rejection.details))


def process_check_in(item: CheckInItem, state: BatchState, ids: IdPool, config: ProcessorConfig,
                     result: BatchResult) -> None:
    """One check-in, Sentry's order of checks: project, payload, monitor, rate limit, pairing."""
    project = state.projects.get(item.message.project_id)
    if project is None:
        result.reject(ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
                      f"project {item.message.project_id} does not exist", item)
        return
    payload = item.payload
    if isinstance(payload, PayloadError):
        result.reject(payload.kind, payload.reason, item, project)
        return
    monitor = upsert_monitor(payload, project, state, ids, item, result)
    if monitor is None:
        return
    if monitor.status == MonitorStatus.DISABLED:
        result.reject(ProcessingErrorType.MONITOR_DISABLED, f"monitor {monitor.slug!r} is disabled",
                      item, project, monitor)
        return
    if not has_environment_room(monitor, payload.environment, state, config.max_environments):
        result.reject(ProcessingErrorType.MONITOR_ENVIRONMENT_LIMIT_EXCEEDED,
                      f"monitor {monitor.slug!r} already has {config.max_environments} environments; "
                      f"environment {payload.environment!r} is not created", item, project, monitor)
        return
    env = ensure_environment(monitor, payload.environment, state, ids)
    if not take_rate_slot(env, item.ts, config.rate_limit):
        result.reject(ProcessingErrorType.MONITOR_ENVIRONMENT_RATELIMITED,
                      f"more than {config.rate_limit} check-ins in one minute for environment "
                      f"{env.environment!r}", item, project, monitor)
        return
    apply_check_in(item, payload, project, env, state, ids, result, config.retention_days_default)


# --------------------------------------------------------------------------- rate limit


def take_rate_slot(env: EnvState, ts: datetime, limit: int) -> bool:
    """Count one check-in against the environment's message minute; False when over ``limit``.

    Messages of one environment arrive in order (one key, one partition), so a minute
    older than the stored one is counted against the stored one rather than resetting it.
    """
    if limit <= 0:
        return True
    minute = floor_minute(ts)
    if env.rate_minute is None or minute > env.rate_minute:
        env.rate_minute, env.rate_count = minute, 0
    env.dirty = True
    if env.rate_count >= limit:
        return False
    env.rate_count += 1
    return True


# --------------------------------------------------------------------------- check-ins


def apply_check_in(item: CheckInItem, payload: CheckInPayload, project: Project, env: EnvState,
                   state: BatchState, ids: IdPool, result: BatchResult, retention_default: int = 90) -> None:
    """Create or pair the check-in, then move the environment and incidents forward."""
    start = datetime.fromtimestamp(item.message.start_time, UTC)
    existing = find_existing(payload, env, state)
    if existing is None:
        checkin = create_check_in(item, payload, project, env, start, state, ids)
        checkin.retention_days = item.message.retention_days or retention_default
    else:
        if not _same_monitor(existing, env, item, project, result):
            return
        if not update_check_in(existing, item, payload, start, result, project, env.monitor):
            return
        checkin = existing
    result.accepted += 1
    minute = floor_minute(item.ts)
    result.volume[minute] = result.volume.get(minute, 0) + 1
    advance_environment(env, start)
    if payload.status in _FINAL_STATUSES and checkin.status == payload.status:
        drive_incident(env, checkin, result)


def find_existing(payload: CheckInPayload, env: EnvState, state: BatchState) -> CheckInState | None:
    if not payload.is_latest:
        return state.checkins.get(payload.check_in_id)
    candidates = state.in_progress.get(env.id)
    while candidates:
        newest = candidates[-1]
        if newest.status == CheckInStatus.IN_PROGRESS:
            return newest
        candidates.pop()  # closed earlier in this batch
    return None


def _same_monitor(existing: CheckInState, env: EnvState, item: CheckInItem, project: Project,
                  result: BatchResult) -> bool:
    """A check-in id names one check-in of one monitor environment; anything else is an error."""
    if existing.project_id != project.id or existing.monitor_id != env.monitor.id:
        result.reject(ProcessingErrorType.CHECKIN_GUID_PROJECT_MISMATCH,
                      f"check-in {existing.guid} belongs to another monitor", item, project, env.monitor)
        return False
    if existing.env_id != env.id:
        result.reject(ProcessingErrorType.CHECKIN_ENVIRONMENT_MISMATCH,
                      f"check-in {existing.guid} belongs to another environment than {env.environment!r}",
                      item, project, env.monitor)
        return False
    return True


def create_check_in(item: CheckInItem, payload: CheckInPayload, project: Project, env: EnvState,
                    start: datetime, state: BatchState, ids: IdPool) -> CheckInState:
    duration_ms = _duration_ms(payload.duration)
    finished = payload.status != CheckInStatus.IN_PROGRESS
    # A finished check-in that reports its duration started that long before it arrived.
    date_added = start - timedelta(milliseconds=duration_ms) if finished and duration_ms is not None else start
    monitor = env.monitor
    guid = uuid.uuid4() if payload.is_latest else payload.check_in_id
    checkin = CheckInState(
        id=next(ids.checkin_ids), guid=guid, project_id=project.id, monitor_id=monitor.id, env_id=env.id,
        status=payload.status, date_added=date_added, date_clock=item.ts,
        expected_time=env.next_checkin,
        timeout_at=None if finished else timeout_at(date_added, monitor.config),
        duration_ms=duration_ms, monitor_config=monitor.config_json(),
        trace_id=payload.trace_id, release=payload.release, is_new=True)
    state.checkins[guid] = checkin
    if not finished:
        state.in_progress.setdefault(env.id, []).append(checkin)
        state.in_progress[env.id].sort(key=lambda c: c.date_added)
    return checkin


def update_check_in(checkin: CheckInState, item: CheckInItem, payload: CheckInPayload, start: datetime,
                    result: BatchResult, project: Project, monitor: MonitorState) -> bool:
    """Pair a later message with its check-in; False when nothing is accepted."""
    if checkin.status != CheckInStatus.IN_PROGRESS and checkin.status != CheckInStatus.TIMEOUT:
        if payload.status != CheckInStatus.IN_PROGRESS and not is_repeat(checkin, payload):
            result.reject(ProcessingErrorType.CHECKIN_FINISHED,
                          f"check-in {checkin.guid} is already finished", item, project, monitor)
        return False  # a late in_progress, or a client's retry of the closing one: dropped silently
    if payload.status == CheckInStatus.IN_PROGRESS:
        return True  # still running: nothing changes on the check-in itself
    duration_ms = _duration_ms(payload.duration)
    if duration_ms is None:
        duration_ms = max(0, int((start - checkin.date_added).total_seconds() * 1000))
    checkin.duration_ms = duration_ms
    if checkin.status == CheckInStatus.IN_PROGRESS:
        checkin.status = payload.status  # a TIMEOUT stays TIMEOUT and only records the duration
    checkin.date_clock = item.ts
    checkin.dirty = True
    return True


def is_repeat(checkin: CheckInState, payload: CheckInPayload) -> bool:
    """The same closing check-in again (a client retrying after a lost answer): same status,
    and the same duration or none sent. Nothing about the check-in would change."""
    duration_ms = _duration_ms(payload.duration)
    return payload.status == checkin.status and (duration_ms is None or duration_ms == checkin.duration_ms)


def timeout_at(date_added: datetime, config: MonitorConfig) -> datetime:
    return floor_minute(date_added) + timedelta(minutes=config.effective_max_runtime)


def _duration_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


# --------------------------------------------------------------------------- environments


def advance_environment(env: EnvState, ts: datetime) -> None:
    """Move last/next check-in to ``ts`` unless a newer check-in already did (Sentry's mark_ok)."""
    if env.last_checkin is not None and env.last_checkin > ts:
        return
    config = env.monitor.config
    env.last_checkin = ts
    try:
        env.next_checkin = next_expected_minute(config.schedule, config.timezone, floor_minute(ts))
    except ScheduleError:
        env.next_checkin = None  # a schedule with no future fire time: nothing is ever missed
    env.next_checkin_latest = (None if env.next_checkin is None
                               else env.next_checkin + timedelta(minutes=config.effective_checkin_margin))
    env.dirty = True


@functools.lru_cache(maxsize=65536)
def next_expected_minute(schedule: Schedule, tz: str, minute: datetime) -> datetime:
    """``next_expected`` memoized: schedules fire on whole minutes, so the answer after any
    instant of a minute is the answer after its start, and many monitors share schedules."""
    return next_expected(schedule, tz, minute)


def drive_incident(env: EnvState, checkin: CheckInState, result: BatchResult) -> None:
    """Feed one OK/ERROR result to the incident thresholds (consumers.incidents.rules)."""
    config = env.monitor.config
    change: IncidentChange = apply_result(env.incident, checkin.status, checkin.id, checkin.date_added,
                                          config.failure_issue_threshold or 1, config.recovery_threshold or 1)
    env.incident = change.state
    env.status = change.env_status
    env.incident_dirty = True
    if change.open_incident_from is not None:
        start_id, start_ts = change.open_incident_from
        result.incidents_opened.append(IncidentOpen(env.monitor.id, env.id, start_id, start_ts))
    if change.resolve_with is not None:
        resolve_id, resolve_ts = change.resolve_with
        result.incidents_resolved.append(IncidentResolve(env.id, resolve_id, resolve_ts))
    if change.event_type is not None:
        result.incident_events.append((env.id, change.event_type, checkin.id, checkin.date_added))


# --------------------------------------------------------------------------- attachments


def attach(item: AttachmentItem, state: BatchState, result: BatchResult) -> None:
    """Keep an attachment of a known monitor's check-in (the check-in may arrive after it).

    An attachment belongs to one monitor's check-in: naming a check-in of another monitor
    or project is the uploader's error (never an overwrite); one stored before its check-in
    exists is kept under the uploading monitor, where only that monitor's check-in finds it.
    """
    message = item.message
    monitor = state.monitors.get((message.project_id, message.monitor_slug))
    if monitor is None:
        _reject_attachment(item, state, ProcessingErrorType.MONITOR_NOT_FOUND,
                           f"attachment for unknown monitor {message.monitor_slug!r}", result)
        return
    checkin = state.checkins.get(message.check_in_id)
    if checkin is not None and (checkin.project_id, checkin.monitor_id) != (monitor.project_id, monitor.id):
        _reject_attachment(item, state, ProcessingErrorType.CHECKIN_GUID_PROJECT_MISMATCH,
                           f"check-in {message.check_in_id} belongs to another monitor", result, monitor)
        return
    result.attachments.append((message, monitor))


def _reject_attachment(item: AttachmentItem, state: BatchState, kind: ProcessingErrorType, reason: str,
                       result: BatchResult, monitor: MonitorState | None = None) -> None:
    message = item.message
    project = state.projects.get(message.project_id)
    result.errors.append(ProcessingError(
        type=kind, reason=reason, project_id=message.project_id,
        organization_id=project.organization_id if project else None,
        monitor_id=monitor.id if monitor else None,
        checkin={"check_in_id": message.check_in_id.hex, "filename": message.filename}))


# --------------------------------------------------------------------------- rollups


def rollup_deltas(checkins: Sequence[CheckInState]) -> dict[RollupKey, RollupDelta]:
    """Per (env, resolution, bucket): the counts to add. A row contributes by its final status
    and its duration; the delta is its new contribution minus the one it had when loaded."""
    deltas: dict[RollupKey, RollupDelta] = {}
    for checkin in checkins:
        before = checkin.loaded
        if _contribution(checkin.status, checkin.duration_ms) == (_contribution(*before) if before else None):
            continue
        seconds = int(checkin.date_added.timestamp())  # bucket_start, once for both resolutions
        for resolution in ROLLUP_RESOLUTIONS:
            key = (checkin.env_id, resolution, bucket_at(seconds - seconds % resolution))
            row = deltas.get(key)
            if row is None:
                row = deltas[key] = RollupDelta()
            row.count(checkin.status, checkin.duration_ms, +1)
            if before is not None:
                row.count(before[0], before[1], -1)
    return deltas


def _contribution(status: CheckInStatus, duration_ms: int | None) -> tuple[CheckInStatus, int | None] | None:
    """What a row adds to its rollups: nothing while IN_PROGRESS, else its status and duration."""
    return None if status == CheckInStatus.IN_PROGRESS else (status, duration_ms)
