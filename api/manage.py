"""Monitor management: the one implementation behind the write routes and `cronpipe monitor`.

Every operation runs inside the caller's transaction on a writable connection and takes
``now`` as an argument. Lock order, the same for the API, the check-in processor and the
clock tasks (docs/api.md "Consistency with the stream"): monitors (by id), then their
environments (by id), then check-ins. A write locks the monitor row first, so it waits
for a processor batch or clock task that holds it and vice versa; the later commit wins
and reads what the earlier one stored. The alert channels a monitor is routed to are
locked after the monitor and before its routes, the order a channel's delete takes too.

Errors are ApiErrors (400 naming the field, 404), shown as they are by the routes and the
command line.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection, errors
from psycopg.types.json import Jsonb

from api import store
from api.errors import ApiError, BadParameter, NotFound
from api.resolve import as_number
from schemas.api import MonitorWrite
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.minutes import floor_minute
from schemas.monitor_config import ConfigError, MonitorConfig, config_from_json, config_to_json, parse_monitor_config
from schemas.schedule import ScheduleError, next_expected
from schemas.wire_fields import slugify_monitor_slug

Conn = AsyncConnection[Any]
#: What replaces a deleted monitor's slug or environment's name: never a valid slug, so the
#: name is free at once and no check-in can reach the rows being purged.
DELETED_PREFIX = "~deleted~"


@dataclass(frozen=True)
class Deadlines:
    next_checkin: datetime | None
    next_checkin_latest: datetime | None


def next_deadlines(config: MonitorConfig, last_checkin: datetime | None, now: datetime,
                   from_now: bool) -> Deadlines:
    """The next expected check-in after ``last_checkin`` (or ``now``), and its deadline.

    A new schedule never reaches back: when the slot after the last check-in has already
    passed its deadline (or ``from_now``, on re-enabling), the next slot after ``now`` is
    used, so no MISSED is recorded for slots before the change.
    """
    margin = timedelta(minutes=config.effective_checkin_margin)
    try:
        nxt = next_expected(config.schedule, config.timezone, floor_minute(last_checkin or now))
        if from_now or last_checkin is None or nxt + margin <= now:
            nxt = next_expected(config.schedule, config.timezone, floor_minute(now))
    except ScheduleError:
        return Deadlines(None, None)
    return Deadlines(nxt, nxt + margin)


# --- body fields ------------------------------------------------------------------------


def _config(raw: dict[str, Any]) -> MonitorConfig:
    try:
        return parse_monitor_config(raw)
    except ConfigError as exc:
        raise BadParameter("config", exc.reason) from None


def _slug(text: str, parameter: str) -> str:
    slug = slugify_monitor_slug(text)
    if not slug:
        raise BadParameter(parameter, "must contain a letter or digit")
    return slug


def _status(name: str | None, current: int) -> int:
    if name is None:
        return current
    return int(MonitorStatus.DISABLED if name == "disabled" else MonitorStatus.ACTIVE)


async def _project_id(conn: Conn, organization_id: int, key: str | int) -> int:
    text = str(key)
    row = await store.fetch_one(conn, store.ProjectRow, store.PROJECT,
                                {"organization_id": organization_id, "number": as_number(text), "key": text})
    if row is None:
        raise BadParameter("project", f"no project {text[:64]!r} in this organization")
    return row.id


def _slug_taken(slug: str) -> ApiError:
    return ApiError(400, f'The slug "{slug}" is already in use.', "slug")


# --- monitors ---------------------------------------------------------------------------

INSERT_MONITOR = """
INSERT INTO monitors (organization_id, project_id, slug, name, status, config, is_muted, is_upserting)
VALUES (%(organization_id)s, %(project_id)s, %(slug)s, %(name)s, %(status)s, %(config)s, %(is_muted)s, false)
ON CONFLICT (project_id, slug) DO NOTHING
RETURNING id
"""

LOCK_MONITOR = """
SELECT id, project_id, slug, status, config FROM monitors
WHERE id = %(id)s AND organization_id = %(organization_id)s AND NOT pending_deletion
FOR NO KEY UPDATE
"""

LOCK_ENVIRONMENTS = """
SELECT id, environment, last_checkin, next_checkin FROM monitor_environments
WHERE monitor_id = %(monitor_id)s AND NOT pending_deletion
  AND (%(names)s::text[] IS NULL OR environment = ANY(%(names)s::text[]))
ORDER BY id
FOR UPDATE
"""

UPDATE_MONITOR = """
UPDATE monitors SET name = coalesce(%(name)s, name), slug = %(slug)s, status = %(status)s, config = %(config)s,
       is_upserting = is_upserting AND NOT %(config_written)s
WHERE id = %(id)s
"""

SET_DEADLINES = """
UPDATE monitor_environments AS me SET next_checkin = u.next, next_checkin_latest = u.latest
FROM unnest(%(ids)s::bigint[], %(next)s::timestamptz[], %(latest)s::timestamptz[]) AS u (id, next, latest)
WHERE me.id = u.id
"""

# Check-ins are locked after their environments (the lock order); the partial index on
# IN_PROGRESS check-ins finds them without reading the monitor's finished ones.
MOVE_TIMEOUTS = f"""
UPDATE checkins SET timeout_at = date_trunc('minute', date_added) + make_interval(mins => %(minutes)s)
WHERE monitor_environment_id = ANY(%(env_ids)s::bigint[]) AND status = {int(CheckInStatus.IN_PROGRESS)}
"""

MUTE_ENVIRONMENTS = """
UPDATE monitor_environments SET is_muted = %(muted)s
WHERE monitor_id = %(monitor_id)s AND NOT pending_deletion
  AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
"""

# The monitor's own flag follows its environments (muted as a whole when all are), so an
# environment created later by a check-in starts muted exactly when the monitor is.
SYNC_MONITOR_MUTED = """
UPDATE monitors m SET is_muted = coalesce((
    SELECT bool_and(me.is_muted) FROM monitor_environments me
    WHERE me.monitor_id = m.id AND NOT me.pending_deletion), %(fallback)s)
WHERE m.id = %(monitor_id)s
"""


# --- alert routing ----------------------------------------------------------------------

# The named channels, of this organization only (another one's is "no channel", as a
# missing one), locked against a concurrent delete until the routes are written.
ROUTE_CHANNELS = """
SELECT id, guid FROM alert_channels
WHERE organization_id = %(organization_id)s AND guid = ANY(%(guids)s::uuid[])
ORDER BY id
FOR KEY SHARE
"""

SELECT_ROUTING = "UPDATE monitors SET alert_channels_selected = %(selected)s WHERE id = %(id)s"

CLEAR_ROUTES = "DELETE FROM monitor_alert_channels WHERE monitor_id = %(id)s"

ADD_ROUTES = """
INSERT INTO monitor_alert_channels (monitor_id, channel_id, organization_id)
SELECT %(id)s, c, %(organization_id)s FROM unnest(%(channel_ids)s::bigint[]) AS c
"""


def _channel_guids(texts: list[str]) -> list[uuid.UUID]:
    guids = []
    for text in texts:
        try:
            guids.append(uuid.UUID(text))
        except ValueError:
            raise BadParameter("alertChannels", f"no channel {text[:64]!r} in this organization") from None
    return sorted(set(guids))


async def route_alerts(conn: Conn, organization_id: int, monitor_id: int,
                       channels: list[str] | Literal["all"] | None) -> None:
    """Route the (locked or new) monitor's notifications: ``"all"`` channels of its
    organization, or only the listed channel ids; None leaves the routing as it is."""
    if channels is None:
        return
    if channels == "all":
        await conn.execute(CLEAR_ROUTES, {"id": monitor_id})
        await conn.execute(SELECT_ROUTING, {"id": monitor_id, "selected": False})
        return
    # Channels are locked before the routes are touched, the order a channel's delete
    # (channel, then its routes by cascade) takes too.
    guids = _channel_guids(list(channels))
    cur = await conn.execute(ROUTE_CHANNELS, {"organization_id": organization_id, "guids": guids})
    found = {guid: channel_id for channel_id, guid in await cur.fetchall()}
    missing = [str(g) for g in guids if g not in found]
    if missing:
        raise BadParameter("alertChannels", f"no channel {missing[0]!r} in this organization")
    await conn.execute(CLEAR_ROUTES, {"id": monitor_id})
    await conn.execute(SELECT_ROUTING, {"id": monitor_id, "selected": True})
    await conn.execute(ADD_ROUTES, {"id": monitor_id, "organization_id": organization_id,
                                    "channel_ids": list(found.values())})


async def create_monitor(conn: Conn, organization_id: int, body: MonitorWrite) -> int:
    """Insert a monitor from a POST body; return its id. 400 names the field."""
    if body.project is None:
        raise BadParameter("project", "field required")
    if body.name is None:
        raise BadParameter("name", "field required")
    if body.config is None:
        raise BadParameter("config", "field required")
    project_id = await _project_id(conn, organization_id, body.project)
    slug = _slug(body.slug if body.slug is not None else body.name, "slug" if body.slug is not None else "name")
    config = _config(body.config)
    cur = await conn.execute(INSERT_MONITOR, {
        "organization_id": organization_id, "project_id": project_id, "slug": slug, "name": body.name,
        "status": _status(body.status, int(MonitorStatus.ACTIVE)), "config": Jsonb(config_to_json(config)),
        "is_muted": bool(body.is_muted)})
    row = await cur.fetchone()
    if row is None:
        raise _slug_taken(slug)
    await route_alerts(conn, organization_id, int(row[0]), body.alert_channels)
    return int(row[0])


async def lock_monitor(conn: Conn, organization_id: int, monitor_id: int) -> tuple[Any, ...]:
    cur = await conn.execute(LOCK_MONITOR, {"id": monitor_id, "organization_id": organization_id})
    row: tuple[Any, ...] | None = await cur.fetchone()
    if row is None:
        raise NotFound("Monitor not found")
    return row


async def _lock_environments(conn: Conn, monitor_id: int, names: list[str] | None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(LOCK_ENVIRONMENTS, {"monitor_id": monitor_id, "names": names})
    return await cur.fetchall()


async def update_monitor(conn: Conn, organization_id: int, monitor_id: int, body: MonitorWrite,
                         now: datetime) -> None:
    """Apply a partial update (PUT) and its consequences in the caller's transaction."""
    _, project_id, slug, status, stored = await lock_monitor(conn, organization_id, monitor_id)
    if body.project is not None and await _project_id(conn, organization_id, body.project) != project_id:
        raise BadParameter("project", "a monitor cannot be moved to another project")
    old = config_from_json(stored)
    new = _config({**stored, **body.config}) if body.config is not None else old
    new_status = _status(body.status, status)
    new_slug = _slug(body.slug, "slug") if body.slug is not None else slug
    try:
        async with conn.transaction():  # a savepoint: a taken slug is a 400, not an aborted transaction
            await conn.execute(UPDATE_MONITOR, {
                "id": monitor_id, "name": body.name, "slug": new_slug,
                "status": new_status, "config": Jsonb(config_to_json(new)), "config_written": body.config is not None})
    except errors.UniqueViolation:
        raise _slug_taken(new_slug) from None
    await route_alerts(conn, organization_id, monitor_id, body.alert_channels)
    envs = await _lock_environments(conn, monitor_id, None)
    await _recompute(conn, envs, old, new, enabling=status == MonitorStatus.DISABLED and new_status != status,
                     now=now)
    if body.is_muted is not None:
        await conn.execute(MUTE_ENVIRONMENTS, {"muted": body.is_muted, "monitor_id": monitor_id, "ids": None})
        await conn.execute(SYNC_MONITOR_MUTED, {"monitor_id": monitor_id, "fallback": body.is_muted})


async def _recompute(conn: Conn, envs: list[tuple[Any, ...]], old: MonitorConfig, new: MonitorConfig,
                     enabling: bool, now: datetime) -> None:
    schedule_changed = (new.schedule, new.timezone) != (old.schedule, old.timezone)
    margin_changed = new.effective_checkin_margin != old.effective_checkin_margin
    ids, nexts, latests = [], [], []
    for env_id, _, last_checkin, next_checkin in envs:
        if schedule_changed or enabling:
            deadlines = next_deadlines(new, last_checkin, now, from_now=enabling)
        elif margin_changed and next_checkin is not None:
            deadlines = Deadlines(next_checkin, next_checkin + timedelta(minutes=new.effective_checkin_margin))
        else:
            continue
        ids.append(env_id)
        nexts.append(deadlines.next_checkin)
        latests.append(deadlines.next_checkin_latest)
    if ids:
        await conn.execute(SET_DEADLINES, {"ids": ids, "next": nexts, "latest": latests})
    if new.effective_max_runtime != old.effective_max_runtime and envs:
        await conn.execute(MOVE_TIMEOUTS, {"minutes": new.effective_max_runtime, "env_ids": [e[0] for e in envs]})


async def set_environment_muted(conn: Conn, organization_id: int, monitor_id: int, environment: str,
                                muted: bool) -> None:
    await lock_monitor(conn, organization_id, monitor_id)
    envs = await _lock_environments(conn, monitor_id, [environment])
    if not envs:
        raise NotFound("Environment not found")
    await conn.execute(MUTE_ENVIRONMENTS, {"muted": muted, "monitor_id": monitor_id, "ids": [envs[0][0]]})
    await conn.execute(SYNC_MONITOR_MUTED, {"monitor_id": monitor_id, "fallback": muted})


# --- deletion ---------------------------------------------------------------------------

HIDE_MONITOR = f"""
UPDATE monitors SET pending_deletion = true, status = {int(MonitorStatus.DISABLED)}, slug = %(prefix)s || id WHERE id = %(id)s
"""

HIDE_ENVIRONMENTS = f"""
UPDATE monitor_environments
SET pending_deletion = true, status = {int(MonitorStatus.DISABLED)}, environment = %(prefix)s || id, next_checkin = NULL,
    next_checkin_latest = NULL
WHERE id = ANY(%(ids)s::bigint[])
"""

QUEUE_DELETIONS = """
INSERT INTO monitor_deletions (monitor_id, environment_id)
SELECT %(monitor_id)s, e FROM unnest(%(env_ids)s::bigint[]) AS e
"""


async def delete_monitor(conn: Conn, organization_id: int, monitor_id: int, environments: list[str] | None) -> None:
    """Hide the monitor (or only ``environments``) at once and queue its rows for the purge.

    The slug or environment name is renamed in this transaction, so it is free for a new
    monitor or environment as soon as the 202 is sent; check-ins, rollups, attachments
    and incidents go in bounded batches (:mod:`api.deletions`).
    """
    await lock_monitor(conn, organization_id, monitor_id)
    envs = await _lock_environments(conn, monitor_id, environments)
    if environments is not None and not envs:
        raise NotFound("Environment not found")
    env_ids = [e[0] for e in envs]
    await conn.execute(HIDE_ENVIRONMENTS, {"ids": env_ids, "prefix": DELETED_PREFIX})
    if environments is None:
        await conn.execute(HIDE_MONITOR, {"id": monitor_id, "prefix": DELETED_PREFIX})
        await conn.execute(QUEUE_DELETIONS, {"monitor_id": monitor_id, "env_ids": [None]})
    else:
        await conn.execute(QUEUE_DELETIONS, {"monitor_id": monitor_id, "env_ids": env_ids})


# --- bulk -------------------------------------------------------------------------------

NOT_ALL_IDS = "Not all ids are valid for this organization."

MONITORS_BY_GUID = """
SELECT id, guid FROM monitors
WHERE organization_id = %(organization_id)s AND guid = ANY(%(guids)s::uuid[]) AND NOT pending_deletion
  AND (%(project_id)s::bigint IS NULL OR project_id = %(project_id)s::bigint)
ORDER BY id
"""


async def bulk_update(conn: Conn, organization_id: int, guids: list[uuid.UUID], body: MonitorWrite,
                      now: datetime, project_id: int | None = None) -> list[int]:
    """Apply ``status`` / ``isMuted`` to every monitor of ``guids`` (of ``project_id`` when
    given), locked in id order; 400 when one is not there."""
    cur = await conn.execute(MONITORS_BY_GUID, {"organization_id": organization_id, "guids": guids,
                                                "project_id": project_id})
    rows = await cur.fetchall()
    if len(rows) != len(set(guids)):
        raise ApiError(400, NOT_ALL_IDS, "ids")
    change = MonitorWrite(status=body.status, is_muted=body.is_muted)
    for monitor_id, _ in rows:
        await update_monitor(conn, organization_id, monitor_id, change, now)
    return [int(r[0]) for r in rows]
