"""PostgreSQL side of incidents: load the per-environment runs, open and resolve.

Every function runs inside the caller's transaction (the one that also writes the
check-ins and the consumed offsets), so an incident change commits with the result that
caused it. Writes are idempotent: the partial unique index ``incidents_one_open``
allows one open incident per monitor environment, and resolving only touches an open one.
The runs and status are written with the environment rows by their consumers (the
processor's batch, ``consumers.clock.store.update_environments``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from consumers.incidents.rules import IncidentState

__all__ = [
    "load_states",
    "open_incidents",
    "resolve_incidents",
]

Conn = psycopg.Connection[Any]

OPEN_INCIDENTS = """
INSERT INTO incidents (monitor_id, monitor_environment_id, starting_checkin_id, starting_timestamp)
SELECT * FROM unnest(%(monitor_ids)b::bigint[], %(env_ids)b::bigint[], %(checkin_ids)b::bigint[],
                     %(ts)b::timestamptz[])
ON CONFLICT (monitor_environment_id) WHERE resolving_timestamp IS NULL DO NOTHING
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


def open_incidents(conn: Conn, rows: Sequence[tuple[int, int, int | None, datetime]]) -> int:
    """Open an incident for each ``(monitor_id, env_id, starting_checkin_id, starting_ts)`` row
    (at most one per environment) unless one is open already; returns how many were opened."""
    if not rows:
        return 0
    monitor_ids, env_ids, checkin_ids, ts = (list(col) for col in zip(*rows, strict=True))
    cur = conn.execute(OPEN_INCIDENTS, {"monitor_ids": monitor_ids, "env_ids": env_ids,
                                        "checkin_ids": checkin_ids, "ts": ts})
    return cur.rowcount


def resolve_incidents(conn: Conn, rows: Sequence[tuple[int, int | None, datetime]]) -> int:
    """Resolve the open incident of each ``(env_id, resolving_checkin_id, ts)`` row's
    environment; returns how many there were to resolve."""
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
