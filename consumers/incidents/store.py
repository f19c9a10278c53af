"""PostgreSQL side of incidents: load/save the per-environment runs, open and resolve.

Every function runs inside the caller's transaction (the one that also writes the
check-ins and the consumed offsets), so an incident change commits with the result that
caused it. Writes are idempotent: the partial unique index ``incidents_one_open``
allows one open incident per monitor environment, and resolving only touches an open one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from consumers.incidents.rules import IncidentState
from schemas.enums import MonitorStatus

__all__ = [
    "load_states",
    "open_incident",
    "open_incidents",
    "resolve_incident",
    "resolve_incidents",
    "save_states",
]

Conn = psycopg.Connection[Any]

OPEN_INCIDENT = """
INSERT INTO incidents (monitor_id, monitor_environment_id, starting_checkin_id, starting_timestamp)
VALUES (%(monitor_id)s::bigint, %(env_id)s::bigint, %(checkin_id)s::bigint, %(ts)s::timestamptz)
ON CONFLICT (monitor_environment_id) WHERE resolving_timestamp IS NULL DO NOTHING
"""

OPEN_INCIDENTS = """
INSERT INTO incidents (monitor_id, monitor_environment_id, starting_checkin_id, starting_timestamp)
SELECT * FROM unnest(%(monitor_ids)b::bigint[], %(env_ids)b::bigint[], %(checkin_ids)b::bigint[],
                     %(ts)b::timestamptz[])
ON CONFLICT (monitor_environment_id) WHERE resolving_timestamp IS NULL DO NOTHING
"""

RESOLVE_INCIDENT = """
UPDATE incidents
   SET resolving_checkin_id = %(checkin_id)s::bigint, resolving_timestamp = %(ts)s::timestamptz
 WHERE monitor_environment_id = %(env_id)s::bigint AND resolving_timestamp IS NULL
"""

RESOLVE_INCIDENTS = """
UPDATE incidents AS i
   SET resolving_checkin_id = r.checkin_id, resolving_timestamp = r.ts
  FROM unnest(%(env_ids)b::bigint[], %(checkin_ids)b::bigint[], %(ts)b::timestamptz[])
       AS r (env_id, checkin_id, ts)
 WHERE i.monitor_environment_id = r.env_id AND i.resolving_timestamp IS NULL
"""

# ORDER BY id so that concurrent writers (processor, clock tasks) lock rows in the same
# order and cannot deadlock each other.
LOAD_STATES = """
SELECT me.id, me.failure_run, me.failure_run_start_id, me.failure_run_start_at, me.ok_run,
       EXISTS (SELECT 1 FROM incidents i
                WHERE i.monitor_environment_id = me.id AND i.resolving_timestamp IS NULL)
  FROM monitor_environments me
 WHERE me.id = ANY(%(env_ids)b::bigint[])
 ORDER BY me.id
"""

SAVE_STATES = """
UPDATE monitor_environments AS me
   SET failure_run = s.failure_run, failure_run_start_id = s.start_id,
       failure_run_start_at = s.start_at, ok_run = s.ok_run, status = s.status
  FROM unnest(%(env_ids)b::bigint[], %(failure_runs)b::integer[], %(start_ids)b::bigint[],
              %(start_ats)b::timestamptz[], %(ok_runs)b::integer[], %(statuses)b::smallint[])
       AS s (env_id, failure_run, start_id, start_at, ok_run, status)
 WHERE me.id = s.env_id
"""


def open_incident(conn: Conn, monitor_id: int, env_id: int, starting_checkin_id: int | None,
                  starting_ts: datetime) -> bool:
    """Open an incident unless one is open already; True when this call opened it."""
    cur = conn.execute(OPEN_INCIDENT, {"monitor_id": monitor_id, "env_id": env_id,
                                       "checkin_id": starting_checkin_id, "ts": starting_ts})
    return cur.rowcount == 1


def open_incidents(conn: Conn, rows: Sequence[tuple[int, int, int | None, datetime]]) -> int:
    """Set-based :func:`open_incident` for ``(monitor_id, env_id, starting_checkin_id,
    starting_ts)`` rows (at most one per environment); returns how many were opened."""
    if not rows:
        return 0
    monitor_ids, env_ids, checkin_ids, ts = (list(col) for col in zip(*rows, strict=True))
    cur = conn.execute(OPEN_INCIDENTS, {"monitor_ids": monitor_ids, "env_ids": env_ids,
                                        "checkin_ids": checkin_ids, "ts": ts})
    return cur.rowcount


def resolve_incident(conn: Conn, env_id: int, resolving_checkin_id: int | None, ts: datetime) -> bool:
    """Resolve the environment's open incident; True when there was one to resolve."""
    cur = conn.execute(RESOLVE_INCIDENT, {"env_id": env_id, "checkin_id": resolving_checkin_id, "ts": ts})
    return cur.rowcount == 1


def resolve_incidents(conn: Conn, rows: Sequence[tuple[int, int | None, datetime]]) -> int:
    """Set-based :func:`resolve_incident` for ``(env_id, resolving_checkin_id, ts)`` rows."""
    if not rows:
        return 0
    env_ids, checkin_ids, ts = (list(col) for col in zip(*rows, strict=True))
    cur = conn.execute(RESOLVE_INCIDENTS, {"env_ids": env_ids, "checkin_ids": checkin_ids, "ts": ts})
    return cur.rowcount


def load_states(conn: Conn, env_ids: Iterable[int], *, for_update: bool = False) -> dict[int, IncidentState]:
    """The incident state of each existing environment in ``env_ids``.

    ``for_update=True`` locks the environment rows (in id order) until the caller's
    transaction ends: use it when another consumer may apply results to the same
    environments concurrently (processor vs clock tasks), so no run is lost.
    """
    query = LOAD_STATES + (" FOR UPDATE OF me" if for_update else "")
    rows = conn.execute(query, {"env_ids": sorted(set(env_ids))}).fetchall()
    return {row[0]: IncidentState(failure_run=row[1], failure_run_start_id=row[2],
                                  failure_run_start_at=row[3], ok_run=row[4], open_incident=row[5])
            for row in rows}


def save_states(conn: Conn, states: Mapping[int, tuple[IncidentState, MonitorStatus]]) -> int:
    """Write each environment's runs and status in one statement; returns rows updated."""
    if not states:
        return 0
    env_ids = sorted(states)
    pairs = [states[e] for e in env_ids]
    params = {
        "env_ids": env_ids,
        "failure_runs": [s.failure_run for s, _ in pairs],
        "start_ids": [s.failure_run_start_id for s, _ in pairs],
        "start_ats": [s.failure_run_start_at for s, _ in pairs],
        "ok_runs": [s.ok_run for s, _ in pairs],
        "statuses": [int(status) for _, status in pairs],
    }
    return conn.execute(SAVE_STATES, params).rowcount
