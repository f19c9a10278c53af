"""The clock's metrics (prometheus_client, default registry): served on the worker's
``/metrics`` (``CRONPIPE_WORKER_HEALTH_PORT``, consumers.health) by every worker that
runs a clock agent. Each stage observes its own: ``ticks`` (positions, ticks produced),
``runner`` (ticks dispatched, tasks sent, retries and stops), ``apply`` (tasks applied,
check-ins marked, undecodable tasks, unschedulable monitors).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from prometheus_client import Counter, Gauge

__all__ = [
    "CHECKINS_MARKED",
    "ERRORS",
    "LAG",
    "LAST_TICK",
    "POSITION",
    "SLOWEST_PARTITION",
    "TASKS_APPLIED",
    "TASKS_DISPATCHED",
    "TICKS_DISPATCHED",
    "TICKS_PRODUCED",
    "UNDECODABLE",
    "error",
    "observe_positions",
    "observe_ticks",
]

#: Stages of the clock, the ``stage`` label of :data:`ERRORS`.
TICKS: Final = "ticks"
DISPATCH: Final = "dispatch"
TASKS: Final = "tasks"

POSITION = Gauge("cronpipe_clock_position_timestamp_seconds",
                 "the clock: message time (minute) of the slowest partition of ingest-monitors, as last read")
LAG = Gauge("cronpipe_clock_lag_seconds",
            "wall time minus the clock's message time (the slowest partition), at scrape time; NaN before the "
            "first reading")
SLOWEST_PARTITION = Gauge("cronpipe_clock_slowest_partition",
                          "the ingest-monitors partition holding the clock back (-1 before the first reading)")
LAST_TICK = Gauge("cronpipe_clock_last_tick_timestamp_seconds", "the newest tick this worker produced")
TICKS_PRODUCED = Counter("cronpipe_clock_ticks_produced_total", "ticks produced to monitors-clock-tick")
TICKS_DISPATCHED = Counter("cronpipe_clock_ticks_dispatched_total",
                           "ticks dispatched (their tasks delivered and the tick's offset committed)")
TASKS_DISPATCHED = Counter("cronpipe_clock_tasks_dispatched_total", "tasks sent to monitors-clock-tasks", ["kind"])
TASKS_APPLIED = Counter("cronpipe_clock_tasks_applied_total",
                        "tasks applied in committed batches (redeliveries and undecodable ones excluded)")
CHECKINS_MARKED = Counter("cronpipe_clock_checkins_marked_total",
                          "check-ins the clock tasks wrote or changed, by the status written", ["status"])
UNDECODABLE = Counter("cronpipe_clock_undecodable_total", "clock messages skipped because they did not decode",
                      ["message"])
ERRORS = Counter("cronpipe_clock_errors_total",
                 "clock processing errors by stage and type: retried (StoreUnavailable, TickSendError, "
                 "TaskSendError), fatal (StoreError, a bug), unschedulable monitors (ConfigError, ScheduleError)",
                 ["stage", "type"])

_position: list[float] = [math.nan]


def _lag() -> float:
    return time.time() - _position[0]


LAG.set_function(_lag)
SLOWEST_PARTITION.set(-1)
for _kind in ("mark_missing", "mark_timeout"):
    TASKS_DISPATCHED.labels(_kind)
for _status in ("missed", "timeout", "unknown"):
    CHECKINS_MARKED.labels(_status)
for _message in ("tick", "task"):
    UNDECODABLE.labels(_message)


def observe_positions(positions: Mapping[int, datetime], partitions: int) -> None:
    """Record the clock from the partition positions read by an advance: the slowest
    partition (a partition without a position holds the clock back, its time unknown)."""
    if partitions < 1:
        return
    missing = [p for p in range(partitions) if p not in positions]
    if missing:
        SLOWEST_PARTITION.set(missing[0])
        return
    slowest = min(range(partitions), key=lambda p: (positions[p], p))
    SLOWEST_PARTITION.set(slowest)
    _position[0] = positions[slowest].timestamp()
    POSITION.set(_position[0])


def observe_ticks(ticks: list[datetime]) -> None:
    """Ticks delivered to Kafka."""
    if ticks:
        TICKS_PRODUCED.inc(len(ticks))
        LAST_TICK.set(max(ticks).timestamp())


def error(stage: str, exc: BaseException | str) -> None:
    """Count one processing error of ``stage`` by its type (an exception's class name)."""
    ERRORS.labels(stage, exc if isinstance(exc, str) else type(exc).__name__).inc()
