"""The background purge of deleted monitors and environments, in bounded batches.

``DELETE`` (api.manage.delete_monitor) hides the rows at once and queues a
``monitor_deletions`` row; :func:`purge_step` then removes at most ``batch`` check-ins
(with their attachments) per transaction, and when none are left the rollups,
incidents, processing errors, environments and finally the monitor. Each step is a short
transaction of its own, so a monitor with millions of check-ins never holds a long one
and ingestion keeps committing between steps. ``FOR UPDATE SKIP LOCKED`` on the queue
lets several API processes purge side by side without doing a step twice.

Who runs it: every ``cronpipe api`` process (:func:`purge_forever`, started with the app),
and ``cronpipe monitor purge`` for a deployment that wants it elsewhere (e.g. cron).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("cronpipe.api.deletions")

#: Check-ins deleted per transaction.
BATCH: Final = 5000
#: Seconds between looks at an empty queue.
IDLE_SECONDS: Final = 5.0

NEXT_DELETION = """
SELECT id, monitor_id, environment_id FROM monitor_deletions ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""

ENVIRONMENT_IDS = """
SELECT id FROM monitor_environments
WHERE monitor_id = %(monitor_id)s AND (%(env_id)s::bigint IS NULL OR id = %(env_id)s::bigint)
ORDER BY id
"""

# The batch goes through checkins_env_date (monitor_environment_id, ...); attachments are
# keyed by check-in guid, so each batch takes the attachments of its own check-ins.
DELETE_CHECKINS = """
WITH gone AS (
  DELETE FROM checkins WHERE id IN (
    SELECT id FROM checkins WHERE monitor_environment_id = ANY(%(env_ids)s::bigint[]) LIMIT %(batch)s)
  RETURNING guid
),
-- checkins is partitioned by day; the guid index table (0008) holds one row per check-in.
guids AS (DELETE FROM checkin_guids g USING gone WHERE g.guid = gone.guid)
DELETE FROM checkin_attachments a USING gone
WHERE a.checkin_guid = gone.guid AND a.monitor_id = %(monitor_id)s
"""

DELETE_ROLLUPS = "DELETE FROM checkin_rollups WHERE monitor_environment_id = ANY(%(env_ids)s::bigint[])"

DELETE_INCIDENTS = "DELETE FROM incidents WHERE monitor_environment_id = ANY(%(env_ids)s::bigint[])"
DELETE_ENVIRONMENTS = "DELETE FROM monitor_environments WHERE id = ANY(%(env_ids)s::bigint[])"
DELETE_MONITOR_REST = [
    "DELETE FROM checkin_attachments WHERE monitor_id = %(monitor_id)s",
    "DELETE FROM processing_errors WHERE monitor_id = %(monitor_id)s",
    "DELETE FROM monitors WHERE id = %(monitor_id)s",
]
LOCK_MONITOR = "SELECT 1 FROM monitors WHERE id = %(monitor_id)s FOR UPDATE"
DONE = "DELETE FROM monitor_deletions WHERE id = %(id)s"


async def purge_step(conn: AsyncConnection[Any], batch: int = BATCH) -> bool:
    """One bounded transaction of purge work; True if there may be more to do now."""
    async with conn.transaction():
        cur = await conn.execute(NEXT_DELETION)
        job = await cur.fetchone()
        if job is None:
            return False
        deletion_id, monitor_id, env_id = job
        cur = await conn.execute(ENVIRONMENT_IDS, {"monitor_id": monitor_id, "env_id": env_id})
        env_ids = [row[0] for row in await cur.fetchall()]
        params = {"env_ids": env_ids, "monitor_id": monitor_id, "batch": batch, "id": deletion_id}
        await conn.execute(DELETE_CHECKINS, params)
        if await _has_checkins(conn, env_ids):
            return True
        # Parents after children, the monitor row locked before its environments (the lock order).
        if env_id is None:
            await conn.execute(LOCK_MONITOR, params)
        await conn.execute(DELETE_ROLLUPS, params)
        await conn.execute(DELETE_INCIDENTS, params)
        await conn.execute(DELETE_ENVIRONMENTS, params)
        if env_id is None:
            for statement in DELETE_MONITOR_REST:
                await conn.execute(statement, params)
        await conn.execute(DONE, params)
        log.info("purged %s", f"monitor {monitor_id}" if env_id is None else f"environment {env_id}")
        return True


HAS_CHECKINS = "SELECT EXISTS (SELECT 1 FROM checkins WHERE monitor_environment_id = ANY(%(env_ids)s::bigint[]))"


async def _has_checkins(conn: AsyncConnection[Any], env_ids: list[int]) -> bool:
    cur = await conn.execute(HAS_CHECKINS, {"env_ids": env_ids})
    row = await cur.fetchone()
    return bool(row and row[0])


async def purge_all(conn: AsyncConnection[Any], batch: int = BATCH) -> int:
    """Run steps until the queue is empty; return how many steps ran."""
    steps = 0
    while await purge_step(conn, batch):
        steps += 1
    return steps


async def purge_forever(pool: AsyncConnectionPool[Any], idle_seconds: float = IDLE_SECONDS) -> None:
    """The API process's purge loop: steps back to back while there is work, then naps.

    A database error is logged and retried after the nap: the queue row stays, so no
    deletion is forgotten.
    """
    while True:
        try:
            async with pool.connection() as conn:
                while await purge_step(conn):
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop must outlive a database outage
            log.warning("monitor purge failed, retrying in %.0f s: %s", idle_seconds, exc)
        await asyncio.sleep(idle_seconds)
