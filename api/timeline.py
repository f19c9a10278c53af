"""The monitors timeline: which buckets one request covers, and the sparse rows it answers with.

Pure. Buckets are aligned to the unix epoch like the stats endpoint's (``api.stats``) and
always a whole number of hours, because the timeline is read from the hourly and daily
rollups only: one request covers every monitor of a page, so it must never scan check-ins
(only the few open IN_PROGRESS ones, through their partial index).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from api.errors import BadParameter
from api.stats import DAY, HOUR, bucket_count, rollup_source

#: The automatic resolution is the first of these giving at most AUTO_BUCKETS buckets:
#: 24 h → hourly (25 ticks), 7 d → 6-hourly (29), 30 d → daily (31).
AUTO_RESOLUTIONS = (HOUR, 6 * HOUR, DAY, 7 * DAY)
AUTO_BUCKETS = 48
#: Ticks one timeline may hold; with a page of 1,000 monitors × 3 environments that caps a
#: response near 600,000 cells (sparse: only non-empty buckets are sent).
MAX_BUCKETS = 200
DEFAULT_RANGE = DAY
#: Column order of one timeline cell after its bucket index (documented in docs/api.md).
CELL_FIELDS = ("ok", "error", "missed", "timeout", "in_progress", "unknown")


@dataclass(frozen=True)
class TimelinePlan:
    resolution: int
    #: Stored rollup resolution summed into each bucket (3600 or 86400).
    source: int
    #: Start of the first bucket (unix seconds).
    start: int
    buckets: int

    @property
    def end(self) -> int:
        """Exclusive end of the last bucket."""
        return self.start + self.buckets * self.resolution


def plan_timeline(since: int | None, until: int | None, resolution: int | None, now: int) -> TimelinePlan:
    """Buckets from floor(since) to floor(until), both included; ``until`` defaults to now and
    ``since`` to a day before ``until``. Raises BadParameter naming the parameter at fault."""
    end = now if until is None else until
    start = max(end - DEFAULT_RANGE, 0) if since is None else since
    if start > end:
        raise BadParameter("since", "must not be after until")
    explicit = resolution is not None
    if resolution is None:
        resolution = next((r for r in AUTO_RESOLUTIONS if bucket_count(start, end, r) <= AUTO_BUCKETS),
                          AUTO_RESOLUTIONS[-1])
    elif resolution < HOUR or resolution % HOUR:
        raise BadParameter("resolution", "must be a whole number of hours (the timeline reads the rollups)")
    count = bucket_count(start, end, resolution)
    if count > MAX_BUCKETS:
        raise BadParameter("resolution" if explicit else "since",
                           f"{count} buckets requested, at most {MAX_BUCKETS}; use a coarser resolution")
    source = rollup_source(resolution)
    assert source is not None  # whole hours always have a rollup source
    return TimelinePlan(resolution, source, start // resolution * resolution, count)


def cells_by_environment(rows: Iterable[Sequence[int]]) -> dict[int, list[list[int]]]:
    """``(environment_id, index, ok, error, missed, timeout, in_progress, unknown)`` rows, as
    the timeline query returns them (one per non-empty bucket, possibly split in two: rollup
    counts and open check-ins), merged into each environment's cells sorted by index."""
    merged: dict[int, dict[int, list[int]]] = {}
    for environment_id, index, *counts in rows:
        cells = merged.setdefault(environment_id, {})
        cell = cells.get(index)
        if cell is None:
            cells[index] = [index, *counts]
        else:
            for position, count in enumerate(counts, start=1):
                cell[position] += count
    return {env: [cells[i] for i in sorted(cells)] for env, cells in merged.items()}
