"""PostgreSQL for the clock, its dispatch and its tasks: named queries, set-based writes.

Partition positions are written by the processor (``consumers.checkins.store.advance_partition_clocks``),
consumer offsets with ``schemas.database.load_offsets`` / ``save_offsets`` and rollup
counts with ``consumers.rollups.add_rollups``, all three shared with it.

Every function runs in the caller's connection; the callers own the transactions. Rows
come back as frozen dataclasses. Row locks are always taken in id order (environments,
then check-ins) so the clock tasks and the check-in processor cannot deadlock on order
alone; a deadlock that PostgreSQL still detects is a transient error the caller retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from consumers.incidents.rules import IncidentState
from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType

Conn = psycopg.Connection[Any]

# --------------------------------------------------------------------------- clock

LOAD_POSITIONS = "SELECT partition, ts FROM partition_clocks WHERE topic = %(topic)s::text"

LOAD_LAST_TICK = "SELECT last_tick FROM clock_state WHERE name = %(name)s::text"

# The compare-and-set of the clock: only the caller that read ``old`` moves it.
CAS_LAST_TICK = """
UPDATE clock_state SET last_tick = %(new)s::timestamptz
 WHERE name = %(name)s::text AND last_tick = %(old)s::timestamptz
"""

INIT_LAST_TICK = """
INSERT INTO clock_state (name, last_tick) VALUES (%(name)s::text, %(new)s::timestamptz)
ON CONFLICT (name) DO NOTHING
"""

ADD_PENDING_TICKS = """
INSERT INTO clock_pending_ticks (name, ts, claimed_at)
SELECT %(name)s::text, ts, clock_timestamp() FROM unnest(%(ticks)b::timestamptz[]) AS u (ts)
ON CONFLICT (name, ts) DO NOTHING
"""

# Wall time is right here: the lease measures how long a producer has been silent,
# not where the message-time clock is.
RECLAIM_PENDING_TICKS = """
UPDATE clock_pending_ticks SET claimed_at = clock_timestamp()
 WHERE name = %(name)s::text AND claimed_at < clock_timestamp() - %(lease)s::interval
RETURNING ts
"""

DELETE_PENDING_TICKS = """
DELETE FROM clock_pending_ticks WHERE name = %(name)s::text AND ts = ANY(%(ticks)b::timestamptz[])
"""


def load_positions(conn: Conn, topic: str) -> dict[int, datetime]:
    return {int(p): ts for p, ts in conn.execute(LOAD_POSITIONS, {"topic": topic})}


def load_last_tick(conn: Conn, name: str) -> datetime | None:
    row = conn.execute(LOAD_LAST_TICK, {"name": name}).fetchone()
    return None if row is None else row[0]


def compare_and_set_last_tick(conn: Conn, name: str, old: datetime | None, new: datetime) -> bool:
    """Move ``last_tick`` from ``old`` (None: no row yet) to ``new``; True when this call did."""
    query = INIT_LAST_TICK if old is None else CAS_LAST_TICK
    return conn.execute(query, {"name": name, "old": old, "new": new}).rowcount == 1


def add_pending_ticks(conn: Conn, name: str, ticks: Sequence[datetime]) -> None:
    conn.execute(ADD_PENDING_TICKS, {"name": name, "ticks": list(ticks)})


def reclaim_pending_ticks(conn: Conn, name: str, lease: timedelta) -> list[datetime]:
    return sorted(row[0] for row in conn.execute(RECLAIM_PENDING_TICKS, {"name": name, "lease": lease}))


def delete_pending_ticks(conn: Conn, name: str, ticks: Sequence[datetime]) -> None:
    conn.execute(DELETE_PENDING_TICKS, {"name": name, "ticks": list(ticks)})


# --------------------------------------------------------------------------- dispatch

_NOT_DISABLED = f"m.status <> {int(MonitorStatus.DISABLED)} AND me.status <> {int(MonitorStatus.DISABLED)}"

DUE_ENVIRONMENTS = f"""
SELECT me.id, me.next_checkin_latest
  FROM monitor_environments me JOIN monitors m ON m.id = me.monitor_id
 WHERE me.next_checkin_latest <= %(tick)s::timestamptz
   AND (me.next_checkin_latest, me.id) > (%(after_ts)s::timestamptz, %(after_id)s::bigint)
   AND {_NOT_DISABLED}
 ORDER BY me.next_checkin_latest, me.id
 LIMIT %(limit)s
"""

DUE_TIMEOUTS = f"""
SELECT c.id, c.monitor_environment_id, c.timeout_at
  FROM checkins c
  JOIN monitor_environments me ON me.id = c.monitor_environment_id
  JOIN monitors m ON m.id = me.monitor_id
 WHERE c.status = {int(CheckInStatus.IN_PROGRESS)} AND c.timeout_at <= %(tick)s::timestamptz
   AND (c.timeout_at, c.id) > (%(after_ts)s::timestamptz, %(after_id)s::bigint)
   AND {_NOT_DISABLED}
 ORDER BY c.timeout_at, c.id
 LIMIT %(limit)s
"""

LOAD_CURSOR = """
SELECT after_ts, after_id FROM clock_dispatch_cursors WHERE consumer_group = %(group)s::text AND kind = %(kind)s::text
"""

SAVE_CURSOR = """
INSERT INTO clock_dispatch_cursors (consumer_group, kind, after_ts, after_id)
VALUES (%(group)s::text, %(kind)s::text, %(after_ts)s::timestamptz, %(after_id)s::bigint)
ON CONFLICT (consumer_group, kind) DO UPDATE SET after_ts = EXCLUDED.after_ts, after_id = EXCLUDED.after_id
"""

#: Before any real row in keyset order.
_START = (datetime.fromisoformat("0001-01-02T00:00:00+00:00"), 0)


@dataclass(frozen=True)
class DueTimeout:
    checkin_id: int
    env_id: int
    timeout_at: datetime


Cursor = tuple[datetime, int] | None


def load_cursor(conn: Conn, group: str, kind: str) -> Cursor:
    row = conn.execute(LOAD_CURSOR, {"group": group, "kind": kind}).fetchone()
    return None if row is None or row[0] is None else (row[0], int(row[1]))


def save_cursor(conn: Conn, group: str, kind: str, cursor: Cursor) -> None:
    after_ts, after_id = cursor if cursor is not None else (None, None)
    conn.execute(SAVE_CURSOR, {"group": group, "kind": kind, "after_ts": after_ts, "after_id": after_id})


def iter_due_environments(conn: Conn, tick: datetime, after: Cursor, limit: int,
                          chunk: int) -> Iterator[list[tuple[int, datetime]]]:
    """(env id, next_checkin_latest) due by ``tick`` after the keyset cursor, oldest first,
    in chunks from a server-side cursor (call inside a transaction)."""
    after_ts, after_id = after or _START
    params = {"tick": tick, "after_ts": after_ts, "after_id": after_id, "limit": limit}
    with conn.cursor(name="clock_due_environments") as cur:
        cur.execute(DUE_ENVIRONMENTS, params)
        while rows := cur.fetchmany(chunk):
            yield [(int(i), ts) for i, ts in rows]


def iter_due_timeouts(conn: Conn, tick: datetime, after: Cursor, limit: int,
                      chunk: int) -> Iterator[list[DueTimeout]]:
    """IN_PROGRESS check-ins whose ``timeout_at`` is due by ``tick``, after the cursor, in chunks."""
    after_ts, after_id = after or _START
    params = {"tick": tick, "after_ts": after_ts, "after_id": after_id, "limit": limit}
    with conn.cursor(name="clock_due_timeouts") as cur:
        cur.execute(DUE_TIMEOUTS, params)
        while rows := cur.fetchmany(chunk):
            yield [DueTimeout(int(c), int(e), ts) for c, e, ts in rows]


# --------------------------------------------------------------------------- tasks

LOAD_TASK_ENVIRONMENTS = f"""
SELECT me.id, me.monitor_id, m.project_id, (m.status = {int(MonitorStatus.DISABLED)}
           OR me.status = {int(MonitorStatus.DISABLED)}) AS disabled,
       me.status, m.config::text, me.next_checkin, me.next_checkin_latest,
       me.failure_run, me.failure_run_start_id, me.failure_run_start_at, me.ok_run,
       EXISTS (SELECT 1 FROM incidents i
                WHERE i.monitor_environment_id = me.id AND i.resolving_timestamp IS NULL)
  FROM monitor_environments me JOIN monitors m ON m.id = me.monitor_id
 WHERE me.id = ANY(%(ids)b::bigint[])
 ORDER BY me.id
"""

# Environments are locked first, in id order, by their own statement; the values are read
# by a second one. An API write or a processor batch on the monitor holds the monitor's
# environments until it commits (docs/api.md "Consistency with the stream"), so once the
# locks are granted a new statement sees the monitor's current status and config, where
# the locking statement itself would join the monitor row as it was before the wait.
LOCK_TASK_ENVIRONMENTS = """
SELECT id FROM monitor_environments WHERE id = ANY(%(ids)b::bigint[]) ORDER BY id FOR UPDATE
"""

# "A newer finished check-in" is Sentry's: a job-reported OK or ERROR started later.
LOAD_TIMEOUT_CHECKINS = f"""
SELECT c.id, c.monitor_environment_id, c.status, c.date_added, c.timeout_at,
       EXISTS (SELECT 1 FROM checkins n
                WHERE n.monitor_environment_id = c.monitor_environment_id
                  AND n.date_added > c.date_added
                  AND n.status IN ({int(CheckInStatus.OK)}, {int(CheckInStatus.ERROR)})) AS has_newer
  FROM checkins c
 WHERE c.id = ANY(%(ids)b::bigint[])
 ORDER BY c.id
   FOR UPDATE OF c
"""

ALLOCATE_CHECKIN_IDS = "SELECT nextval('checkins_id_seq') FROM generate_series(1, %(n)s)"

# Monitor, project and config come from the locked environment's monitor, the guid from
# PostgreSQL: the batch ships only five arrays (binary) for any number of MISSED rows.
INSERT_MISSED = """
INSERT INTO checkins (id, guid, project_id, monitor_id, monitor_environment_id, status, date_added,
                      date_updated, date_clock, expected_time, monitor_config, retention_days)
SELECT u.id, gen_random_uuid(), m.project_id, m.id, u.env_id, u.status, u.expected_time,
       u.clock, u.clock, u.expected_time, m.config, %(retention_days)s::integer
  FROM unnest(%(ids)b::bigint[], %(env_ids)b::bigint[], %(expected)b::timestamptz[], %(clock)b::timestamptz[],
              %(statuses)b::smallint[])
       AS u (id, env_id, expected_time, clock, status)
  JOIN monitor_environments me ON me.id = u.env_id
  JOIN monitors m ON m.id = me.monitor_id
"""

# One pass over the environments a batch touched: the new deadline where a task moved it,
# the incident runs and status where a result counted, each kept as is otherwise.
UPDATE_ENVIRONMENTS = """
UPDATE monitor_environments AS me
   SET next_checkin = CASE WHEN u.has_deadline THEN u.next_checkin ELSE me.next_checkin END,
       next_checkin_latest = CASE WHEN u.has_deadline THEN u.next_checkin_latest ELSE me.next_checkin_latest END,
       failure_run = coalesce(u.failure_run, me.failure_run),
       failure_run_start_id = CASE WHEN u.has_state THEN u.start_id ELSE me.failure_run_start_id END,
       failure_run_start_at = CASE WHEN u.has_state THEN u.start_at ELSE me.failure_run_start_at END,
       ok_run = coalesce(u.ok_run, me.ok_run),
       status = coalesce(u.status, me.status)
  FROM unnest(%(ids)b::bigint[], %(has_deadline)b::boolean[], %(next)b::timestamptz[], %(latest)b::timestamptz[],
              %(has_state)b::boolean[], %(failure_runs)b::integer[], %(start_ids)b::bigint[],
              %(start_ats)b::timestamptz[], %(ok_runs)b::integer[], %(statuses)b::smallint[])
       AS u (id, has_deadline, next_checkin, next_checkin_latest, has_state, failure_run, start_id, start_at,
             ok_run, status)
 WHERE me.id = u.id
"""

MARK_TIMEOUTS = f"""
UPDATE checkins AS c SET status = %(status)s::smallint, date_updated = u.ts
  FROM unnest(%(ids)b::bigint[], %(ts)b::timestamptz[]) AS u (id, ts)
 WHERE c.id = u.id AND c.status = {int(CheckInStatus.IN_PROGRESS)}
"""

# A monitor whose next expected time cannot be computed (consumers.clock.decisions):
# MONITOR_INVALID_CONFIG, the monitor's organization and project; kept 7 days like the
# processor's (the column default).
INSERT_PROCESSING_ERRORS = f"""
INSERT INTO processing_errors (organization_id, project_id, monitor_id, type, reason)
SELECT m.organization_id, m.project_id, m.id, {int(ProcessingErrorType.MONITOR_INVALID_CONFIG)}, u.reason
  FROM unnest(%(env_ids)b::bigint[], %(reasons)b::text[]) AS u (env_id, reason)
  JOIN monitor_environments me ON me.id = u.env_id
  JOIN monitors m ON m.id = me.monitor_id
"""


@dataclass(frozen=True)
class TaskEnvironment:
    id: int
    monitor_id: int
    project_id: int
    disabled: bool
    status: MonitorStatus
    config_json: str
    next_checkin: datetime | None
    next_checkin_latest: datetime | None
    incident: IncidentState


@dataclass(frozen=True)
class TimeoutCheckIn:
    id: int
    env_id: int
    status: CheckInStatus
    date_added: datetime
    timeout_at: datetime | None
    has_newer_result: bool


@dataclass(frozen=True)
class MissedCheckIn:
    """A MISSED check-in to insert: id pre-allocated, ``date_added = expected_time``
    (UNKNOWN instead when the volume guard decided the tick was a system incident)."""

    id: int
    env_id: int
    expected_time: datetime
    clock: datetime
    status: CheckInStatus = CheckInStatus.MISSED


def load_task_environments(conn: Conn, env_ids: Iterable[int]) -> dict[int, TaskEnvironment]:
    """The environments the tasks name, locked (in id order) until the transaction ends."""
    if not env_ids:
        return {}
    params = {"ids": sorted(set(env_ids))}
    conn.execute(LOCK_TASK_ENVIRONMENTS, params)
    rows = conn.execute(LOAD_TASK_ENVIRONMENTS, params)
    return {r[0]: TaskEnvironment(id=r[0], monitor_id=r[1], project_id=r[2], disabled=r[3],
                                  status=MonitorStatus(r[4]), config_json=r[5], next_checkin=r[6],
                                  next_checkin_latest=r[7],
                                  incident=IncidentState(r[8], r[9], r[10], r[11], r[12]))
            for r in rows}


def load_timeout_checkins(conn: Conn, checkin_ids: Iterable[int]) -> dict[int, TimeoutCheckIn]:
    if not checkin_ids:
        return {}
    rows = conn.execute(LOAD_TIMEOUT_CHECKINS, {"ids": sorted(set(checkin_ids))})
    return {r[0]: TimeoutCheckIn(id=r[0], env_id=r[1], status=CheckInStatus(r[2]), date_added=r[3],
                                 timeout_at=r[4], has_newer_result=r[5])
            for r in rows}


def allocate_checkin_ids(conn: Conn, count: int) -> list[int]:
    if count <= 0:
        return []
    return [int(r[0]) for r in conn.execute(ALLOCATE_CHECKIN_IDS, {"n": count})]


def insert_missed(conn: Conn, missed: Sequence[MissedCheckIn], retention_days: int = 90) -> None:
    """Insert the MISSED check-ins (date_added = expected_time = the slot, fresh guids),
    kept ``retention_days`` (no producer sent one), creating day partitions they need."""
    if missed:
        days = sorted({m.expected_time.astimezone(timezone.utc).date() for m in missed})
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(%(days)s::date[])", {"days": days})
        conn.execute(INSERT_MISSED, {"ids": [m.id for m in missed], "env_ids": [m.env_id for m in missed],
                                     "expected": [m.expected_time for m in missed],
                                     "clock": [m.clock for m in missed], "retention_days": retention_days,
                                     "statuses": [int(m.status) for m in missed]})


def update_environments(conn: Conn, deadlines: Mapping[int, tuple[datetime | None, datetime | None]],
                        states: Mapping[int, tuple[IncidentState, MonitorStatus]]) -> None:
    """Write new deadlines and incident states (runs and status) in one statement,
    environments in id order."""
    ids = sorted(set(deadlines) | set(states))
    if not ids:
        return
    none_deadline: tuple[datetime | None, datetime | None] = (None, None)
    moved = [deadlines.get(i, none_deadline) for i in ids]
    counted = [states.get(i) for i in ids]
    conn.execute(UPDATE_ENVIRONMENTS, {
        "ids": ids, "has_deadline": [i in deadlines for i in ids],
        "next": [d[0] for d in moved], "latest": [d[1] for d in moved],
        "has_state": [c is not None for c in counted],
        "failure_runs": [c[0].failure_run if c else None for c in counted],
        "start_ids": [c[0].failure_run_start_id if c else None for c in counted],
        "start_ats": [c[0].failure_run_start_at if c else None for c in counted],
        "ok_runs": [c[0].ok_run if c else None for c in counted],
        "statuses": [int(c[1]) if c else None for c in counted],
    })


def mark_timeouts(conn: Conn, timeouts: Mapping[int, datetime],
                  status: CheckInStatus = CheckInStatus.TIMEOUT) -> int:
    """IN_PROGRESS → TIMEOUT (or UNKNOWN) for ``{checkin_id: ts}``; conditional on the status."""
    if not timeouts:
        return 0
    ids = sorted(timeouts)
    return conn.execute(MARK_TIMEOUTS, {"ids": ids, "ts": [timeouts[i] for i in ids],
                                        "status": int(status)}).rowcount


def insert_processing_errors(conn: Conn, errors: Sequence[tuple[int, str]]) -> None:
    """A MONITOR_INVALID_CONFIG processing error per (env id, reason)."""
    if errors:
        conn.execute(INSERT_PROCESSING_ERRORS, {"env_ids": [e for e, _ in errors], "reasons": [r for _, r in errors]})
