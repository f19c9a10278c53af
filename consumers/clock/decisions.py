"""Clock task decisions: what ``mark_missing`` and ``mark_timeout`` do to the rows they
name. Pure: no SQL, no Kafka, no clock; ``consumers.clock.apply`` loads and locks the
rows, calls :func:`decide` and :func:`plan_writes`, and writes what they return.

* ``mark_missing(ts, env)``: only if ``next_checkin_latest <= ts``. One MISSED check-in
  per missed expected time: the slot in ``next_checkin`` and every later slot whose own
  deadline (slot + margin) is ``<= ts``; ``date_added = expected_time`` = the slot. The
  deadline moves to the first slot not yet missed. At most ``MAX_MISSED_PER_TASK`` slots
  per task; the rest stays due and the next tick continues.
* ``mark_timeout(ts, env, checkin)``: only if the check-in is IN_PROGRESS with
  ``timeout_at <= ts``. It becomes TIMEOUT; the environment fails (incidents) unless a
  newer OK/ERROR check-in exists (an overlapping later run finished).

A redelivered task would change nothing: its condition no longer holds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Final

import orjson

from consumers.clock.store import MissedCheckIn, TaskEnvironment, TimeoutCheckIn
from consumers.clock.volume import Decision as Verdict
from consumers.incidents.outbox import OutboxEvent
from consumers.incidents.rules import IncidentState, apply_result
from consumers.rollups import ROLLUP_RESOLUTIONS, RollupKey, bucket_start
from schemas.clock import MarkMissing, MarkTimeout
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.monitor_config import ConfigError, MonitorConfig, config_from_json
from schemas.schedule import ScheduleError, expected_times, next_expected

__all__ = [
    "MAX_MISSED_PER_TASK",
    "UNSCHEDULABLE_RETRY",
    "Deadlines",
    "Decision",
    "DueMissed",
    "MissedPlan",
    "Task",
    "TaskWrites",
    "TimedOut",
    "Unschedulable",
    "decide",
    "missed_slots",
    "plan_writes",
]

UTC = timezone.utc
MAX_MISSED_PER_TASK: Final = 1440
#: How far past the tick the deadline of a monitor whose schedule cannot be computed moves:
#: it is tried again (and a processing error recorded) at most once an hour.
UNSCHEDULABLE_RETRY: Final = timedelta(hours=1)

Task = MarkMissing | MarkTimeout


@dataclass(frozen=True)
class MissedPlan:
    slots: tuple[datetime, ...]
    next_checkin: datetime
    next_checkin_latest: datetime


@functools.lru_cache(maxsize=4096)
def _config(config_json: str) -> MonitorConfig:
    """Parsed monitor config; cached because most monitors share a handful of configs."""
    return config_from_json(orjson.loads(config_json))


def missed_slots(config: MonitorConfig, next_checkin: datetime | None, next_checkin_latest: datetime | None,
                 ts: datetime, limit: int = MAX_MISSED_PER_TASK) -> MissedPlan | None:
    """The slots missed by tick ``ts`` and the deadline after them; None when not due.

    Raises ScheduleError when the schedule has no next fire time.
    """
    if next_checkin_latest is None or next_checkin_latest > ts:
        return None
    margin = timedelta(minutes=config.effective_checkin_margin)
    first = next_checkin if next_checkin is not None else next_checkin_latest - margin
    later = expected_times(config.schedule, config.timezone, first, ts - margin, max(0, limit - 1))
    slots = (first, *later)
    upcoming = next_expected(config.schedule, config.timezone, slots[-1])
    return MissedPlan(slots, upcoming, upcoming + margin)


@dataclass(frozen=True)
class DueMissed:
    """One MISSED check-in to write."""

    env_id: int
    expected_time: datetime
    tick: datetime


@dataclass(frozen=True)
class TimedOut:
    """One IN_PROGRESS check-in that times out at ``tick``."""

    checkin_id: int
    env_id: int
    date_added: datetime
    tick: datetime
    fails_environment: bool


Decision = DueMissed | TimedOut
Deadlines = dict[int, tuple[datetime | None, datetime | None]]


@dataclass
class _Env:
    """Mutable view of an environment while a batch is decided."""

    row: TaskEnvironment
    next_checkin: datetime | None
    next_checkin_latest: datetime | None


@functools.lru_cache(maxsize=65536)
def _missed_slots_cached(config_json: str, next_checkin: datetime | None, next_checkin_latest: datetime | None,
                         tick: datetime) -> MissedPlan | None:
    """:func:`missed_slots` memoized: monitors sharing a schedule and a due slot (most of
    them, at the top of the hour) share the answer, so a tick computes it once."""
    return missed_slots(_config(config_json), next_checkin, next_checkin_latest, tick)


@dataclass(frozen=True)
class Unschedulable:
    """A monitor environment whose next expected time cannot be computed at ``tick``
    (its config does not parse, or its schedule has no next fire time)."""

    env_id: int
    tick: datetime
    #: The exception's type name (ConfigError, ScheduleError, ValueError), for metrics.
    error_type: str
    reason: str


def _decide_missing(task: MarkMissing, env: _Env, tick: datetime, out: list[Decision],
                    deadlines: Deadlines, failures: list[Unschedulable]) -> None:
    if env.next_checkin_latest is None or env.next_checkin_latest > tick:
        return  # not due: nothing to compute (a broken config is not parsed again)
    try:
        plan = _missed_slots_cached(env.row.config_json, env.next_checkin, env.next_checkin_latest, tick)
    except (ConfigError, ScheduleError, ValueError) as exc:
        _unschedulable(env, tick, exc, deadlines, failures)
        return
    if plan is None:
        return
    out.extend(DueMissed(env.row.id, slot, tick) for slot in plan.slots)
    env.next_checkin, env.next_checkin_latest = plan.next_checkin, plan.next_checkin_latest
    deadlines[env.row.id] = (plan.next_checkin, plan.next_checkin_latest)


def _unschedulable(env: _Env, tick: datetime, exc: Exception, deadlines: Deadlines,
                   failures: list[Unschedulable]) -> None:
    """One broken monitor must not stop the stream, nor be forgotten: its deadline moves
    :data:`UNSCHEDULABLE_RETRY` past the tick (the expected slot stays), so it is tried
    again, and marked missed as soon as its schedule can be computed; each try that
    fails records a processing error."""
    latest = tick + UNSCHEDULABLE_RETRY
    expected = env.next_checkin if env.next_checkin is not None else env.next_checkin_latest
    env.next_checkin, env.next_checkin_latest = expected, latest
    deadlines[env.row.id] = (expected, latest)
    reason = (f"The next expected check-in cannot be computed ({exc}); "
              f"no check-in is marked missed until the schedule is fixed (tried again at {latest:%Y-%m-%dT%H:%MZ})")
    failures.append(Unschedulable(env.row.id, tick, type(exc).__name__, reason))


def _decide_timeout(task: MarkTimeout, checkin: TimeoutCheckIn | None, tick: datetime,
                    done: set[int], out: list[Decision]) -> None:
    if checkin is None or checkin.id in done or checkin.env_id != task.monitor_environment_id:
        return
    if checkin.status != CheckInStatus.IN_PROGRESS or checkin.timeout_at is None or checkin.timeout_at > tick:
        return
    done.add(checkin.id)
    out.append(TimedOut(checkin.id, checkin.env_id, checkin.date_added, tick, not checkin.has_newer_result))


def decide(tasks: Sequence[Task], envs: dict[int, TaskEnvironment], checkins: dict[int, TimeoutCheckIn],
           failures: list[Unschedulable] | None = None) -> tuple[list[Decision], Deadlines]:
    """What a batch of tasks does, in task order, given the locked rows they name.

    Environments whose schedule cannot be computed are appended to ``failures`` (their
    deadline is pushed forward in the returned deadlines)."""
    views = {env_id: _Env(row, row.next_checkin, row.next_checkin_latest) for env_id, row in envs.items()}
    out: list[Decision] = []
    deadlines: Deadlines = {}
    failures = [] if failures is None else failures
    timed_out: set[int] = set()
    for task in tasks:
        env = views.get(task.monitor_environment_id)
        if env is None or env.row.disabled:
            continue
        tick = datetime.fromtimestamp(task.ts, UTC)
        if isinstance(task, MarkMissing):
            _decide_missing(task, env, tick, out, deadlines, failures)
        else:
            _decide_timeout(task, checkins.get(task.checkin_id), tick, timed_out, out)
    return out, deadlines


@dataclass
class TaskWrites:
    missed: list[MissedCheckIn] = field(default_factory=list)
    timeouts: dict[int, datetime] = field(default_factory=dict)
    #: IN_PROGRESS check-ins whose timeout fell in a system incident: UNKNOWN, not TIMEOUT.
    unknowns: dict[int, datetime] = field(default_factory=dict)
    rollups: dict[RollupKey, tuple[int, int]] = field(default_factory=dict)
    #: UNKNOWN counts per rollup key (failures the volume guard attributed to the system).
    unknown_rollups: dict[RollupKey, int] = field(default_factory=dict)
    states: dict[int, tuple[IncidentState, MonitorStatus]] = field(default_factory=dict)
    opened: list[tuple[int, int, int | None, datetime]] = field(default_factory=list)
    #: Incident events for the outbox, in decision order.
    events: list[OutboxEvent] = field(default_factory=list)
    #: (tick, check-in id, env id, first check-in of the failure run it counted in) of
    #: synthetic failures written in a pending tick.
    held: list[tuple[datetime, int, int, int | None]] = field(default_factory=list)


def _count(writes: TaskWrites, env_id: int, date_added: datetime, missed: int, timeout: int,
           unknown: int = 0) -> None:
    for resolution in ROLLUP_RESOLUTIONS:
        key = (env_id, resolution, bucket_start(date_added, resolution))
        if unknown:
            writes.unknown_rollups[key] = writes.unknown_rollups.get(key, 0) + unknown
            continue
        old_missed, old_timeout = writes.rollups.get(key, (0, 0))
        writes.rollups[key] = (old_missed + missed, old_timeout + timeout)


def plan_writes(decisions: Sequence[Decision], envs: dict[int, TaskEnvironment],
                checkin_ids: Iterator[int], verdicts: dict[datetime, Verdict] | None = None) -> TaskWrites:
    """Turn decisions into rows: MISSED check-ins (with pre-allocated ids), TIMEOUT
    transitions, rollup increments and incident changes, applied in decision order.

    ``verdicts`` are the volume guard's decisions of the ticks (missing: normal). In an
    INCIDENT tick the failures are UNKNOWN with no incident effect; in a pending one
    (abnormal, recovering) they are written and counted as usual but their outbox
    events are held and they are remembered, so that the tick's resolution can release
    or undo them."""
    writes = TaskWrites()
    states = {env_id: env.incident for env_id, env in envs.items()}
    verdicts = verdicts or {}
    for decision in decisions:
        env = envs[decision.env_id]
        verdict = verdicts.get(decision.tick, Verdict.NORMAL)
        system = verdict is Verdict.INCIDENT
        if isinstance(decision, DueMissed):
            checkin_id, status, ts = next(checkin_ids), CheckInStatus.MISSED, decision.expected_time
            written = CheckInStatus.UNKNOWN if system else status
            writes.missed.append(MissedCheckIn(checkin_id, env.id, ts, decision.tick, written))
            _count(writes, env.id, ts, int(not system), 0, int(system))
        else:
            checkin_id, status, ts = decision.checkin_id, CheckInStatus.TIMEOUT, decision.date_added
            (writes.unknowns if system else writes.timeouts)[checkin_id] = decision.tick
            _count(writes, env.id, ts, 0, int(not system), int(system))
            if not decision.fails_environment:
                if verdict.pending:  # no incident effect, but it becomes UNKNOWN if the tick was the system's
                    writes.held.append((decision.tick, checkin_id, env.id, None))
                continue
        if system:
            continue
        _apply_incident(writes, states, env, status, checkin_id, ts, decision.tick, verdict.pending)
        if verdict.pending:
            writes.held.append((decision.tick, checkin_id, env.id, states[env.id].failure_run_start_id))
    return writes


def _apply_incident(writes: TaskWrites, states: dict[int, IncidentState], env: TaskEnvironment,
                    status: CheckInStatus, checkin_id: int, ts: datetime, tick: datetime,
                    held: bool = False) -> None:
    failure_threshold, recovery_threshold = _thresholds(env.config_json)
    change = apply_result(states[env.id], status, checkin_id, ts, failure_threshold, recovery_threshold)
    states[env.id] = change.state
    writes.states[env.id] = (change.state, change.env_status)
    if change.open_incident_from is not None:
        writes.opened.append((env.monitor_id, env.id, *change.open_incident_from))
    if change.event_type is not None:
        writes.events.append(OutboxEvent(env.id, change.event_type, checkin_id, ts, tick, held))


def _thresholds(config_json: str) -> tuple[int, int]:
    """Failure and recovery thresholds; 1 and 1 for a config that does not parse (a
    TIMEOUT of such a monitor still counts, rather than stopping the batch)."""
    try:
        config = _config(config_json)
    except (ConfigError, ValueError):
        return 1, 1
    return config.failure_issue_threshold or 1, config.recovery_threshold or 1
