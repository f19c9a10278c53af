"""Whole minutes of message time: the unit of the clock's ticks, of schedules' fire times
and of the per-minute counts (the check-in rate limit, the volume guard).

There is one meaning of "the minute of ``ts``": the UTC minute that contains the instant.
The copies this replaced (processor, clock, management API, clock benchmark) differed
only in the zone of the result (``ts.replace(second=0)`` kept the input's zone), which
names the same instant for every zone with a whole-minute offset.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["floor_minute"]

UTC = timezone.utc


def floor_minute(ts: datetime) -> datetime:
    """The start of the minute that contains ``ts`` (aware), as an aware UTC datetime."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    # Already whole (a minute floored before, most of the processor's calls): no new object.
    return ts.replace(second=0, microsecond=0) if ts.second or ts.microsecond else ts
