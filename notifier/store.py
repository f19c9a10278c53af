"""The notifier's PostgreSQL side: channels, consumed events with their offsets,
delivery state and the delivery log. Plain SQL, named parameters, rows into dataclasses.

Every function takes a connection in autocommit mode and opens its own transaction
where several statements must commit together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

# The channel functions live in schemas.channels (shared with the API); re-exported here.
from schemas.channels import (
    Channel,
    ChannelError,
    create_channel,
    delete_channel,
    find_channel,
    list_channels,
    load_channel,
    read_log,
)

# The consumed offsets are stored as the worker's consumers store theirs (schemas.database).
from schemas.database import Conn, load_all_offsets, save_offsets
from schemas.incident_events import IncidentEvent

__all__ = [
    "AttemptRecord",
    "Channel",
    "ChannelError",
    "DueDelivery",
    "claim_due",
    "create_channel",
    "delete_channel",
    "due_channels",
    "find_channel",
    "list_channels",
    "load_all_offsets",
    "load_channel",
    "read_log",
    "record_attempts",
    "record_events",
]


# --------------------------------------------------------------------------- consuming

INSERT_EVENTS = """
INSERT INTO alert_events (event_id, payload)
SELECT * FROM unnest(%(ids)s::uuid[], %(payloads)s::jsonb[])
ON CONFLICT (event_id) DO NOTHING
"""

# Muted environments get no deliveries (the incident is recorded, nothing is sent).
# Routing (monitors.alert_channels_selected, monitor_alert_channels) is read as it is
# when the event is consumed: every channel of the organization, or only the ones the
# monitor names. The monitor is looked up in the event's organization only; an event of
# a monitor that no longer exists goes to every channel of its organization.
INSERT_DELIVERIES = """
INSERT INTO alert_deliveries (event_id, channel_id)
SELECT e.id, c.id
  FROM unnest(%(ids)s::uuid[], %(orgs)s::bigint[], %(monitors)s::uuid[], %(muted)s::boolean[],
              %(ords)s::integer[]) AS e (id, org, monitor, muted, ord)
  LEFT JOIN monitors m ON m.guid = e.monitor AND m.organization_id = e.org
  JOIN alert_channels c ON c.organization_id = e.org
 WHERE NOT e.muted
   AND (m.id IS NULL OR NOT m.alert_channels_selected OR EXISTS (
        SELECT 1 FROM monitor_alert_channels r WHERE r.monitor_id = m.id AND r.channel_id = c.id))
 ORDER BY e.ord, c.id
ON CONFLICT (event_id, channel_id) DO NOTHING
RETURNING channel_id
"""


def record_events(conn: Conn, events: Sequence[IncidentEvent], *, group: str, topic: str,
                  next_offsets: Mapping[int, int]) -> dict[int, int]:
    """Store consumed events, one delivery per (event, channel its monitor routes to), and
    the consumed offsets, in one transaction; returns the deliveries created per channel
    id. An event seen before (a redelivery, or a republished outbox row) creates nothing new."""
    with conn.transaction():
        created: dict[int, int] = {}
        if events:
            ids = [e.event_id for e in events]
            conn.execute(INSERT_EVENTS, {"ids": ids, "payloads": [orjson.dumps(e.model_dump(mode="json")).decode()
                                                                  for e in events]})
            cur = conn.execute(INSERT_DELIVERIES, {
                "ids": ids, "orgs": [e.organization.id for e in events], "monitors": [e.monitor.id for e in events],
                "muted": [e.is_muted for e in events],
                "ords": list(range(len(events)))})
            for (channel_id,) in cur:
                created[channel_id] = created.get(channel_id, 0) + 1
        save_offsets(conn, group, topic, next_offsets)
    return created


# --------------------------------------------------------------------------- delivering

DUE_CHANNELS = """
SELECT DISTINCT channel_id FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
"""

# A claimed delivery is leased (moved into the future) so another notifier process, or
# this one after a crash, picks it up only once the lease has run out.
CLAIM_DUE = """
UPDATE alert_deliveries AS d
   SET next_attempt_at = now() + make_interval(secs => %(lease_s)s)
  FROM (SELECT id FROM alert_deliveries
         WHERE channel_id = %(channel_id)s AND status = 'pending' AND next_attempt_at <= now()
         ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS due,
       alert_events AS e
 WHERE d.id = due.id AND e.event_id = d.event_id
RETURNING d.id, d.event_id, d.attempts, d.date_added, e.payload
"""


@dataclass(frozen=True)
class DueDelivery:
    id: int
    event_id: UUID
    attempts: int
    date_added: datetime
    payload: dict[str, Any]


def due_channels(conn: Conn) -> list[int]:
    return [int(r[0]) for r in conn.execute(DUE_CHANNELS)]


def claim_due(conn: Conn, channel_id: int, *, limit: int, lease_s: float) -> list[DueDelivery]:
    rows = conn.execute(CLAIM_DUE, {"channel_id": channel_id, "limit": limit, "lease_s": lease_s}).fetchall()
    return sorted((DueDelivery(*r) for r in rows), key=lambda d: d.id)


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt and what it decided (``outcome`` as in the delivery log)."""

    delivery_id: int | None
    event_id: UUID
    attempt: int
    outcome: str
    next_attempt_at: datetime | None
    status_code: int | None
    latency_ms: int | None
    error: str | None
    permanent: bool


UPDATE_DELIVERIES = """
UPDATE alert_deliveries AS d
   SET attempts = r.attempt,
       status = CASE r.outcome WHEN 'retry' THEN 'pending' WHEN 'refused' THEN 'failed' ELSE r.outcome END,
       next_attempt_at = COALESCE(r.next_at, d.next_attempt_at),
       date_finished = CASE WHEN r.outcome = 'retry' THEN NULL ELSE now() END
  FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(outcomes)s::text[], %(next_ats)s::timestamptz[])
       AS r (id, attempt, outcome, next_at)
 WHERE d.id = r.id
"""

INSERT_LOG = """
INSERT INTO alert_delivery_log (delivery_id, channel_id, event_id, attempt, outcome, status_code, latency_ms, error)
SELECT r.delivery_id, %(channel_id)s, r.event_id, r.attempt, r.outcome, r.status_code, r.latency_ms, r.error
  FROM unnest(%(delivery_ids)s::bigint[], %(event_ids)s::uuid[], %(attempts)s::integer[], %(outcomes)s::text[],
              %(codes)s::integer[], %(latencies)s::integer[], %(errors)s::text[])
       AS r (delivery_id, event_id, attempt, outcome, status_code, latency_ms, error)
"""

# Permanent failures in a row mark the channel failing; a success resets the count.
UPDATE_CHANNEL = """
UPDATE alert_channels
   SET consecutive_failures = CASE WHEN %(reset)s THEN %(failures)s ELSE consecutive_failures + %(failures)s END,
       is_failing = CASE WHEN %(revive)s THEN false
                         ELSE is_failing OR
                              (CASE WHEN %(reset)s THEN %(failures)s
                                    ELSE consecutive_failures + %(failures)s END) >= %(failing_after)s END
 WHERE id = %(channel_id)s
"""


def record_attempts(conn: Conn, channel_id: int, records: Sequence[AttemptRecord], *, failing_after: int,
                    revive: bool = False) -> None:
    """Write attempts (delivery state, log rows, the channel's failure count) in one
    transaction. ``records`` are in attempt order; the failure count is the run of
    permanent failures since the last success. ``revive`` (a test notification that
    succeeded) clears the failing mark."""
    if not records:
        return
    successes = [i for i, r in enumerate(records) if r.outcome == "delivered"]
    tail = records[successes[-1] + 1:] if successes else records
    failures = sum(r.permanent for r in tail)
    tracked = [r for r in records if r.delivery_id is not None]
    with conn.transaction():
        if tracked:
            conn.execute(UPDATE_DELIVERIES, {
                "ids": [r.delivery_id for r in tracked], "attempts": [r.attempt for r in tracked],
                "outcomes": [r.outcome for r in tracked], "next_ats": [r.next_attempt_at for r in tracked]})
        conn.execute(INSERT_LOG, {
            "channel_id": channel_id, "delivery_ids": [r.delivery_id for r in records],
            "event_ids": [r.event_id for r in records], "attempts": [r.attempt for r in records],
            "outcomes": [r.outcome for r in records], "codes": [r.status_code for r in records],
            "latencies": [r.latency_ms for r in records], "errors": [r.error for r in records]})
        conn.execute(UPDATE_CHANNEL, {"channel_id": channel_id, "reset": bool(successes), "failures": failures,
                                      "failing_after": failing_after, "revive": revive and bool(successes)})
