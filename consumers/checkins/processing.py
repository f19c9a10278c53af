"""Check-in processing decisions: pure functions over one batch and the state it touches.

No SQL, no Kafka, no clock. :func:`process_batch` takes the decoded messages of one batch
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import orjson

from consumers.incidents.rules import INITIAL_STATE, IncidentChange, IncidentState, apply_result
from consumers.rollups import ROLLUP_RESOLUTIONS, RollupDelta, RollupKey, bucket_at
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType
from schemas.messages import (
    CheckInAttachmentMessage,
    CheckInMessage,
    CheckInPayload,
    MessageRejected,
    PayloadError,
    error_excerpt,
)
from schemas.minutes import floor_minute
from schemas.monitor_config import (
    ConfigError,
    MonitorConfig,
    config_to_json,
    merge_config,
    parse_monitor_config,
)
from schemas.schedule import Schedule, ScheduleError, next_expected

UTC = timezone.utc
DEFAULT_RATE_LIMIT: Final = 6
#: Sentry's MAX_ENVIRONMENTS_PER_MONITOR.
DEFAULT_MAX_ENVIRONMENTS: Final = 1000
_FINAL_STATUSES: Final = frozenset({CheckInStatus.OK, CheckInStatus.ERROR})
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


# --------------------------------------------------------------------------- the batch


def process_batch(items: Sequence[Item], state: BatchState, ids: IdPool,
                  config: ProcessorConfig = ProcessorConfig()) -> BatchResult:
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


# --------------------------------------------------------------------------- monitors


def upsert_monitor(payload: CheckInPayload, project: Project, state: BatchState, ids: IdPool,
                   item: CheckInItem, result: BatchResult) -> MonitorState | None:
    """The check-in's monitor, created or updated from ``monitor_config``; None when rejected.

    An invalid config is recorded as MONITOR_INVALID_CONFIG either way; an existing
    monitor is then returned unchanged, so its check-in is recorded with the stored config.
    """
    key = (project.id, payload.monitor_slug)
    monitor = state.monitors.get(key)
    if payload.monitor_config is None:
        if monitor is None:
            result.reject(ProcessingErrorType.MONITOR_NOT_FOUND,
                          f"monitor {payload.monitor_slug!r} does not exist and no monitor_config was sent",
                          item, project)
        return monitor
    update = parse_config(payload.monitor_config)
    if isinstance(update, ConfigError):
        result.reject(ProcessingErrorType.MONITOR_INVALID_CONFIG, update.reason, item, project, monitor)
        return monitor
    if monitor is None:
        monitor = MonitorState(id=next(ids.monitor_ids), project_id=project.id,
                               organization_id=project.organization_id, slug=payload.monitor_slug,
                               name=payload.monitor_slug, status=MonitorStatus.ACTIVE,
                               config=merge_config(update, update), is_new=True)
        state.monitors[key] = monitor
        return monitor
    merged = merge_cached(monitor.config, update, update.present_keys)
    if merged != monitor.config:
        monitor.set_config(merged)
    return monitor


#: Real configs are ~200 bytes; the cache keeps at most 4,096 keys of this size (16 MiB).
_MAX_CACHED_CONFIG_BYTES: Final = 4096


def parse_config(raw: dict[str, Any]) -> MonitorConfig | ConfigError:
    """``parse_monitor_config``, memoized: SDKs resend the same config with every check-in."""
    try:
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-serializable (cannot come from a JSON payload): parse it directly
        return _parse_config(raw)
    if len(canonical) > _MAX_CACHED_CONFIG_BYTES:
        return _parse_config(raw)  # a config this large is not a real one resent: keep it out of the cache
    return _parse_canonical_config(canonical)



@functools.lru_cache(maxsize=4096)
def _parse_canonical_config(canonical: bytes) -> MonitorConfig | ConfigError:
    return _parse_config(orjson.loads(canonical))


def _parse_config(raw: dict[str, Any]) -> MonitorConfig | ConfigError:
    try:
        return parse_monitor_config(raw)
    except ConfigError as exc:
        return exc


@functools.lru_cache(maxsize=4096)
def merge_cached(existing: MonitorConfig, update: MonitorConfig, present_keys: frozenset[str]) -> MonitorConfig:
    """``merge_config`` memoized; ``present_keys`` is part of the key because MonitorConfig
    equality ignores it while the merge depends on it."""
    return merge_config(existing, update)


def has_environment_room(monitor: MonitorState, environment: str, state: BatchState, limit: int) -> bool:
    """False when ``environment`` is new and the monitor already has ``limit`` environments
    (one envelope must not create thousands, each then missed and alerted on every tick)."""
    if (monitor.project_id, monitor.slug, environment) in state.envs:
        return True
    return limit <= 0 or state.env_counts.get(monitor.id, 0) < limit


def ensure_environment(monitor: MonitorState, environment: str, state: BatchState, ids: IdPool) -> EnvState:
    key = (monitor.project_id, monitor.slug, environment)
    env = state.envs.get(key)
    if env is None:
        env = EnvState(id=next(ids.env_ids), monitor=monitor, environment=environment, is_new=True)
        state.envs[key] = env
        state.env_counts[monitor.id] = state.env_counts.get(monitor.id, 0) + 1
    return env


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
