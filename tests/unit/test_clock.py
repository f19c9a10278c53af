"""The clock's pure decisions: ticks from partition positions (consumers.clock.ticks)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consumers.clock.ticks import due_ticks
from schemas.minutes import floor_minute

T = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)


def test_the_first_tick_is_the_clock_itself_without_backfill() -> None:
    assert due_ticks({0: T}, 1, None) == [T]


def test_no_tick_until_the_clock_passes_the_last_tick() -> None:
    assert due_ticks({0: T + timedelta(seconds=59)}, 1, T) == []


def test_skipped_minutes_are_backfilled_in_order() -> None:
    assert due_ticks({0: T + 3 * M + timedelta(seconds=5)}, 1, T) == [T + M, T + 2 * M, T + 3 * M]


def test_the_slowest_partition_is_the_clock() -> None:
    positions = {0: T + 5 * M, 1: T + 2 * M, 2: T + 9 * M, 3: T + 5 * M}
    assert due_ticks(positions, 4, T) == [T + M, T + 2 * M]


def test_a_partition_never_seen_holds_the_clock_back() -> None:
    assert due_ticks({0: T + 5 * M, 1: T + 5 * M, 2: T + 5 * M}, 4, T) == []
    assert due_ticks({0: T + 5 * M, 1: T + 5 * M, 2: T + 5 * M}, 4, None) == []


def test_positions_of_other_partitions_are_ignored() -> None:
    assert due_ticks({0: T + M, 7: T - 60 * M}, 1, T) == [T + M]


def test_a_clock_behind_the_last_tick_produces_nothing() -> None:
    assert due_ticks({0: T - 5 * M}, 1, T) == []


def test_a_long_outage_is_caught_up_in_bounded_steps() -> None:
    ticks = due_ticks({0: T + 10 * M}, 1, T, limit=4)
    assert ticks == [T + M, T + 2 * M, T + 3 * M, T + 4 * M]


@pytest.mark.parametrize("ts, floored", [
    (T + timedelta(seconds=59, microseconds=999), T),
    (datetime(2026, 11, 26, 13, 0, 30, tzinfo=timezone(timedelta(hours=1))), T),
])
def test_floor_minute_truncates_to_the_utc_minute(ts: datetime, floored: datetime) -> None:
    assert floor_minute(ts) == floored
