"""PostgreSQL side of the maintenance: partitions, retention summary, batched deletes.

Partition names come from the database (``checkins_pYYYYMMDD``) and are quoted with
``psycopg.sql.Identifier``. Each batched function runs one bounded statement; the caller
commits between them, so no transaction holds many rows' locks for long.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[Any]

#: Session advisory lock held by the one maintenance pass running across all processes.
MAINTENANCE_LOCK_KEY = 0x6372706D61696E74  # "crpmaint"

PARTITIONS = """
SELECT c.relname, i.inhdetachpending
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'public.checkins'::regclass
"""

# Tables named like a partition that are not attached: a drop that was interrupted
# between DETACH and DROP.
LEFTOVERS = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ '^checkins_p[0-9]{8}(_detached)?$'
   AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
"""

RETENTIONS = "SELECT day, retention_days FROM checkin_retention_days"

ENSURE = "SELECT cronpipe_ensure_checkins_partitions(%(days)s::date[])"

# One bounded step of a drop: delete up to n guid rows of the partition's day (by the
# date_added index, in heap order) and their attachments. Used before it is detached.
FORGET_GUIDS = """
WITH gone AS (DELETE FROM checkin_guids WHERE ctid = ANY(ARRAY(
                  SELECT ctid FROM checkin_guids
                   WHERE date_added >= %(lo)s::timestamptz AND date_added < %(hi)s::timestamptz
                   LIMIT %(n)s::integer))
              RETURNING guid),
     attachments AS (DELETE FROM checkin_attachments a USING gone WHERE a.checkin_guid = gone.guid RETURNING 1)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attachments)
"""

# One bounded step of a trim: of the next n rows in id order, delete those kept at most
# ``r`` days, with their guid rows and attachments.
TRIM = """
WITH scanned AS (SELECT id, retention_days FROM {part} WHERE id > %(after)s::bigint ORDER BY id LIMIT %(n)s::integer),
     doomed AS (DELETE FROM {part} c USING scanned s
                 WHERE c.id = s.id AND s.retention_days <= %(r)s::integer RETURNING c.id, c.guid),
     gone AS (DELETE FROM checkin_guids g USING doomed d
               WHERE g.guid = d.guid AND g.checkin_id = d.id RETURNING g.guid),
     attachments AS (DELETE FROM checkin_attachments a USING gone WHERE a.checkin_guid = gone.guid RETURNING 1)
SELECT (SELECT max(id) FROM scanned), (SELECT count(*) FROM doomed), (SELECT count(*) FROM attachments)
"""

FORGET_RETENTIONS = """
DELETE FROM checkin_retention_days WHERE day = %(day)s::date AND retention_days <= %(r)s::integer
"""

PRUNE_ROLLUPS = """
DELETE FROM checkin_rollups WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM checkin_rollups
     WHERE resolution = %(resolution)s::integer AND bucket < %(before)s::timestamptz
     LIMIT %(n)s::integer))
"""

PRUNE_ORPHAN_ATTACHMENTS = """
DELETE FROM checkin_attachments WHERE ctid = ANY(ARRAY(
    SELECT a.ctid FROM checkin_attachments a
     WHERE a.date_added < %(before)s::timestamptz
       AND NOT EXISTS (SELECT 1 FROM checkin_guids g WHERE g.guid = a.checkin_guid)
     LIMIT %(n)s::integer))
"""

# The alert tables (0009_alerts.sql), oldest first by the indexes of 0012_alert_routing.sql.
# An outbox row without sent_at (not yet published, or held by the volume guard) and a
# pending delivery (still being retried) are never deleted, nor the log rows and the
# event of a pending delivery. A delivery's log rows are at most as new as its
# date_finished (the last one is written in the same transaction), so deleting the log
# first and the deliveries after leaves no log row of a kept delivery behind.
PRUNE_OUTBOX = """
DELETE FROM incident_outbox WHERE id = ANY(ARRAY(
    SELECT id FROM incident_outbox WHERE sent_at < %(before)s::timestamptz LIMIT %(n)s::integer))
"""

PRUNE_DELIVERY_LOG = """
DELETE FROM alert_delivery_log WHERE id = ANY(ARRAY(
    SELECT l.id FROM alert_delivery_log l
     WHERE l.date_added < %(before)s::timestamptz
       AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.id = l.delivery_id AND d.status = 'pending')
     LIMIT %(n)s::integer))
"""

PRUNE_DELIVERIES = """
DELETE FROM alert_deliveries WHERE id = ANY(ARRAY(
    SELECT id FROM alert_deliveries
     WHERE status <> 'pending' AND date_finished < %(before)s::timestamptz LIMIT %(n)s::integer))
"""

PRUNE_ALERT_EVENTS = """
DELETE FROM alert_events WHERE event_id = ANY(ARRAY(
    SELECT e.event_id FROM alert_events e
     WHERE e.date_received < %(before)s::timestamptz
       AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.event_id = e.event_id)
     LIMIT %(n)s::integer))
"""


@dataclass(frozen=True)
class Partitions:
    attached: dict[date, str]
    #: DETACH ... CONCURRENTLY interrupted after its first transaction.
    detach_pending: list[str]
    #: Detached but not dropped.
    leftovers: list[str]


def partition_day(name: str) -> date:
    return datetime.strptime(name.removeprefix("checkins_p")[:8], "%Y%m%d").date()


def load_partitions(conn: Conn) -> Partitions:
    attached: dict[date, str] = {}
    pending: list[str] = []
    for name, detach_pending in conn.execute(PARTITIONS):
        if detach_pending:
            pending.append(name)
        elif name.startswith("checkins_p"):
            attached[partition_day(name)] = name
    leftovers = [row[0] for row in conn.execute(LEFTOVERS)]
    return Partitions(attached, sorted(pending), sorted(leftovers))


def load_retentions(conn: Conn) -> dict[date, set[int]]:
    held: dict[date, set[int]] = {}
    for day, retention in conn.execute(RETENTIONS):
        held.setdefault(day, set()).add(int(retention))
    return held


def ensure_partitions(conn: Conn, days: Iterable[date]) -> int:
    """Create the missing day partitions of ``days``; returns how many were created."""
    wanted = sorted(set(days))
    if not wanted:
        return 0
    row = conn.execute(ENSURE, {"days": wanted}).fetchone()
    return int(row[0]) if row else 0


def forget_guids(conn: Conn, day: date, n: int) -> tuple[int, int]:
    """(guid rows deleted, attachments deleted) of one bounded step; (0, 0) when done."""
    lo = datetime.combine(day, time(), timezone.utc)
    row = conn.execute(FORGET_GUIDS, {"lo": lo, "hi": lo + timedelta(days=1), "n": n}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def trim(conn: Conn, part: str, r: int, after: int, n: int) -> tuple[int | None, int, int]:
    """(last id scanned or None at the end, check-ins deleted, attachments deleted)."""
    row = conn.execute(sql.SQL(TRIM).format(part=sql.Identifier(part)),
                       {"after": after, "n": n, "r": r}).fetchone()
    assert row is not None
    return row[0], int(row[1]), int(row[2])


def forget_retentions(conn: Conn, day: date, r: int) -> None:
    conn.execute(FORGET_RETENTIONS, {"day": day, "r": r})


def detach_concurrently(conn: Conn, part: str) -> None:
    """Needs an autocommit connection: DETACH ... CONCURRENTLY runs two transactions."""
    conn.execute(sql.SQL("ALTER TABLE checkins DETACH PARTITION {} CONCURRENTLY").format(sql.Identifier(part)))


def finalize_detach(conn: Conn, part: str) -> None:
    conn.execute(sql.SQL("ALTER TABLE checkins DETACH PARTITION {} FINALIZE").format(sql.Identifier(part)))


# Rows written to a day while it was being dropped (a late check-in kept longer than the
# rest of its day) go back into checkins, in a new partition of that day.
RESCUE = """
WITH late AS (SELECT * FROM {part}
               WHERE (date_added AT TIME ZONE 'UTC')::date + retention_days + 1 > %(today)s::date),
     unlisted AS (DELETE FROM checkin_guids g USING late WHERE g.guid = late.guid AND g.checkin_id = late.id)
INSERT INTO checkins SELECT * FROM late
"""

LONGEST_RETENTION = "SELECT max(retention_days) FROM checkin_retention_days WHERE day = %(day)s::date"


def drop_detached(conn: Conn, part: str, today: date) -> int:
    """Drop a detached partition and forget its day's retentions, in one transaction;
    returns how many rows it moved back first (see RESCUE). Once DETACH CONCURRENTLY has
    returned nothing writes to the table any more, so its day's retentions are final."""
    day = partition_day(part)
    with conn.transaction():
        row = conn.execute(LONGEST_RETENTION, {"day": day}).fetchone()
        longest = row[0] if row else None
        forget_retentions(conn, day, 2**31 - 1)
        rescued = 0
        if longest is not None and day + timedelta(days=longest + 1) > today:
            if not part.endswith("_detached"):  # free the name for the day's new partition
                moved = f"{part}_detached"
                conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(part),
                                                                           sql.Identifier(moved)))
                part = moved
            ensure_partitions(conn, [day])
            rescued = conn.execute(sql.SQL(RESCUE).format(part=sql.Identifier(part)),
                                   {"today": today}).rowcount
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part)))
    return rescued


def prune_rollups(conn: Conn, resolution: int, before: datetime, n: int) -> int:
    return conn.execute(PRUNE_ROLLUPS, {"resolution": resolution, "before": before, "n": n}).rowcount


def prune_orphan_attachments(conn: Conn, before: datetime, n: int) -> int:
    return conn.execute(PRUNE_ORPHAN_ATTACHMENTS, {"before": before, "n": n}).rowcount


def try_lock(conn: Conn) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MAINTENANCE_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def unlock(conn: Conn) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK_KEY,))


def prune_alerts(conn: Conn, statement: str, before: datetime, n: int) -> int:
    """One bounded step of one of the ``PRUNE_*`` alert statements; the rows deleted."""
    return conn.execute(statement, {"before": before, "n": n}).rowcount
