"""The clock's metrics (consumers.clock.metrics): what each observation sets."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from consumers.clock import metrics

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def test_the_slowest_partition_is_the_clock_and_its_lag_is_measured_against_wall_time() -> None:
    metrics.observe_positions({0: T + 5 * M, 1: T + 2 * M, 2: T + 9 * M}, 3)
    assert value("cronpipe_clock_slowest_partition") == 1
    assert value("cronpipe_clock_position_timestamp_seconds") == (T + 2 * M).timestamp()
    assert value("cronpipe_clock_lag_seconds") >= time.time() - (T + 2 * M).timestamp() - 1  # read at scrape time


def test_a_partition_without_a_position_is_the_one_holding_the_clock_back() -> None:
    metrics.observe_positions({0: T + 3 * M}, 1)
    metrics.observe_positions({0: T + 5 * M, 2: T + 5 * M}, 3)
    assert value("cronpipe_clock_slowest_partition") == 1
    assert value("cronpipe_clock_position_timestamp_seconds") == (T + 3 * M).timestamp()  # the last known clock


def test_a_clock_in_the_future_has_a_negative_lag_never_nan_once_read() -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)
    metrics.observe_positions({0: ahead}, 1)
    lag = value("cronpipe_clock_lag_seconds")
    assert not math.isnan(lag) and lag < 0


def test_produced_ticks_are_counted_and_the_newest_is_kept() -> None:
    before = value("cronpipe_clock_ticks_produced_total")
    metrics.observe_ticks([T + M, T + 2 * M, T])
    metrics.observe_ticks([])
    assert value("cronpipe_clock_ticks_produced_total") - before == 3
    assert value("cronpipe_clock_last_tick_timestamp_seconds") == (T + 2 * M).timestamp()


def test_errors_are_counted_by_stage_and_type() -> None:
    class TaskSendError(RuntimeError):
        pass

    before = REGISTRY.get_sample_value("cronpipe_clock_errors_total", {"stage": "dispatch", "type": "TaskSendError"})
    metrics.error(metrics.DISPATCH, TaskSendError("not delivered"))
    metrics.error(metrics.DISPATCH, TaskSendError("not delivered"))
    metrics.error(metrics.TASKS, "ScheduleError")
    assert value("cronpipe_clock_errors_total", stage="dispatch", type="TaskSendError") - (before or 0) == 2
    assert value("cronpipe_clock_errors_total", stage="tasks", type="ScheduleError") >= 1


def test_every_labelled_counter_is_exported_at_zero_before_its_first_event() -> None:
    for kind in ("mark_missing", "mark_timeout"):
        value("cronpipe_clock_tasks_dispatched_total", kind=kind)
    for status in ("missed", "timeout", "unknown"):
        value("cronpipe_clock_checkins_marked_total", status=status)
    for message in ("tick", "task"):
        value("cronpipe_clock_undecodable_total", message=message)
