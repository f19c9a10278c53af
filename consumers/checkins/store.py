"""PostgreSQL side of the check-in processor: load a batch's rows, write its effects.

Every function runs inside the caller's transaction, the one that also stores the
consumed offsets, so a batch commits all of its effects or none. Reads are one query per
table for the whole batch (``= ANY`` / ``unnest`` joins); writes are COPY or one
set-based statement per table. psycopg's errors become cronpipe errors in
``consumers.database`` (which also stores the offsets).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import orjson

from consumers.checkins.processing import (
    BatchResult,
    BatchState,
    CheckInState,
    EnvState,
    IdPool,
    MonitorState,
    Project,
    rollup_deltas,
)
from consumers.clock import volume_store
from consumers.database import Conn, StoreError
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from consumers.incidents.outbox import OutboxEvent
from consumers.incidents.rules import INITIAL_STATE
from consumers.rollups import delta_columns
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.monitor_config import MAX_MAX_RUNTIME, ConfigError, MonitorConfig, config_from_json

UTC = timezone.utc
#: Processing errors kept per project; older ones are deleted as new ones arrive.
MAX_ERRORS_PER_PROJECT: Final = 100

# --------------------------------------------------------------------------- partition clocks

ADVANCE_CLOCKS = """
INSERT INTO partition_clocks (topic, partition, ts)
SELECT %(topic)s, p, ts FROM unnest(%(partitions)b::integer[], %(ts)b::timestamptz[]) AS t (p, ts)
ON CONFLICT (topic, partition) DO UPDATE SET ts = GREATEST(partition_clocks.ts, excluded.ts)
"""


def advance_partition_clocks(conn: Conn, topic: str, minutes: Mapping[int, datetime]) -> None:
    """Move each partition's clock to its newest message minute; never backwards."""
    partitions = sorted(minutes)
    conn.execute(ADVANCE_CLOCKS, {"topic": topic, "partitions": partitions,
                                  "ts": [minutes[p] for p in partitions]})


# --------------------------------------------------------------------------- loading

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


@dataclass(frozen=True)
class BatchKeys:
    """What a batch refers to, collected from its decoded messages."""

    project_ids: set[int]
    monitor_keys: set[tuple[int, str]]
    env_keys: set[tuple[int, str, str]]
    guids: set[uuid.UUID]
    #: (project_id, slug, environment) → how many zero-UUID messages name it.
    latest: dict[tuple[int, str, str], int]
    #: Monitor keys of messages that carry a monitor_config (may create the monitor).
    upsert_keys: set[tuple[int, str]]
    checkins: int
    #: Start time of the earliest zero-UUID message (bounds the in-progress lookup).
    latest_since: datetime | None = None


def load_batch_state(conn: Conn, keys: BatchKeys) -> BatchState:
    """Every row the batch names, environments locked; one query per table."""
    projects = load_projects(conn, keys.project_ids)
    monitors = load_monitors(conn, keys.monitor_keys)
    envs = load_environments(conn, monitors, keys.env_keys)
    checkins = load_checkins(conn, LOAD_CHECKINS, {"guids": list(keys.guids)}) if keys.guids else []
    in_progress = load_in_progress(conn, envs, keys.latest, keys.latest_since)
    state = BatchState(projects=projects, monitors=monitors, envs=envs,
                       checkins={c.guid: c for c in checkins}, in_progress={},
                       env_counts=count_environments(conn, monitors, keys.env_keys - envs.keys()))
    for checkin in in_progress:
        state.checkins.setdefault(checkin.guid, checkin)
        state.in_progress.setdefault(checkin.env_id, []).append(state.checkins[checkin.guid])
    for candidates in state.in_progress.values():
        candidates.sort(key=lambda c: c.date_added)
    return state


def load_projects(conn: Conn, ids: set[int]) -> dict[int, Project]:
    if not ids:
        return {}
    rows = conn.execute(LOAD_PROJECTS, {"ids": list(ids)})
    return {pid: Project(pid, org_id) for pid, org_id in rows}


def load_monitors(conn: Conn, keys: set[tuple[int, str]]) -> dict[tuple[int, str], MonitorState]:
    if not keys:
        return {}
    project_ids, slugs = zip(*keys, strict=True)
    rows = conn.execute(LOAD_MONITORS, {"project_ids": list(project_ids), "slugs": list(slugs)})
    monitors = {}
    for mid, project_id, org_id, slug, name, status, config_text in rows:
        monitors[(project_id, slug)] = MonitorState(
            id=mid, project_id=project_id, organization_id=org_id, slug=slug, name=name,
            status=MonitorStatus(status), config=parse_stored_config(config_text),
            _config_json=config_text)
    return monitors


_CONFIG_CACHE: dict[str, MonitorConfig] = {}


def parse_stored_config(text: str) -> MonitorConfig:
    """Stored configs repeat across monitors and batches; parse each distinct text once."""
    config = _CONFIG_CACHE.get(text)
    if config is None:
        if len(_CONFIG_CACHE) > 10_000:
            _CONFIG_CACHE.clear()
        try:
            config = config_from_json(orjson.loads(text))
        except ConfigError as exc:
            raise StoreError(f"monitor config in the database is invalid: {exc}") from None
        _CONFIG_CACHE[text] = config
    return config


def count_environments(conn: Conn, monitors: Mapping[tuple[int, str], MonitorState],
                       new_env_keys: set[tuple[int, str, str]]) -> dict[int, int]:
    """Environments per monitor, for the monitors the batch may add an environment to."""
    ids = sorted({monitors[(p, s)].id for p, s, _ in new_env_keys if (p, s) in monitors})
    if not ids:
        return {}
    return {mid: n for mid, n in conn.execute(COUNT_ENVIRONMENTS, {"monitor_ids": ids})}


def load_environments(conn: Conn, monitors: Mapping[tuple[int, str], MonitorState],
                      keys: set[tuple[int, str, str]]) -> dict[tuple[int, str, str], EnvState]:
    wanted = [(monitors[(p, s)], env) for p, s, env in keys if (p, s) in monitors]
    if not wanted:
        return {}
    by_id = {m.id: m for m, _ in wanted}
    rows = conn.execute(LOAD_ENVIRONMENTS, {"monitor_ids": [m.id for m, _ in wanted],
                                            "names": [env for _, env in wanted]}).fetchall()
    incidents = incident_store.load_states(conn, [row[0] for row in rows])
    envs = {}
    for eid, monitor_id, name, status, last, nxt, latest, rate_minute, rate_count in rows:
        monitor = by_id[monitor_id]
        envs[(monitor.project_id, monitor.slug, name)] = EnvState(
            id=eid, monitor=monitor, environment=name, status=MonitorStatus(status), last_checkin=last,
            next_checkin=nxt, next_checkin_latest=latest, rate_minute=rate_minute, rate_count=rate_count,
            incident=incidents.get(eid, INITIAL_STATE))
    return envs


def load_checkins(conn: Conn, query: str, params: Mapping[str, Any]) -> list[CheckInState]:
    checkins = []
    for (cid, guid, project_id, monitor_id, env_id, status, date_added, date_clock, expected_time,
         timeout_at, duration_ms, trace_id, release) in conn.execute(query, params):
        status = CheckInStatus(status)
        checkins.append(CheckInState(
            id=cid, guid=guid, project_id=project_id, monitor_id=monitor_id, env_id=env_id, status=status,
            date_added=date_added, date_clock=date_clock, expected_time=expected_time, timeout_at=timeout_at,
            duration_ms=duration_ms, monitor_config=None, trace_id=trace_id, release=release,
            loaded=(status, duration_ms)))
    return checkins


def load_in_progress(conn: Conn, envs: Mapping[tuple[int, str, str], EnvState],
                     latest: Mapping[tuple[int, str, str], int], since: datetime | None = None) -> list[CheckInState]:
    wanted = [(envs[key].id, n) for key, n in latest.items() if key in envs]
    if not wanted:
        return []
    bound = None if since is None else since - IN_PROGRESS_HORIZON
    return load_checkins(conn, LOAD_IN_PROGRESS, {"env_ids": [e for e, _ in wanted],
                                                  "limits": [n for _, n in wanted], "since": bound})


def allocate_ids(conn: Conn, keys: BatchKeys, state: BatchState) -> IdPool:
    """Draw from the sequences as many ids as the batch can create (unused ones are gaps)."""
    monitors = len(keys.upsert_keys - state.monitors.keys())
    envs = len(keys.env_keys - state.envs.keys())
    return IdPool(checkin_ids=_draw(conn, "checkins_id_seq", keys.checkins),
                  monitor_ids=_draw(conn, "monitors_id_seq", monitors),
                  env_ids=_draw(conn, "monitor_environments_id_seq", envs))


def _draw(conn: Conn, sequence: str, n: int) -> Iterator[int]:
    if n <= 0:
        return iter(())
    return iter([row[0] for row in conn.execute(ALLOCATE_IDS, {"sequence": sequence, "n": n})])


# --------------------------------------------------------------------------- writing

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


def write_batch(conn: Conn, state: BatchState, result: BatchResult) -> None:
    """Write what processing decided, parents before children (monitors, environments,
    check-ins, incidents), then rollups, errors and attachments."""
    monitors = list(state.monitors.values())
    envs = list(state.envs.values())
    checkins = [c for c in state.checkins.values() if c.is_new or c.dirty]
    insert_monitors(conn, [m for m in monitors if m.is_new])
    update_monitor_configs(conn, [m for m in monitors if m.dirty and not m.is_new])
    insert_environments(conn, [e for e in envs if e.is_new])
    update_environments(conn, [e for e in envs if (e.dirty or e.incident_dirty) and not e.is_new])
    ensure_partitions(conn, [c for c in checkins if c.is_new])
    copy_checkins(conn, [c for c in checkins if c.is_new])
    update_checkins(conn, [c for c in checkins if not c.is_new])
    write_incidents(conn, result)
    upsert_rollups(conn, checkins)
    insert_errors(conn, result)
    upsert_attachments(conn, result)
    volume_store.record_volume(conn, result.volume)


def insert_monitors(conn: Conn, monitors: Sequence[MonitorState]) -> None:
    if not monitors:
        return
    conn.execute(INSERT_MONITORS, {
        "ids": [m.id for m in monitors], "org_ids": [m.organization_id for m in monitors],
        "project_ids": [m.project_id for m in monitors], "slugs": [m.slug for m in monitors],
        "names": [m.name for m in monitors], "statuses": [int(m.status) for m in monitors],
        "configs": [m.config_json() for m in monitors]})


def update_monitor_configs(conn: Conn, monitors: Sequence[MonitorState]) -> None:
    if monitors:
        conn.execute(UPDATE_MONITOR_CONFIGS, {"ids": [m.id for m in monitors],
                                              "configs": [m.config_json() for m in monitors]})


def _env_columns(envs: Sequence[EnvState]) -> dict[str, list[Any]]:
    return {"ids": [e.id for e in envs], "last": [e.last_checkin for e in envs],
            "next": [e.next_checkin for e in envs], "latest": [e.next_checkin_latest for e in envs],
            "rate_minutes": [e.rate_minute for e in envs], "rate_counts": [e.rate_count for e in envs],
            "statuses": [int(e.status) for e in envs],
            "failure_runs": [e.incident.failure_run for e in envs],
            "start_ids": [e.incident.failure_run_start_id for e in envs],
            "start_ats": [e.incident.failure_run_start_at for e in envs],
            "ok_runs": [e.incident.ok_run for e in envs]}


def insert_environments(conn: Conn, envs: Sequence[EnvState]) -> None:
    if envs:
        conn.execute(INSERT_ENVIRONMENTS, {**_env_columns(envs), "monitor_ids": [e.monitor.id for e in envs],
                                           "names": [e.environment for e in envs]})


def update_environments(conn: Conn, envs: Sequence[EnvState]) -> None:
    if envs:
        conn.execute(UPDATE_ENVIRONMENTS, _env_columns(envs))


def ensure_partitions(conn: Conn, checkins: Sequence[CheckInState]) -> None:
    """Create the day partitions new rows need (a backfill, a producer's bad clock): a
    check-in is never refused for its date. One cheap call per batch when they exist."""
    days = sorted({c.date_added.astimezone(UTC).date() for c in checkins})
    if days:
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(%(days)s::date[])", {"days": days})


def copy_checkins(conn: Conn, checkins: Sequence[CheckInState]) -> None:
    if not checkins:
        return
    written_at = datetime.now(UTC)
    with conn.cursor() as cur, cur.copy(COPY_CHECKINS) as copy:
        for c in checkins:
            copy.write_row((c.id, c.guid, c.project_id, c.monitor_id, c.env_id, int(c.status), c.date_added,
                            written_at, c.date_clock, c.expected_time, c.timeout_at, c.duration_ms,
                            c.monitor_config, c.trace_id, c.release, c.retention_days))


def update_checkins(conn: Conn, checkins: Sequence[CheckInState]) -> None:
    if checkins:
        conn.execute(UPDATE_CHECKINS, {
            "ids": [c.id for c in checkins], "dates": [c.date_added for c in checkins],
            "statuses": [int(c.status) for c in checkins], "durations": [c.duration_ms for c in checkins],
            "clocks": [c.date_clock for c in checkins]})


def write_incidents(conn: Conn, result: BatchResult) -> None:
    """Open and resolve incidents with consumers.incidents.store; the runs and the status
    went out with the environment rows."""
    incident_store.open_incidents(conn, [(o.monitor_id, o.env_id, o.checkin_id, o.ts)
                                         for o in result.incidents_opened])
    incident_store.resolve_incidents(conn, [(r.env_id, r.checkin_id, r.ts) for r in result.incidents_resolved])
    outbox.write_events(conn, [OutboxEvent(*e) for e in result.incident_events])


def upsert_rollups(conn: Conn, checkins: Sequence[CheckInState]) -> None:
    deltas = rollup_deltas(checkins)
    if not deltas:
        return
    keys = sorted(deltas)  # a stable order keeps concurrent upserts from deadlocking
    conn.execute(UPSERT_ROLLUPS, delta_columns(keys, deltas))


def insert_errors(conn: Conn, result: BatchResult) -> None:
    errors = result.errors
    if not errors:
        return
    conn.execute(INSERT_ERRORS, {
        "org_ids": [e.organization_id for e in errors], "project_ids": [e.project_id for e in errors],
        "monitor_ids": [e.monitor_id for e in errors], "types": [int(e.type) for e in errors],
        "reasons": [e.reason for e in errors],
        "checkins": [None if e.checkin is None else orjson.dumps(e.checkin).decode() for e in errors]})
    conn.execute(TRIM_ERRORS, {"project_ids": sorted({e.project_id for e in errors if e.project_id is not None}),
                               "keep": MAX_ERRORS_PER_PROJECT})


def upsert_attachments(conn: Conn, result: BatchResult) -> None:
    # One row per monitor's check-in: of two attachments of one check-in in a batch, the last wins.
    latest = {(monitor.id, message.check_in_id): (message, monitor) for message, monitor in result.attachments}
    if not latest:
        return
    rows = list(latest.values())
    conn.execute(UPSERT_ATTACHMENTS, {
        "guids": [m.check_in_id for m, _ in rows], "project_ids": [m.project_id for m, _ in rows],
        "monitor_ids": [mon.id for _, mon in rows], "filenames": [m.filename for m, _ in rows],
        "types": [m.content_type for m, _ in rows], "sizes": [len(m.data) for m, _ in rows],
        "data": [m.data for m, _ in rows],
        "dates": [datetime.fromtimestamp(m.start_time, UTC) for m, _ in rows]})


__all__ = ["BatchKeys", "advance_partition_clocks", "allocate_ids", "load_batch_state", "write_batch"]
