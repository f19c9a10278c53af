"""PostgreSQL side of the check-in processor: load a batch's rows, write its effects.

Every function runs inside the caller's transaction, the one that also stores the
consumed offsets, so a batch commits all of its effects or none. Reads are one query per
table for the whole batch (``= ANY`` / ``unnest`` joins); writes are COPY or one
set-based statement per table; the statements are in ``consumers.checkins.sql``.
psycopg's errors become cronpipe errors in ``schemas.database`` (which also stores the
offsets).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import orjson

from consumers.checkins.batch_state import (
    BatchResult,
    BatchState,
    CheckInState,
    EnvState,
    IdPool,
    MonitorState,
    Project,
)
from consumers.checkins.processing import rollup_deltas
from consumers.checkins.sql import (
    ADVANCE_CLOCKS,
    ALLOCATE_IDS,
    COPY_CHECKINS,
    COUNT_ENVIRONMENTS,
    IN_PROGRESS_HORIZON,
    INSERT_ENVIRONMENTS,
    INSERT_ERRORS,
    INSERT_MONITORS,
    LOAD_CHECKINS,
    LOAD_ENVIRONMENTS,
    LOAD_IN_PROGRESS,
    LOAD_MONITORS,
    LOAD_PROJECTS,
    TRIM_ERRORS,
    UPDATE_CHECKINS,
    UPDATE_ENVIRONMENTS,
    UPDATE_MONITOR_CONFIGS,
    UPSERT_ATTACHMENTS,
    UPSERT_ROLLUPS,
)
from consumers.clock import volume_store
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from consumers.incidents.outbox import OutboxEvent
from consumers.incidents.rules import INITIAL_STATE
from consumers.rollups import delta_columns
from schemas.database import Conn, StoreError
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.monitor_config import ConfigError, MonitorConfig, config_from_json

UTC = timezone.utc
#: Processing errors kept per project; older ones are deleted as new ones arrive.
MAX_ERRORS_PER_PROJECT: Final = 100

# --------------------------------------------------------------------------- partition clocks


def advance_partition_clocks(conn: Conn, topic: str, minutes: Mapping[int, datetime]) -> None:
    """Move each partition's clock to its newest message minute; never backwards."""
    partitions = sorted(minutes)
    conn.execute(ADVANCE_CLOCKS, {"topic": topic, "partitions": partitions,
                                  "ts": [minutes[p] for p in partitions]})


# --------------------------------------------------------------------------- loading


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
