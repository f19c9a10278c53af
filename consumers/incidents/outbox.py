"""The incident outbox: events written in the transaction that changes an incident.

The processor and the clock tasks call :func:`write_events` after their incident writes,
inside the same transaction, so an event exists exactly when its change committed (a
rolled-back batch leaves none). The relay (``consumers/incidents/relay.py``) publishes the rows.

The event body is assembled here, in one set-based statement, from the rows the
transaction can see (incident, monitor, environment, check-ins); ``reason`` and
``previous_checkin_ids`` are derived from it by the relay
(``schemas.incident_events.complete_event``). ``event_id`` is a hash of the incident,
the event type and the check-in that caused it, and is stored with the row: every
publication of the row carries the same id. Disabled monitors write no events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from schemas.enums import CheckInStatus, MonitorStatus

__all__ = ["OutboxEvent", "write_events"]

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class OutboxEvent:
    """One incident change: environment, ``opened|failure|resolved``, the check-in that
    caused it (its id and ``date_added``), and the clock tick when the clock caused it."""

    env_id: int
    type: str
    checkin_id: int
    ts: datetime
    tick: datetime | None = None
    #: Caused by a synthetic failure in a tick the volume guard has not settled: the
    #: relay skips it until the tick resolves (``consumers.clock.volume_store``).
    held: bool = False


#: The failures an event lists (``failing_checkins``).
_FAILURES = ", ".join(str(int(s)) for s in (CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT))

# The incident an event belongs to is the environment's newest one that started at or
# before the causing check-in (a batch may resolve an incident and open the next one).
# Every row is looked up by key, once per event (index probes, the check-in in the one
# partition its date_added names): the lateral subqueries (OFFSET 0 keeps PostgreSQL
# from flattening them) pin that plan, which a hash join over a whole day's partition
# would otherwise replace whenever the statistics of a growing table lag behind.
# The batch's own time range (ts_min, ts_max: constants of the statement) bounds every
# check-in lookup too, so the planner keeps only the day partitions it can reach: the
# laterals' per-event bounds alone prune only at run time, and every event then paid for
# an Append over all the days (the days ahead the maintenance creates included; the plan's
# estimated cost was ≈ 3.7 M for 5,000 events, BENCHMARKS.md "Clock"). Redundant for the
# result: each event's own bounds are inside the batch's.
WRITE_EVENTS = f"""
WITH e AS (
    SELECT * FROM unnest(%(env_ids)b::bigint[], %(types)b::text[], %(checkin_ids)b::bigint[],
                         %(ts)b::timestamptz[], %(ticks)b::timestamptz[], %(ords)b::integer[],
                         %(held)b::boolean[])
             AS e (env_id, type, checkin_id, ts, tick, ord, held)
)
INSERT INTO incident_outbox (event_id, monitor_environment_id, tick, held, payload)
SELECT ev.event_id, e.env_id, e.tick, e.held, jsonb_build_object(
           'version', 1,
           'event_id', ev.event_id,
           'type', e.type,
           'incident_id', i.guid,
           'organization', jsonb_build_object('id', o.id, 'slug', o.slug),
           'project', jsonb_build_object('id', p.id, 'slug', p.slug),
           'monitor', jsonb_build_object('id', m.guid, 'slug', m.slug, 'name', m.name),
           'environment', me.environment,
           'monitor_environment_id', me.id,
           'starting_timestamp', i.starting_timestamp,
           'resolving_timestamp', i.resolving_timestamp,
           'failed_checkin_id', CASE WHEN e.type = 'resolved' THEN NULL ELSE c.guid END,
           'failing_checkins', COALESCE(f.list, '[]'::jsonb),
           'last_ok_checkin', ok.obj,
           'is_muted', me.is_muted,
           'clock_tick_ts', extract(epoch FROM e.tick)::float8,
           'received_ts', extract(epoch FROM COALESCE(c.date_clock, c.date_added))::float8,
           'date_created', now(),
           'recovery_threshold', COALESCE((m.config ->> 'recovery_threshold')::integer, 1))
  FROM e
 CROSS JOIN LATERAL (SELECT me.id, me.monitor_id, me.environment, me.is_muted FROM monitor_environments me
                      WHERE me.id = e.env_id OFFSET 0) me
  JOIN monitors m ON m.id = me.monitor_id
  JOIN projects p ON p.id = m.project_id
  JOIN organizations o ON o.id = m.organization_id
 CROSS JOIN LATERAL (SELECT c.guid, c.date_clock, c.date_added FROM checkins c
                      WHERE c.id = e.checkin_id AND c.date_added = e.ts
                        AND c.date_added BETWEEN %(ts_min)s AND %(ts_max)s OFFSET 0) c
 CROSS JOIN LATERAL (
       SELECT i.guid, i.starting_timestamp, i.resolving_timestamp FROM incidents i
        WHERE i.monitor_environment_id = e.env_id AND i.starting_timestamp <= e.ts
        ORDER BY i.starting_timestamp DESC, i.id DESC LIMIT 1) i
 CROSS JOIN LATERAL (
       SELECT md5(i.guid::text || ':' || e.type || ':' || c.guid::text)::uuid AS event_id) ev
  LEFT JOIN LATERAL (
       SELECT jsonb_agg(jsonb_build_object(
                  'id', r.guid, 'status', CASE r.status WHEN {int(CheckInStatus.ERROR)} THEN 'error'
                                                 WHEN {int(CheckInStatus.MISSED)} THEN 'missed' ELSE 'timeout' END,
                  'date_added', r.date_added, 'expected_time', r.expected_time) ORDER BY r.date_added, r.id) AS list
         FROM (SELECT x.* FROM checkins x
                WHERE e.type <> 'resolved' AND x.monitor_environment_id = e.env_id
                  AND x.status IN ({_FAILURES})
                  AND x.date_added BETWEEN (CASE WHEN e.type = 'opened' THEN i.starting_timestamp ELSE e.ts END) AND e.ts
                  AND x.date_added <= %(ts_max)s
                ORDER BY x.date_added DESC, x.id DESC LIMIT 100) r) f ON true
  LEFT JOIN LATERAL (
       SELECT jsonb_build_object('id', k.guid, 'date_added', k.date_added) AS obj FROM checkins k
        WHERE k.monitor_environment_id = e.env_id AND k.status = {int(CheckInStatus.OK)} AND k.date_added <= e.ts
          AND k.date_added <= %(ts_max)s
        ORDER BY k.date_added DESC, k.id DESC LIMIT 1) ok ON true
 WHERE m.status <> {int(MonitorStatus.DISABLED)}
 ORDER BY e.ord
ON CONFLICT (event_id) DO NOTHING
"""


# Environments with synthetic failures the volume guard holds (consumers.clock.volume_store),
# and the oldest tick holding one: their incident state depends on those failures.
HELD_ENVIRONMENTS = """
SELECT h.monitor_environment_id, min(h.tick)
  FROM clock_volume_held h JOIN unnest(%(env_ids)b::bigint[]) AS u (id) ON u.id = h.monitor_environment_id
 GROUP BY h.monitor_environment_id
"""


def _wait_for_held(conn: Conn, events: Sequence[OutboxEvent]) -> list[OutboxEvent]:
    """An event of an environment that has held failures is held with them (same tick):
    it is released in order when their tick turns out normal, or dropped with them if
    its incident existed only because of them. Callers hold the environments' row locks,
    as the guard's resolution takes them first, so the held rows read here stay put."""
    env_ids = sorted({e.env_id for e in events if not e.held})
    if not env_ids:
        return list(events)
    waiting = {int(env): tick for env, tick in conn.execute(HELD_ENVIRONMENTS, {"env_ids": env_ids})}
    return [replace(e, held=True, tick=waiting[e.env_id]) if not e.held and e.env_id in waiting else e
            for e in events]


def write_events(conn: Conn, events: Sequence[OutboxEvent]) -> int:
    """Insert the events of this transaction's incident changes, in order; returns how
    many rows were written (disabled monitors and repeats write none). Call it after the
    check-ins and incidents of the same transaction are written, with the environments
    locked."""
    if not events:
        return 0
    events = _wait_for_held(conn, events)
    cur = conn.execute(WRITE_EVENTS, {
        "env_ids": [e.env_id for e in events], "types": [e.type for e in events],
        "checkin_ids": [e.checkin_id for e in events], "ts": [e.ts for e in events],
        "ticks": [e.tick for e in events], "ords": list(range(len(events))),
        "held": [e.held for e in events],
        "ts_min": min(e.ts for e in events), "ts_max": max(e.ts for e in events)})
    return cur.rowcount
