"""What a ``checkin_rollups`` row counts, written once as SQL over the check-ins (alias ``c``).

IN_PROGRESS is never counted; a duration counts when a counted check-in has one; a
check-in belongs to the bucket of its ``date_added``. The processor and the clock keep the
rollups incrementally (consumers/); these fragments state the same rules over the
``checkins`` table, for the read API's fine-grained stats (``api.store.STATS_FROM_CHECKINS``)
and for :data:`REBUILD_ROLLUPS`, which derives every rollup row from the check-ins (the API
benchmark's seeding and the tests' fixtures, so a stats test compares the endpoint with
numbers computed from the check-ins themselves).
"""

from __future__ import annotations

from typing import Final

from schemas.enums import CheckInStatus

#: A check-in the rollups count.
COUNTED: Final = f"c.status <> {int(CheckInStatus.IN_PROGRESS)}"

#: The rollup columns in table order (ok, error, missed, timeout, unknown, duration sum and
#: count), aggregated over counted check-ins.
COUNTS: Final = f"""
count(*) FILTER (WHERE c.status = {int(CheckInStatus.OK)}) AS ok,
count(*) FILTER (WHERE c.status = {int(CheckInStatus.ERROR)}) AS error,
count(*) FILTER (WHERE c.status = {int(CheckInStatus.MISSED)}) AS missed,
count(*) FILTER (WHERE c.status = {int(CheckInStatus.TIMEOUT)}) AS timeout,
count(*) FILTER (WHERE c.status = {int(CheckInStatus.UNKNOWN)}) AS unknown,
coalesce(sum(c.duration_ms), 0)::bigint AS duration_sum, count(c.duration_ms) AS duration_count
"""

#: Every hourly and daily rollup row, derived from the check-ins (run on an empty table).
REBUILD_ROLLUPS: Final = f"""
INSERT INTO checkin_rollups (monitor_environment_id, resolution, bucket, ok, error, missed, timeout, unknown,
                             duration_sum_ms, duration_count)
SELECT c.monitor_environment_id, r.resolution,
       to_timestamp(floor(extract(epoch FROM c.date_added) / r.resolution) * r.resolution),
       {COUNTS}
FROM checkins c CROSS JOIN (VALUES (3600), (86400)) AS r (resolution)
WHERE {COUNTED}
GROUP BY 1, 2, 3
"""
