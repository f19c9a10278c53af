"""The read API's only SQL: named queries, rows into frozen dataclasses.

Every query is scoped by organization (and monitor) ids that the resolution layer has
already checked against the caller's token; nothing here decides who may see what.
Optional filters use the ``%(x)s::type IS NULL OR col = %(x)s`` idiom so one statement
serves every combination. Connections are autocommit and read-only by construction
(only SELECTs live here).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from schemas import rollup_counts
from schemas.enums import MonitorStatus

# --- rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgRow:
    id: int
    slug: str


@dataclass(frozen=True)
class ProjectRow:
    id: int
    slug: str


@dataclass(frozen=True)
class MonitorRow:
    id: int
    guid: uuid.UUID
    organization_id: int
    project_id: int
    project_slug: str
    slug: str
    name: str
    status: int
    config: dict[str, Any]
    date_created: datetime
    is_muted: bool
    is_upserting: bool
    #: The channels it names (guids), or None: every channel of the organization.
    alert_channels: list[uuid.UUID] | None


@dataclass(frozen=True)
class EnvironmentRow:
    id: int
    monitor_id: int
    environment: str
    status: int
    is_muted: bool
    last_checkin: datetime | None
    next_checkin: datetime | None
    next_checkin_latest: datetime | None
    date_created: datetime
    incident_guid: uuid.UUID | None
    incident_start: datetime | None
    incident_end: datetime | None


@dataclass(frozen=True)
class CheckInRow:
    id: int
    guid: uuid.UUID
    environment: str
    status: int
    duration_ms: int | None
    date_added: datetime
    date_updated: datetime
    expected_time: datetime | None
    monitor_config: dict[str, Any] | None
    has_attachment: bool
    date_clock: datetime | None
    date_in_progress: datetime | None


@dataclass(frozen=True)
class AttachmentRow:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ProcessingErrorRow:
    guid: uuid.UUID
    project_id: int | None
    monitor_guid: uuid.UUID | None
    type: int
    reason: str
    checkin: dict[str, Any] | None
    date_added: datetime


# --- queries ----------------------------------------------------------------------------

TOKEN_GRANT = "SELECT organization_id, scope FROM api_tokens WHERE token_hash = %(token_hash)s"

# The token's organization, if the path names it (by id or slug).
ORGANIZATION = """
SELECT o.id, o.slug FROM organizations o
WHERE o.id = %(token_org_id)s::bigint
  AND (o.id = %(number)s::bigint OR o.slug = %(key)s::text)
"""

PROJECT = """
SELECT p.id, p.slug FROM projects p
WHERE p.organization_id = %(organization_id)s::bigint
  AND (p.id = %(number)s::bigint OR p.slug = %(key)s::text)
ORDER BY p.id LIMIT 1
"""

# The channel list is read only for a monitor that names its channels (a CASE branch's
# subquery runs only when taken).
MONITOR_COLUMNS = """
m.id, m.guid, m.organization_id, m.project_id, p.slug AS project_slug, m.slug, m.name,
m.status, m.config, m.date_created, m.is_muted, m.is_upserting,
CASE WHEN m.alert_channels_selected THEN ARRAY(
    SELECT c.guid FROM monitor_alert_channels r JOIN alert_channels c ON c.id = r.channel_id
     WHERE r.monitor_id = m.id ORDER BY c.id) END AS alert_channels
"""

# The token's organization, the project (on project routes, when ``project_key`` is set)
# and the monitor in one round trip, run on every monitor request. The first two parts are
# ORGANIZATION and PROJECT above; a missing part comes back NULL and the caller names the
# first one missing. The monitor is looked up within the token's organization only, so a
# foreign monitor costs and answers the same as a missing one. Slugs are unique per
# project, not per organization: under an organization route the oldest monitor with that
# slug wins, so the answer never changes as monitors are added. A slug match beats a guid
# match (Sentry's get_monitor_by_org_id_or_slug tries the slug first): a monitor whose
# slug looks like another monitor's guid is the one its slug names; the other stays
# reachable by its own slug.
MONITOR_SCOPE = f"""
SELECT o.id AS scope_organization_id, o.slug AS scope_organization_slug,
       sp.id AS scope_project_id, sp.slug AS scope_project_slug, m.*
FROM organizations o
LEFT JOIN LATERAL (
  SELECT p.id, p.slug FROM projects p
  WHERE p.organization_id = o.id
    AND (p.id = %(project_number)s::bigint OR p.slug = %(project_key)s::text)
  ORDER BY p.id LIMIT 1
) sp ON %(project_key)s::text IS NOT NULL
LEFT JOIN LATERAL (
  SELECT {MONITOR_COLUMNS}
  FROM monitors m JOIN projects p ON p.id = m.project_id
  WHERE m.organization_id = o.id
    AND (%(project_key)s::text IS NULL OR m.project_id = sp.id)
    AND (m.guid = %(guid)s::uuid OR m.slug = %(key)s::text)
    AND NOT m.pending_deletion
  ORDER BY m.slug = %(key)s::text DESC, m.id LIMIT 1
) m ON true
WHERE o.id = %(token_org_id)s::bigint
  AND (o.id = %(organization_number)s::bigint OR o.slug = %(organization_key)s::text)
"""

# ``statuses`` are MonitorStatus values: DISABLED matches disabled monitors, the others
# monitors that are not disabled and have an environment in that status. ``text`` is an
# ILIKE pattern on name or slug (Sentry's free-text ``query``).
_MONITOR_LIST_WHERE = """
m.organization_id = %(organization_id)s::bigint AND NOT m.pending_deletion
  AND (%(project_keys)s::text[] IS NULL
       OR p.slug = ANY(%(project_keys)s::text[]) OR p.id = ANY(%(project_numbers)s::bigint[]))
  AND (%(environments)s::text[] IS NULL OR EXISTS (
        SELECT 1 FROM monitor_environments me
        WHERE me.monitor_id = m.id AND NOT me.pending_deletion
          AND me.environment = ANY(%(environments)s::text[])))
  AND (%(statuses)s::smallint[] IS NULL
       OR (m.status = %(disabled)s::smallint AND %(disabled)s::smallint = ANY(%(statuses)s::smallint[]))
       OR (m.status <> %(disabled)s::smallint AND EXISTS (
             SELECT 1 FROM monitor_environments me
             WHERE me.monitor_id = m.id AND NOT me.pending_deletion AND me.status = ANY(%(statuses)s::smallint[])
               AND (%(environments)s::text[] IS NULL OR me.environment = ANY(%(environments)s::text[])))))
  AND (%(text)s::text IS NULL OR m.name ILIKE %(text)s::text OR m.slug ILIKE %(text)s::text)
"""

# Sort keys of the monitor list (Sentry's ``sort``): by name; by status (an open incident
# first, then no result yet, then ok, disabled last); muted last.
_STATUS_RANK = f"""
CASE WHEN m.status = {int(MonitorStatus.DISABLED)} THEN 9 ELSE coalesce((
  SELECT min(CASE me.status WHEN {int(MonitorStatus.ERROR)} THEN 0 WHEN {int(MonitorStatus.ACTIVE)} THEN 1
                            WHEN {int(MonitorStatus.OK)} THEN 2 ELSE 3 END)
  FROM monitor_environments me WHERE me.monitor_id = m.id AND NOT me.pending_deletion), 1) END
"""
_MUTED = """
coalesce((SELECT bool_and(me.is_muted) FROM monitor_environments me
          WHERE me.monitor_id = m.id AND NOT me.pending_deletion), m.is_muted)
"""
MONITOR_SORTS = {"name": "m.name, m.id", "status": f"{_STATUS_RANK}, m.name, m.id",
                 "muted": f"{_MUTED}, m.name, m.id"}


def monitor_list(sort: str) -> str:
    """The monitor list query ordered by one of :data:`MONITOR_SORTS` (never client text)."""
    return f"""
SELECT {MONITOR_COLUMNS}
FROM monitors m JOIN projects p ON p.id = m.project_id
WHERE {_MONITOR_LIST_WHERE}
ORDER BY {MONITOR_SORTS[sort]}
LIMIT %(limit)s::bigint OFFSET %(offset)s::bigint
"""


MONITORS_BY_ID = f"""
SELECT {MONITOR_COLUMNS}
FROM monitors m JOIN projects p ON p.id = m.project_id
WHERE m.id = ANY(%(ids)s::bigint[])
ORDER BY m.id
"""

ENVIRONMENTS = """
SELECT me.id, me.monitor_id, me.environment, me.status, me.is_muted, me.last_checkin,
       me.next_checkin, me.next_checkin_latest, me.date_created,
       i.guid AS incident_guid, i.starting_timestamp AS incident_start, i.resolving_timestamp AS incident_end
FROM monitor_environments me
LEFT JOIN incidents i ON i.monitor_environment_id = me.id AND i.resolving_timestamp IS NULL
WHERE me.monitor_id = ANY(%(monitor_ids)s::bigint[]) AND NOT me.pending_deletion
  AND (%(environments)s::text[] IS NULL OR me.environment = ANY(%(environments)s::text[]))
ORDER BY me.monitor_id, me.environment
"""

_CHECKIN_COLUMNS = """
c.id, c.guid, me.environment, c.status, c.duration_ms, c.date_added, c.date_updated,
c.expected_time, c.monitor_config,
EXISTS (SELECT 1 FROM checkin_attachments a WHERE a.checkin_guid = c.guid AND a.monitor_id = c.monitor_id)
    AS has_attachment,
c.date_clock, CASE WHEN c.timeout_at IS NOT NULL THEN c.date_added END AS date_in_progress
"""

_CHECKIN_FILTERS = """
c.monitor_id = %(monitor_id)s::bigint AND NOT me.pending_deletion
AND (%(environments)s::text[] IS NULL OR me.environment = ANY(%(environments)s::text[]))
AND (%(since)s::timestamptz IS NULL OR c.date_added >= %(since)s::timestamptz)
AND (%(until)s::timestamptz IS NULL OR c.date_added <= %(until)s::timestamptz)
"""

# Keyset pagination on (date_added, id): stable while new check-ins arrive.
CHECKINS_OLDER = f"""
SELECT {_CHECKIN_COLUMNS}
FROM checkins c JOIN monitor_environments me ON me.id = c.monitor_environment_id
WHERE {_CHECKIN_FILTERS}
  AND (%(key_date)s::timestamptz IS NULL OR (c.date_added, c.id) < (%(key_date)s::timestamptz, %(key_id)s::bigint))
  -- Implied by the row comparison, but only a plain bound prunes the day partitions.
  AND (%(key_date)s::timestamptz IS NULL OR c.date_added <= %(key_date)s::timestamptz)
ORDER BY c.date_added DESC, c.id DESC
LIMIT %(limit)s::bigint
"""

CHECKINS_NEWER = f"""
SELECT {_CHECKIN_COLUMNS}
FROM checkins c JOIN monitor_environments me ON me.id = c.monitor_environment_id
WHERE {_CHECKIN_FILTERS}
  AND (c.date_added, c.id) > (%(key_date)s::timestamptz, %(key_id)s::bigint)
  AND c.date_added >= %(key_date)s::timestamptz
ORDER BY c.date_added ASC, c.id ASC
LIMIT %(limit)s::bigint
"""

# checkins is partitioned by date_added: checkin_guids names the one partition to read.
CHECKIN_BY_GUID = f"""
SELECT {_CHECKIN_COLUMNS}
FROM checkin_guids g
JOIN checkins c ON c.id = g.checkin_id AND c.date_added = g.date_added
JOIN monitor_environments me ON me.id = c.monitor_environment_id
WHERE g.guid = %(guid)s::uuid AND c.monitor_id = %(monitor_id)s::bigint
"""

CHECKIN_LATEST = f"""
SELECT {_CHECKIN_COLUMNS}
FROM checkins c JOIN monitor_environments me ON me.id = c.monitor_environment_id
WHERE c.monitor_id = %(monitor_id)s::bigint
  AND (%(environment_id)s::bigint IS NULL OR c.monitor_environment_id = %(environment_id)s::bigint)
ORDER BY c.date_added DESC, c.id DESC
LIMIT 1
"""

ATTACHMENT = """
SELECT filename, content_type, data FROM checkin_attachments
WHERE checkin_guid = %(guid)s::uuid AND monitor_id = %(monitor_id)s::bigint
"""

# Stats from the materialized rollups: ``source`` is the stored resolution (3600 or
# 86400) and ``resolution`` a multiple of it, so buckets are sums of whole rows.
# date_bin from the epoch is integer arithmetic; date_part is float8 (exact for whole
# seconds), cheaper than extract(), which is numeric.
STATS_FROM_ROLLUPS = """
SELECT date_part('epoch', g.bucket)::bigint AS ts, g.ok, g.error, g.missed, g.timeout, g.unknown,
       g.duration_sum, g.duration_count
FROM (
  SELECT date_bin(make_interval(secs => %(resolution)s::integer), r.bucket, 'epoch'::timestamptz) AS bucket,
         sum(r.ok)::bigint AS ok, sum(r.error)::bigint AS error, sum(r.missed)::bigint AS missed,
         sum(r.timeout)::bigint AS timeout, sum(r.unknown)::bigint AS unknown,
         sum(r.duration_sum_ms)::bigint AS duration_sum, sum(r.duration_count)::bigint AS duration_count
  FROM checkin_rollups r
  WHERE r.monitor_environment_id IN (
          SELECT me.id FROM monitor_environments me
          WHERE me.monitor_id = %(monitor_id)s::bigint
            AND (%(environments)s::text[] IS NULL OR me.environment = ANY(%(environments)s::text[])))
    AND r.resolution = %(source)s::integer
    AND r.bucket >= %(start)s::timestamptz AND r.bucket < %(end)s::timestamptz
  GROUP BY 1
) g
"""

# The same figures computed from the check-ins, with the rollups' counting rules
# (schemas.rollup_counts).
STATS_FROM_CHECKINS = f"""
SELECT date_part('epoch', g.bucket)::bigint AS ts, g.ok, g.error, g.missed, g.timeout, g.unknown,
       g.duration_sum, g.duration_count
FROM (
  SELECT date_bin(make_interval(secs => %(resolution)s::integer), c.date_added, 'epoch'::timestamptz) AS bucket,
         {rollup_counts.COUNTS}
  FROM checkins c JOIN monitor_environments me ON me.id = c.monitor_environment_id
  WHERE c.monitor_id = %(monitor_id)s::bigint
    AND (%(environments)s::text[] IS NULL OR me.environment = ANY(%(environments)s::text[]))
    AND {rollup_counts.COUNTED}
    AND c.date_added >= %(start)s::timestamptz AND c.date_added < %(end)s::timestamptz
  GROUP BY 1
) g
"""

PROCESSING_ERRORS = """
SELECT pe.guid, pe.project_id, m.guid AS monitor_guid, pe.type, pe.reason, pe.checkin, pe.date_added
FROM processing_errors pe LEFT JOIN monitors m ON m.id = pe.monitor_id
WHERE (pe.organization_id = %(organization_id)s::bigint
       OR pe.project_id IN (SELECT id FROM projects WHERE organization_id = %(organization_id)s::bigint))
  AND (%(project_id)s::bigint IS NULL OR pe.project_id = %(project_id)s::bigint)
  AND (%(monitor_id)s::bigint IS NULL OR pe.monitor_id = %(monitor_id)s::bigint)
  AND pe.expires_at > now()
ORDER BY pe.date_added DESC, pe.id DESC
LIMIT %(limit)s::bigint OFFSET %(offset)s::bigint
"""

# --- execution --------------------------------------------------------------------------

_R = TypeVar("_R")


async def fetch_all(conn: AsyncConnection[Any], row: type[_R], query: str, params: dict[str, Any]) -> list[_R]:
    async with conn.cursor(row_factory=class_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(conn: AsyncConnection[Any], row: type[_R], query: str, params: dict[str, Any]) -> _R | None:
    async with conn.cursor(row_factory=class_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_tuples(conn: AsyncConnection[Any], query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Plain tuples, for results of thousands of rows (stats) where row objects would dominate.

    Binary results: PostgreSQL sends integers without formatting them and psycopg reads
    them without parsing (both measurably cheaper over thousands of values).
    """
    cur = await conn.execute(query, params, binary=True)
    return await cur.fetchall()


async def fetch_dict(conn: AsyncConnection[Any], query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def token_grant(conn: AsyncConnection[Any], token_hash: bytes) -> tuple[int, str] | None:
    """The token's organization id and scope (``read`` or ``write``), or None."""
    cur = await conn.execute(TOKEN_GRANT, {"token_hash": token_hash})
    found = await cur.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))
