"""Clock tasks: ``mark_missing`` and ``mark_timeout``, applied idempotently in batches.

A batch of tasks is one PostgreSQL transaction: the environments and check-ins it names
are locked (id order), each task re-checks its condition against the locked rows, then
the MISSED check-ins, the TIMEOUT transitions, the new deadlines, the rollups, the
incidents and the consumed offsets are written together. A redelivered task is skipped by
its stored offset, and would change nothing anyway: its condition no longer holds.

* ``mark_missing(ts, env)``: only if ``next_checkin_latest <= ts``. One MISSED check-in
  per missed expected time: the slot in ``next_checkin`` and every later slot whose own
  deadline (slot + margin) is ``<= ts``; ``date_added = expected_time`` = the slot. The
  deadline moves to the first slot not yet missed. At most ``MAX_MISSED_PER_TASK`` slots
  per task; the rest stays due and the next tick continues.
* ``mark_timeout(ts, env, checkin)``: only if the check-in is IN_PROGRESS with
  ``timeout_at <= ts``. It becomes TIMEOUT; the environment fails (incidents) unless a
  newer OK/ERROR check-in exists (an overlapping later run finished).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import faust
import orjson
import psycopg

from consumers import database, metrics, rollups
from consumers.clock import store as clock_store
from consumers.clock import volume_store
from consumers.clock.dispatch import Guard, KafkaTaskSink, TaskSendError, dispatch_tick
from consumers.clock.store import MissedCheckIn, TaskEnvironment, TimeoutCheckIn
from consumers.clock.volume import Decision as Verdict
from consumers.context import WorkerContext
from consumers.database import StoreError, StoreUnavailable, wrap_exceptions
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from consumers.incidents.outbox import OutboxEvent
from consumers.incidents.rules import IncidentState, apply_result
from consumers.rollups import ROLLUP_RESOLUTIONS, bucket_start
from schemas.clock import MarkMissing, MarkTimeout, decode_clock_task, decode_clock_tick
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.messages import MessageDecodeError
from schemas.monitor_config import ConfigError, MonitorConfig, config_from_json
from schemas.schedule import ScheduleError, expected_times, next_expected

__all__ = [
    "DueMissed",
    "TaskBatch",
    "TaskWrites",
    "TimedOut",
    "apply_task_batch",
    "decide",
    "missed_slots",
    "plan_writes",
    "register",
]

log = logging.getLogger("cronpipe.clock.tasks")

UTC = timezone.utc
MAX_MISSED_PER_TASK: Final = 1440
TASK_BATCH_SIZE: Final = 5000
TASK_BATCH_WITHIN_S: Final = 0.2
#: Task consumers per worker (threads, each with its own connection and partitions).
TASK_CONSUMERS: Final = 2

Task = MarkMissing | MarkTimeout


@dataclass(frozen=True)
class TaskMessage:
    """A decoded task and where it was read."""

    partition: int
    offset: int
    #: None for a message that did not decode: only its offset counts.
    task: Task | None


# --------------------------------------------------------------------------- decisions (pure)


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


def _decide_missing(task: MarkMissing, env: _Env, tick: datetime, out: list[Decision],
                    deadlines: Deadlines) -> None:
    try:
        plan = _missed_slots_cached(env.row.config_json, env.next_checkin, env.next_checkin_latest, tick)
    except (ConfigError, ScheduleError, ValueError) as exc:
        # One broken monitor must not stop the stream: stop its deadline and say why.
        log.warning("environment %d: cannot compute missed slots (%s); deadline cleared", env.row.id, exc)
        env.next_checkin = env.next_checkin_latest = None
        deadlines[env.row.id] = (None, None)
        return
    if plan is None:
        return
    out.extend(DueMissed(env.row.id, slot, tick) for slot in plan.slots)
    env.next_checkin, env.next_checkin_latest = plan.next_checkin, plan.next_checkin_latest
    deadlines[env.row.id] = (plan.next_checkin, plan.next_checkin_latest)


def _decide_timeout(task: MarkTimeout, checkin: TimeoutCheckIn | None, tick: datetime,
                    done: set[int], out: list[Decision]) -> None:
    if checkin is None or checkin.id in done or checkin.env_id != task.monitor_environment_id:
        return
    if checkin.status != CheckInStatus.IN_PROGRESS or checkin.timeout_at is None or checkin.timeout_at > tick:
        return
    done.add(checkin.id)
    out.append(TimedOut(checkin.id, checkin.env_id, checkin.date_added, tick, not checkin.has_newer_result))


def decide(tasks: Sequence[Task], envs: dict[int, TaskEnvironment],
           checkins: dict[int, TimeoutCheckIn]) -> tuple[list[Decision], Deadlines]:
    """What a batch of tasks does, in task order, given the locked rows they name."""
    views = {env_id: _Env(row, row.next_checkin, row.next_checkin_latest) for env_id, row in envs.items()}
    out: list[Decision] = []
    deadlines: Deadlines = {}
    timed_out: set[int] = set()
    for task in tasks:
        env = views.get(task.monitor_environment_id)
        if env is None or env.row.disabled:
            continue
        tick = datetime.fromtimestamp(task.ts, UTC)
        if isinstance(task, MarkMissing):
            _decide_missing(task, env, tick, out, deadlines)
        else:
            _decide_timeout(task, checkins.get(task.checkin_id), tick, timed_out, out)
    return out, deadlines


@dataclass
class TaskWrites:
    missed: list[MissedCheckIn] = field(default_factory=list)
    timeouts: dict[int, datetime] = field(default_factory=dict)
    #: IN_PROGRESS check-ins whose timeout fell in a system incident: UNKNOWN, not TIMEOUT.
    unknowns: dict[int, datetime] = field(default_factory=dict)
    rollups: dict[tuple[int, int, datetime], tuple[int, int]] = field(default_factory=dict)
    #: UNKNOWN counts per rollup key (failures the volume guard attributed to the system).
    unknown_rollups: dict[tuple[int, int, datetime], int] = field(default_factory=dict)
    states: dict[int, tuple[IncidentState, MonitorStatus]] = field(default_factory=dict)
    opened: list[tuple[int, int, int | None, datetime]] = field(default_factory=list)
    #: Incident events for the outbox, in decision order.
    events: list[OutboxEvent] = field(default_factory=list)
    #: (tick, check-in id, env id) of synthetic failures written in a pending tick.
    held: list[tuple[datetime, int, int]] = field(default_factory=list)


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
                continue
        if system:
            continue
        if verdict.pending:
            writes.held.append((decision.tick, checkin_id, env.id))
        _apply_incident(writes, states, env, status, checkin_id, ts, decision.tick, verdict.pending)
    return writes


def _apply_incident(writes: TaskWrites, states: dict[int, IncidentState], env: TaskEnvironment,
                    status: CheckInStatus, checkin_id: int, ts: datetime, tick: datetime,
                    held: bool = False) -> None:
    config = _config(env.config_json)
    change = apply_result(states[env.id], status, checkin_id, ts,
                          config.failure_issue_threshold or 1, config.recovery_threshold or 1)
    states[env.id] = change.state
    writes.states[env.id] = (change.state, change.env_status)
    if change.open_incident_from is not None:
        writes.opened.append((env.monitor_id, env.id, *change.open_incident_from))
    if change.event_type is not None:
        writes.events.append(OutboxEvent(env.id, change.event_type, checkin_id, ts, tick, held))


# --------------------------------------------------------------------------- the transaction


@dataclass(frozen=True)
class TaskBatch:
    """What one applied batch did (for logs, tests and the benchmark)."""

    skipped: int
    missed: int
    timeouts: int
    incidents_opened: int


def apply_task_batch(conn: psycopg.Connection[Any], messages: Sequence[TaskMessage], *, group: str,
                     topic: str, retention_days: int = 90, guard: bool = True) -> TaskBatch:
    """Apply ``messages`` (in partition order) in one transaction with their offsets.

    ``conn`` must not be inside another transaction. Raises psycopg errors (nothing
    committed: the caller retries the same batch).
    """
    with conn.transaction():
        stored = database.load_offsets(conn, group, topic, {m.partition for m in messages})
        fresh = [m for m in messages if m.offset >= stored.get(m.partition, 0)]
        tasks = [m.task for m in fresh if m.task is not None]
        # Before the environments: a tick's resolution locks its decision, then environments.
        verdicts = volume_store.lock_decisions(
            conn, {datetime.fromtimestamp(t.ts, UTC) for t in tasks}) if guard else {}
        envs = clock_store.load_task_environments(conn, {t.monitor_environment_id for t in tasks})
        checkins = clock_store.load_timeout_checkins(
            conn, {t.checkin_id for t in tasks if isinstance(t, MarkTimeout)})
        decisions, deadlines = decide(tasks, envs, checkins)
        ids = clock_store.allocate_checkin_ids(conn, sum(isinstance(d, DueMissed) for d in decisions))
        writes = plan_writes(decisions, envs, iter(ids), verdicts)
        _write(conn, writes, deadlines, retention_days)
        database.save_offsets(conn, group, topic, _next_offsets(messages))
    return TaskBatch(skipped=len(messages) - len(fresh), missed=len(writes.missed),
                     timeouts=len(writes.timeouts), incidents_opened=len(writes.opened))


def _write(conn: psycopg.Connection[Any], writes: TaskWrites, deadlines: Deadlines, retention_days: int) -> None:
    clock_store.insert_missed(conn, writes.missed, retention_days)
    clock_store.mark_timeouts(conn, writes.timeouts)
    clock_store.mark_timeouts(conn, writes.unknowns, CheckInStatus.UNKNOWN)
    rollups.add_rollups(conn, writes.rollups, writes.unknown_rollups)
    incident_store.open_incidents(conn, writes.opened)
    outbox.write_events(conn, writes.events)
    volume_store.hold(conn, writes.held)
    clock_store.update_environments(conn, deadlines, writes.states)


def _next_offsets(messages: Sequence[TaskMessage]) -> dict[int, int]:
    offsets: dict[int, int] = defaultdict(int)
    for m in messages:
        offsets[m.partition] = max(offsets[m.partition], m.offset + 1)
    return dict(offsets)


# --------------------------------------------------------------------------- the agents

# Capped at 2 s (as the pools, consumers.pools): recovery after an outage must not grow with it.
_RETRY_DELAYS_S: Final = (0.5, 1.0, 2.0)


async def _with_retries(what: str, work: Callable[[], Any], stopping: threading.Event) -> Any:
    """Run ``work`` in a thread until it succeeds: database and broker outages are
    transient here (nothing was committed), anything else is a bug and propagates.
    Once the worker is stopping no attempt starts: this waits to be cancelled (the work
    stays uncommitted and is redelivered)."""
    def attempt() -> Any:
        with wrap_exceptions():
            return work()

    for tries in itertools.count():
        if stopping.is_set():
            await asyncio.Event().wait()
        try:
            return await asyncio.to_thread(attempt)
        except (StoreUnavailable, TaskSendError) as exc:
            delay = _RETRY_DELAYS_S[min(tries, len(_RETRY_DELAYS_S) - 1)]
            log.warning("%s not committed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)


def decode_task_message(partition: int, offset: int, value: bytes | None) -> TaskMessage:
    """A task and where it was read; an undecodable one keeps only its position (it is
    logged, and its offset commits with the batch, so it never blocks the partition)."""
    try:
        return TaskMessage(partition, offset, decode_clock_task(value or b""))
    except MessageDecodeError as exc:
        log.error("undecodable clock task [%d]@%d skipped: %s", partition, offset, exc)
        return TaskMessage(partition, offset, None)


class TaskConsumer:
    """``monitors-clock-tasks`` read in batches with confluent-kafka, applied in one thread.

    Why not a faust stream: faust spends about 100 µs of Python per event (measured with
    ``cronpipe bench clock`` and a do-nothing apply: 100,000 tasks took 14.5 s), more than
    applying a task costs, and a tick covering 100,000 monitors must finish in seconds.
    confluent-kafka hands over thousands of messages per call from C. It still runs inside
    the faust worker (a faust task, see :func:`register`), and the offsets still live in
    PostgreSQL only: on every assignment the consumer seeks to them, so a restart resumes
    exactly after the last committed batch. ``run_once`` can be stepped by tests.
    """

    def __init__(self, ctx: WorkerContext) -> None:
        from confluent_kafka import Consumer

        self._ctx = ctx
        # Its own connection, not the pool's: a long batch must not starve the processor.
        self._conn: psycopg.Connection[Any] | None = None
        self._topic = ctx.topics.clock_tasks
        self._consumer = Consumer({
            "bootstrap.servers": ctx.settings.kafka_bootstrap,
            "group.id": f"{ctx.consumer_group}-clock-tasks",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
        })
        self._consumer.subscribe([self._topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            with wrap_exceptions(), self._ctx.pool.connection() as conn:
                stored = database.load_all_offsets(conn, self._ctx.consumer_group, self._topic)
        except StoreUnavailable as exc:  # earliest instead: redelivered tasks change nothing
            log.warning("stored offsets unavailable on assignment (%s); starting from the earliest", exc)
            stored = {}
        for tp in partitions:
            if tp.partition in stored:
                tp.offset = stored[tp.partition]
        consumer.assign(partitions)

    def run_once(self, stop: threading.Event) -> bool:
        """Consume and apply one batch; True when there were messages."""
        raw = self._consumer.consume(TASK_BATCH_SIZE, TASK_BATCH_WITHIN_S)
        messages: list[TaskMessage] = []
        for m in raw:
            partition, offset = m.partition(), m.offset()
            if m.error() is not None or partition is None or offset is None:
                log.warning("clock tasks consumer: %s", m.error() or "a message without a position")
                continue
            messages.append(decode_task_message(partition, offset, m.value()))
        if messages and not self._ctx.stopping.is_set():  # uncommitted: redelivered after the restart
            self._apply_until_committed(messages, stop)
        return bool(messages)

    def _apply_until_committed(self, messages: list[TaskMessage], stop: threading.Event) -> None:
        started = time.perf_counter()
        for tries in itertools.count():
            if self._ctx.stopping.is_set():
                return  # no clock-task work after the stop began: the batch is redelivered
            try:
                with wrap_exceptions():
                    done = apply_task_batch(self._connection(), messages, group=self._ctx.consumer_group,
                                            topic=self._topic,
                                            retention_days=self._ctx.settings.retention_days_default,
                                            guard=self._ctx.settings.volume_guard)
                break
            except StoreUnavailable as exc:
                self._disconnect()
                if stop.is_set() or self._ctx.stopping.is_set():
                    return  # nothing committed: the next run redelivers the batch
                delay = _RETRY_DELAYS_S[min(tries, len(_RETRY_DELAYS_S) - 1)]
                log.warning("batch of %d clock tasks not committed (%s); retrying in %.1fs", len(messages), exc, delay)
                stop.wait(delay)
        if done.missed or done.timeouts:
            log.info("clock tasks: %d tasks -> %d missed, %d timeouts, %d incidents opened in %.2fs",
                     len(messages), done.missed, done.timeouts, done.incidents_opened,
                     time.perf_counter() - started)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._ctx.settings.effective_database_url(), autocommit=True,
                                         application_name=f"cronpipe-{self._ctx.consumer_group}-clock-tasks")
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set (the batch in flight finishes first), then leave the group."""
        try:
            while not stop.is_set() and not self._ctx.stopping.is_set():
                self.run_once(stop)
        finally:
            self._consumer.close()
            self._disconnect()


async def _run_in_own_thread(run: Callable[[threading.Event], None]) -> None:
    """Run ``run(stop)`` in a dedicated thread; on cancellation set ``stop`` and wait for
    it to finish its batch (SIGTERM drains, never abandons a transaction half way)."""
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clock-tasks") as pool:
        work = asyncio.get_running_loop().run_in_executor(pool, run, stop)
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            await asyncio.wait([work])
            raise


def register(app: faust.App, ctx: WorkerContext) -> None:
    """Tick dispatch (a faust agent on ``monitors-clock-tick``) and task application
    (:class:`TaskConsumer` on ``monitors-clock-tasks``, run as a faust task)."""
    group = ctx.consumer_group
    tick_topic = app.topic(ctx.topics.clock_tick, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    sink = KafkaTaskSink(ctx.settings.kafka_bootstrap, ctx.topics.clock_tasks)
    settings = ctx.settings
    guard = Guard(settings.volume_abnormal_pct, settings.volume_incident_pct) if settings.volume_guard else None

    def dispatch(tick: datetime, partition: int, offset: int) -> None:
        with ctx.pool.connection() as conn:
            result = dispatch_tick(conn, sink, tick, group=group, topic=ctx.topics.clock_tick,
                                   partition=partition, offset=offset, guard=guard)
        if result is not None and guard is not None:
            metrics.observe_decision(result.decision)

    async def stop_worker(exc: StoreError) -> None:
        # Not transient (a bug or a bad schema): retrying cannot help; stop the worker.
        log.critical("clock stopped: %s", exc)
        ctx.stop_fatally(exc)
        await app.crash(exc)

    @app.agent(tick_topic, concurrency=1, name=f"{group}-clock-dispatch")
    async def clock_dispatch(stream: faust.StreamT[bytes]) -> None:
        ctx.health.set_agent("clock_dispatch", "running")
        try:
            async for event in stream.events():
                message = event.message
                try:
                    tick = datetime.fromtimestamp(decode_clock_tick(message.value).ts, UTC)
                except MessageDecodeError as exc:
                    log.error("undecodable clock tick @%d skipped: %s", message.offset, exc)
                    continue
                try:
                    await _with_retries(f"tick {tick:%Y-%m-%dT%H:%M}",
                                        functools.partial(dispatch, tick, message.partition, message.offset),
                                        ctx.stopping)
                except StoreError as exc:
                    await stop_worker(exc)
                    return
        finally:
            ctx.health.set_agent("clock_dispatch", "stopped")

    consumers = itertools.count()

    async def consume_tasks() -> None:
        name = f"clock_tasks-{next(consumers)}"
        ctx.health.set_agent(name, "running")
        try:
            await _run_in_own_thread(TaskConsumer(ctx).run)
        except StoreError as exc:
            await stop_worker(exc)
        finally:
            ctx.health.set_agent(name, "stopped")

    # Several consumers of one group split the task partitions; tasks are keyed by
    # environment, so their batches never touch the same rows and run in parallel.
    for _ in range(TASK_CONSUMERS):
        app.task(consume_tasks)
