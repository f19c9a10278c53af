"""Stats bucket planning: which buckets a request covers and where their numbers come from.

Pure. Buckets are aligned to the unix epoch (``ts = floor(t / resolution) * resolution``),
so daily buckets start at UTC midnight. A resolution that is a whole number of hours is
served from the hourly or daily rollups (a sum of whole rows, never a check-in scan);
finer resolutions scan the check-ins, which the bucket cap keeps to a few days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from api.errors import BadParameter

HOUR = 3600
DAY = 86400
#: Most buckets one response may hold (90 days hourly is 2,161).
MAX_BUCKETS = 5000
MIN_RESOLUTION = 60
#: The automatic resolution is the first of these that gives at most AUTO_BUCKETS buckets.
AUTO_RESOLUTIONS = (300, HOUR, 6 * HOUR, DAY, 7 * DAY)
AUTO_BUCKETS = 200


@dataclass(frozen=True)
class StatsPlan:
    resolution: int
    #: Stored rollup resolution to read (3600 or 86400), or None to scan check-ins.
    source: int | None
    first: int
    last: int

    @property
    def start(self) -> int:
        return self.first

    @property
    def end(self) -> int:
        """Exclusive end of the last bucket."""
        return self.last + self.resolution


def bucket_count(since: int, until: int, resolution: int) -> int:
    return (until // resolution - since // resolution) + 1


def auto_resolution(since: int, until: int) -> int:
    for resolution in AUTO_RESOLUTIONS:
        if bucket_count(since, until, resolution) <= AUTO_BUCKETS:
            return resolution
    return AUTO_RESOLUTIONS[-1]


def rollup_source(resolution: int) -> int | None:
    if resolution % DAY == 0:
        return DAY
    if resolution % HOUR == 0:
        return HOUR
    if resolution < HOUR:
        return None
    raise BadParameter("resolution", "must be below 1h or a whole number of hours")


def plan_stats(since: int, until: int, resolution: int | None) -> StatsPlan:
    """Plan the buckets from floor(since) to floor(until), both included."""
    explicit = resolution is not None
    if resolution is None:
        resolution = auto_resolution(since, until)
    elif resolution < MIN_RESOLUTION:
        raise BadParameter("resolution", f"must be at least {MIN_RESOLUTION} seconds")
    count = bucket_count(since, until, resolution)
    if count > MAX_BUCKETS:
        raise BadParameter("resolution" if explicit else "since",
                           f"{count} buckets requested, at most {MAX_BUCKETS}; use a coarser resolution")
    return StatsPlan(resolution, rollup_source(resolution), since // resolution * resolution,
                     until // resolution * resolution)


def unix(moment: datetime) -> int:
    return int(moment.timestamp() // 1)


def fill_buckets(plan: StatsPlan, rows: Iterable[Sequence[int]]) -> list[dict[str, int | float]]:
    """One entry per bucket, zeros where no row; ``duration`` is the mean in ms (0 when none).

    ``rows`` are plain tuples ``(ts, ok, error, missed, timeout, unknown, duration_sum,
    duration_count)`` (see ``store.STATS_FROM_*``): thousands per response, so no row objects.
    """
    by_ts = {row[0]: row for row in rows}
    out: list[dict[str, int | float]] = []
    append = out.append
    for ts in range(plan.first, plan.last + 1, plan.resolution):
        row = by_ts.get(ts)
        if row is None:
            append({"ts": ts, "ok": 0, "error": 0, "missed": 0, "timeout": 0, "unknown": 0, "duration": 0})
        else:
            _, ok, error, missed, timeout, unknown, duration_sum, duration_count = row
            append({"ts": ts, "ok": ok, "error": error, "missed": missed, "timeout": timeout, "unknown": unknown,
                    "duration": duration_sum / duration_count if duration_count else 0})
    return out
