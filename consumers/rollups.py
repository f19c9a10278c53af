"""Check-in rollups, shared by the check-in processor and the clock: the resolutions, the
bucket a check-in counts in, and the upsert of the counts the clock adds.

``checkin_rollups`` holds one row per (monitor environment, resolution, bucket start) with
counts per status and duration sums, read by the stats endpoint. The processor adds
deltas of accepted check-ins (``consumers.checkins.store``); the clock tasks and the
volume guard add MISSED, TIMEOUT and UNKNOWN counts with :func:`add_rollups`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import psycopg

from schemas.enums import CheckInStatus

__all__ = ["ADD_ROLLUPS", "ROLLUP_RESOLUTIONS", "RollupDelta", "RollupKey", "add_rollups", "bucket_at", "bucket_start",
           "delta_columns"]

Conn = psycopg.Connection[Any]

#: Rollup resolutions in seconds (hourly and daily buckets), as the stats endpoint reads them.
ROLLUP_RESOLUTIONS: Final = (3600, 86400)

#: (monitor environment id, resolution in seconds, bucket start).
RollupKey = tuple[int, int, datetime]


@dataclass(slots=True)
class RollupDelta:
    """What one rollup row gains (or loses) from a batch: counts per final status and the
    sum and count of durations, as the columns of ``checkin_rollups`` name them."""

    ok: int = 0
    error: int = 0
    missed: int = 0
    timeout: int = 0
    unknown: int = 0
    duration_sum_ms: int = 0
    duration_count: int = 0

    def count(self, status: CheckInStatus, duration_ms: int | None, sign: int) -> None:
        """Add (sign +1) or take back (-1) one check-in's contribution: its final status
        (IN_PROGRESS counts nothing) and its duration when it has one."""
        if status == CheckInStatus.IN_PROGRESS:
            return
        if status == CheckInStatus.OK:
            self.ok += sign
        elif status == CheckInStatus.ERROR:
            self.error += sign
        elif status == CheckInStatus.MISSED:
            self.missed += sign
        elif status == CheckInStatus.TIMEOUT:
            self.timeout += sign
        elif status == CheckInStatus.UNKNOWN:
            self.unknown += sign
        if duration_ms is not None:
            self.duration_sum_ms += sign * duration_ms
            self.duration_count += sign


def delta_columns(keys: Sequence[RollupKey], deltas: Mapping[RollupKey, RollupDelta]) -> dict[str, list[Any]]:
    """The upsert's array parameters for ``keys`` (in that order), one list per column."""
    rows = [deltas[k] for k in keys]
    return {"env_ids": [k[0] for k in keys], "resolutions": [k[1] for k in keys], "buckets": [k[2] for k in keys],
            "ok": [d.ok for d in rows], "error": [d.error for d in rows], "missed": [d.missed for d in rows],
            "timeout": [d.timeout for d in rows], "unknown": [d.unknown for d in rows],
            "dsum": [d.duration_sum_ms for d in rows], "dcount": [d.duration_count for d in rows]}


def bucket_start(ts: datetime, resolution: int) -> datetime:
    """The start (aware UTC) of the ``resolution``-second bucket ``ts`` falls in."""
    seconds = int(ts.timestamp())
    return bucket_at(seconds - seconds % resolution)


@functools.lru_cache(maxsize=4096)
def bucket_at(seconds: int) -> datetime:
    """A bucket's start from its unix seconds, memoized: a batch's check-ins fall in a few
    hours and days, and building the datetime costs more than the lookup."""
    return datetime.fromtimestamp(seconds, timezone.utc)


ADD_ROLLUPS = """
INSERT INTO checkin_rollups AS r (monitor_environment_id, resolution, bucket, missed, timeout, unknown)
SELECT * FROM unnest(%(env_ids)b::bigint[], %(resolutions)b::integer[], %(buckets)b::timestamptz[],
                     %(missed)b::integer[], %(timeout)b::integer[], %(unknown)b::integer[])
ON CONFLICT (monitor_environment_id, resolution, bucket)
DO UPDATE SET missed = r.missed + EXCLUDED.missed, timeout = r.timeout + EXCLUDED.timeout,
              unknown = r.unknown + EXCLUDED.unknown
"""


def add_rollups(conn: Conn, counts: Mapping[RollupKey, tuple[int, int]],
                unknown: Mapping[RollupKey, int] | None = None) -> None:
    """Add ``(missed, timeout)`` and ``unknown`` to each (env, resolution, bucket) rollup
    row, in key order (negative counts subtract: the volume guard moves counts)."""
    unknown = unknown or {}
    if not counts and not unknown:
        return
    keys = sorted(set(counts) | set(unknown))
    none = (0, 0)
    conn.execute(ADD_ROLLUPS, {
        "env_ids": [k[0] for k in keys], "resolutions": [k[1] for k in keys], "buckets": [k[2] for k in keys],
        "missed": [counts.get(k, none)[0] for k in keys], "timeout": [counts.get(k, none)[1] for k in keys],
        "unknown": [unknown.get(k, 0) for k in keys],
    })
