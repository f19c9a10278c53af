"""The SQL of the check-in processor (``consumers.checkins.store`` runs it): one statement
per table and batch, array parameters (``unnest``) or COPY, in the caller's transaction.

The comments say why each statement has its shape (lock order, plans pinned by LATERAL).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from schemas.monitor_config import MAX_MAX_RUNTIME

__all__ = [
    "ADVANCE_CLOCKS",
    "ALLOCATE_IDS",
    "COPY_CHECKINS",
    "COUNT_ENVIRONMENTS",
    "INSERT_ENVIRONMENTS",
    "INSERT_ERRORS",
    "INSERT_MONITORS",
    "IN_PROGRESS_HORIZON",
    "LOAD_CHECKINS",
    "LOAD_ENVIRONMENTS",
    "LOAD_IN_PROGRESS",
    "LOAD_MONITORS",
    "LOAD_PROJECTS",
    "TRIM_ERRORS",
    "UPDATE_CHECKINS",
    "UPDATE_ENVIRONMENTS",
    "UPDATE_MONITOR_CONFIGS",
    "UPSERT_ATTACHMENTS",
    "UPSERT_ROLLUPS",
]

ADVANCE_CLOCKS = """
INSERT INTO partition_clocks (topic, partition, ts)
SELECT %(topic)s, p, ts FROM unnest(%(partitions)b::integer[], %(ts)b::timestamptz[]) AS t (p, ts)
ON CONFLICT (topic, partition) DO UPDATE SET ts = GREATEST(partition_clocks.ts, excluded.ts)
"""

LOAD_PROJECTS = "SELECT id, organization_id FROM projects WHERE id = ANY(%(ids)b::bigint[])"

# Locked first, in id order: the lock order of docs/api.md (monitors, then environments,
# then check-ins), shared with the API's write routes and the clock tasks. An API update
# (schedule, status) that commits while a batch waits is then what the batch reads, so
# neither overwrites the other with values computed from a stale config.
LOAD_MONITORS = """
SELECT m.id, m.project_id, m.organization_id, m.slug, m.name, m.status, m.config::text
  FROM monitors AS m
  JOIN unnest(%(project_ids)b::bigint[], %(slugs)b::text[]) AS k (project_id, slug)
       ON m.project_id = k.project_id AND m.slug = k.slug
 ORDER BY m.id
   FOR NO KEY UPDATE OF m
"""

# Locked (in id order, as consumers.incidents.store does) because the clock tasks move
# the same rows: without the lock one of two concurrent updates would be lost.
LOAD_ENVIRONMENTS = """
SELECT e.id, e.monitor_id, e.environment, e.status, e.last_checkin, e.next_checkin,
       e.next_checkin_latest, e.rate_minute, e.rate_count
  FROM monitor_environments AS e
  JOIN unnest(%(monitor_ids)b::bigint[], %(names)b::text[]) AS k (monitor_id, environment)
       ON e.monitor_id = k.monitor_id AND e.environment = k.environment
 ORDER BY e.id
   FOR UPDATE OF e
"""

_CHECKIN_COLUMNS = """id, guid, project_id, monitor_id, monitor_environment_id, status, date_added,
       date_clock, expected_time, timeout_at, duration_ms, trace_id, release"""

_CHECKIN_COLUMNS_C = ", ".join(f"c.{c.strip()}" for c in _CHECKIN_COLUMNS.split(","))

# checkins is partitioned by date_added: the guid's row in checkin_guids names the one
# partition to look in (run-time partition pruning on the nested loop's parameters).
# The lateral subqueries (OFFSET 0: not flattened into a join) pin one index probe per
# guid: with a join, a growing day partition whose statistics lag was read whole
# (a parallel hash join, O(rows of the day) per batch).
LOAD_CHECKINS = f"""
SELECT c.*
  FROM unnest(%(guids)b::uuid[]) AS k (guid)
 CROSS JOIN LATERAL (SELECT g.checkin_id, g.date_added FROM checkin_guids g WHERE g.guid = k.guid OFFSET 0) g
 CROSS JOIN LATERAL (SELECT {_CHECKIN_COLUMNS_C} FROM checkins c
                      WHERE c.id = g.checkin_id AND c.date_added = g.date_added OFFSET 0) c
"""

# The newest n IN_PROGRESS check-ins of each environment: n is how many zero-UUID
# messages of that environment the batch holds. Only check-ins that started within the
# longest possible max_runtime (plus a day) before the batch can still be running, and
# the bound prunes the day partitions older than that (the lookup cannot name a date).
LOAD_IN_PROGRESS = f"""
SELECT c.* FROM unnest(%(env_ids)b::bigint[], %(limits)b::integer[]) AS k (env_id, n)
 CROSS JOIN LATERAL (
       SELECT {_CHECKIN_COLUMNS} FROM checkins
        WHERE monitor_environment_id = k.env_id AND status = 3
          AND (%(since)s::timestamptz IS NULL OR date_added >= %(since)s::timestamptz)
        ORDER BY date_added DESC LIMIT k.n) AS c
"""

IN_PROGRESS_HORIZON: Final = timedelta(minutes=MAX_MAX_RUNTIME, days=1)

# How many environments each monitor has, for the per-monitor cap.
COUNT_ENVIRONMENTS = """
SELECT monitor_id, count(*) FROM monitor_environments
 WHERE monitor_id = ANY(%(monitor_ids)b::bigint[]) GROUP BY monitor_id
"""

ALLOCATE_IDS = "SELECT nextval(%(sequence)s::regclass) FROM generate_series(1, %(n)s::integer)"

INSERT_MONITORS = """
INSERT INTO monitors (id, organization_id, project_id, slug, name, status, config)
SELECT * FROM unnest(%(ids)b::bigint[], %(org_ids)b::bigint[], %(project_ids)b::bigint[],
                     %(slugs)b::text[], %(names)b::text[], %(statuses)b::smallint[], %(configs)s::jsonb[])
"""

UPDATE_MONITOR_CONFIGS = """
UPDATE monitors AS m SET config = u.config, is_upserting = true
  FROM unnest(%(ids)b::bigint[], %(configs)s::jsonb[]) AS u (id, config)
 WHERE m.id = u.id
"""

# Environments carry the incident runs (consumers.incidents.rules.IncidentState) in the same
# row: they are written with the schedule fields in one statement per batch. A new
# environment of a muted monitor starts muted (the monitor row is locked by LOAD_MONITORS).
INSERT_ENVIRONMENTS = """
INSERT INTO monitor_environments (id, monitor_id, environment, status, last_checkin, next_checkin,
                                  next_checkin_latest, rate_minute, rate_count, failure_run,
                                  failure_run_start_id, failure_run_start_at, ok_run, is_muted)
SELECT u.*, coalesce((SELECT m.is_muted FROM monitors m WHERE m.id = u.monitor_id), false)
  FROM unnest(%(ids)b::bigint[], %(monitor_ids)b::bigint[], %(names)b::text[],
              %(statuses)b::smallint[], %(last)b::timestamptz[], %(next)b::timestamptz[],
              %(latest)b::timestamptz[], %(rate_minutes)b::timestamptz[], %(rate_counts)b::integer[],
              %(failure_runs)b::integer[], %(start_ids)b::bigint[], %(start_ats)b::timestamptz[],
              %(ok_runs)b::integer[])
       AS u (id, monitor_id, environment, status, last_checkin, next_checkin, next_checkin_latest, rate_minute,
             rate_count, failure_run, failure_run_start_id, failure_run_start_at, ok_run)
"""

# The rows are locked by LOAD_ENVIRONMENTS, so the values computed from them are current.
UPDATE_ENVIRONMENTS = """
UPDATE monitor_environments AS e
   SET last_checkin = u.last, next_checkin = u.next, next_checkin_latest = u.latest,
       rate_minute = u.rate_minute, rate_count = u.rate_count, status = u.status,
       failure_run = u.failure_run, failure_run_start_id = u.start_id,
       failure_run_start_at = u.start_at, ok_run = u.ok_run
  FROM unnest(%(ids)b::bigint[], %(last)b::timestamptz[], %(next)b::timestamptz[],
              %(latest)b::timestamptz[], %(rate_minutes)b::timestamptz[], %(rate_counts)b::integer[],
              %(statuses)b::smallint[], %(failure_runs)b::integer[], %(start_ids)b::bigint[],
              %(start_ats)b::timestamptz[], %(ok_runs)b::integer[])
       AS u (id, last, next, latest, rate_minute, rate_count, status, failure_run, start_id, start_at, ok_run)
 WHERE e.id = u.id
"""

COPY_CHECKINS = """
COPY checkins (id, guid, project_id, monitor_id, monitor_environment_id, status, date_added,
               date_updated, date_clock, expected_time, timeout_at, duration_ms, monitor_config,
               trace_id, release, retention_days) FROM STDIN
"""

UPDATE_CHECKINS = """
UPDATE checkins AS c
   SET status = u.status, duration_ms = u.duration_ms, date_clock = u.date_clock,
       date_updated = clock_timestamp()
  FROM unnest(%(ids)b::bigint[], %(dates)b::timestamptz[], %(statuses)b::smallint[], %(durations)b::integer[],
              %(clocks)b::timestamptz[]) AS u (id, date_added, status, duration_ms, date_clock)
 WHERE c.id = u.id AND c.date_added = u.date_added
"""

UPSERT_ROLLUPS = """
INSERT INTO checkin_rollups AS r (monitor_environment_id, resolution, bucket, ok, error, missed, timeout,
                                  unknown, duration_sum_ms, duration_count)
SELECT * FROM unnest(%(env_ids)b::bigint[], %(resolutions)b::integer[], %(buckets)b::timestamptz[],
                     %(ok)b::integer[], %(error)b::integer[], %(missed)b::integer[], %(timeout)b::integer[],
                     %(unknown)b::integer[], %(dsum)b::bigint[], %(dcount)b::integer[])
ON CONFLICT (monitor_environment_id, resolution, bucket) DO UPDATE SET
       ok = r.ok + excluded.ok, error = r.error + excluded.error, missed = r.missed + excluded.missed,
       timeout = r.timeout + excluded.timeout, unknown = r.unknown + excluded.unknown,
       duration_sum_ms = r.duration_sum_ms + excluded.duration_sum_ms,
       duration_count = r.duration_count + excluded.duration_count
"""

INSERT_ERRORS = """
INSERT INTO processing_errors (organization_id, project_id, monitor_id, type, reason, checkin)
SELECT * FROM unnest(%(org_ids)b::bigint[], %(project_ids)b::bigint[], %(monitor_ids)b::bigint[],
                     %(types)b::smallint[], %(reasons)b::text[], %(checkins)s::jsonb[])
"""

# Bounded and expiring: keep the newest MAX_ERRORS_PER_PROJECT per project, drop expired.
TRIM_ERRORS = """
DELETE FROM processing_errors WHERE id IN (
    SELECT id FROM (
        SELECT id, expires_at,
               row_number() OVER (PARTITION BY project_id ORDER BY id DESC) AS newest
          FROM processing_errors WHERE project_id = ANY(%(project_ids)b::bigint[])) AS e
     WHERE e.newest > %(keep)s OR e.expires_at < now())
"""

UPSERT_ATTACHMENTS = """
INSERT INTO checkin_attachments (checkin_guid, project_id, monitor_id, filename, content_type, size, data,
                                 date_added)
SELECT * FROM unnest(%(guids)b::uuid[], %(project_ids)b::bigint[], %(monitor_ids)b::bigint[],
                     %(filenames)b::text[], %(types)b::text[], %(sizes)b::integer[], %(data)b::bytea[],
                     %(dates)b::timestamptz[])
ON CONFLICT (monitor_id, checkin_guid) DO UPDATE SET
       filename = excluded.filename, content_type = excluded.content_type, size = excluded.size,
       data = excluded.data, date_added = excluded.date_added
"""
