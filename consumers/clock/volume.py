"""The volume-anomaly guard's decision (Sentry's system incidents), pure.

At tick T the clock looks at minute T−1: how many check-ins the processor accepted in
it, against the same minute of day on each of the previous 30 days. A drop of
``incident_pct`` or more is an INCIDENT metric, of ``abnormal_pct`` or more an ABNORMAL
metric; fewer than two baseline points mean NORMAL (a fresh install behaves as if the
guard did not exist). The metric of T and of the four ticks before it, with the previous
decision, give T's decision (:func:`next_decision`), with Sentry's transitions:

========== =================================== ==========
from       when                                to
========== =================================== ==========
normal     latest metric abnormal              abnormal
normal     latest metric incident              incident (back-dates nothing)
abnormal   latest metric incident              incident (back-dates the pending run)
abnormal   all 5 metrics normal                normal (releases the pending run)
incident   latest metric normal                recovering
recovering latest metric not normal            incident (back-dates the pending run)
recovering all 5 metrics normal                normal (releases; drops the incident's volume)
========== =================================== ==========
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["WINDOW", "Decision", "Metric", "Transition", "UndoneFailure", "classify", "next_decision",
           "pct_deviation", "recount_run"]

#: Metrics in the decision window (the tick's own and the four before it).
WINDOW: Final = 5
#: Baseline points needed before a deviation means anything.
MIN_POINTS: Final = 2


class Metric(StrEnum):
    NORMAL = "normal"
    ABNORMAL = "abnormal"
    INCIDENT = "incident"


class Decision(StrEnum):
    NORMAL = "normal"
    ABNORMAL = "abnormal"
    INCIDENT = "incident"
    RECOVERING = "recovering"

    @property
    def pending(self) -> bool:
        """Synthetic failures of a pending tick are held until a later tick resolves it."""
        return self in (Decision.ABNORMAL, Decision.RECOVERING)


@dataclass(frozen=True)
class Transition:
    decision: Decision
    #: The preceding pending ticks become INCIDENT (their failures are undone).
    backdate: bool = False
    #: The preceding pending ticks were normal after all (their failures are released).
    release: bool = False
    #: The incident is over: its minutes leave the volume history.
    recovered: bool = False


def pct_deviation(volume: int, history: Sequence[int]) -> float | None:
    """``(v − mean) / mean × 100`` against the baseline; None with too little of it."""
    if len(history) < MIN_POINTS:
        return None
    mean = sum(history) / len(history)
    if mean <= 0:
        return None
    return (volume - mean) / mean * 100.0


def classify(pct: float | None, abnormal_pct: float, incident_pct: float) -> Metric:
    """Thresholds are drops in percent (positive numbers: 10 means −10 %)."""
    if pct is None:
        return Metric.NORMAL
    if pct <= -incident_pct:
        return Metric.INCIDENT
    if pct <= -abnormal_pct:
        return Metric.ABNORMAL
    return Metric.NORMAL


def next_decision(previous: Decision, window: Sequence[Metric]) -> Transition:
    """The decision of a tick from the previous tick's decision and the metrics of the
    last :data:`WINDOW` ticks, oldest first (the tick's own metric last)."""
    if not window:
        return Transition(previous)
    latest = window[-1]
    all_normal = len(window) >= WINDOW and all(m is Metric.NORMAL for m in window[-WINDOW:])
    if previous is Decision.NORMAL:
        if latest is Metric.INCIDENT:
            return Transition(Decision.INCIDENT)
        if latest is Metric.ABNORMAL:
            return Transition(Decision.ABNORMAL)
        return Transition(Decision.NORMAL)
    if previous is Decision.ABNORMAL:
        if latest is Metric.INCIDENT:
            return Transition(Decision.INCIDENT, backdate=True)
        if all_normal:
            return Transition(Decision.NORMAL, release=True)
        return Transition(Decision.ABNORMAL)
    if previous is Decision.INCIDENT:
        if latest is Metric.NORMAL:
            return Transition(Decision.RECOVERING)
        return Transition(Decision.INCIDENT)
    # RECOVERING
    if latest is not Metric.NORMAL:
        return Transition(Decision.INCIDENT, backdate=True)
    if all_normal:
        return Transition(Decision.NORMAL, release=True, recovered=True)
    return Transition(Decision.RECOVERING)


@dataclass(frozen=True)
class UndoneFailure:
    """A held synthetic failure that a back-dating turned UNKNOWN."""

    checkin_id: int
    #: The first check-in of the failure run it was counted in; None: it was not counted.
    run_start_id: int | None


def recount_run(failure_run: int, start_id: int | None, undone: Sequence[UndoneFailure]) -> tuple[int, bool]:
    """An environment's failure run once its ``undone`` failures no longer count.

    Only the ones counted in the current run (the run that starts at ``start_id``) come
    off it; failures of an earlier run, ended by an OK, were already forgotten. Returns
    the new length and whether the run needs a new first check-in (its first one was
    undone and the run goes on with the failures that remain)."""
    if start_id is None:
        return failure_run, False
    left = max(failure_run - sum(1 for u in undone if u.run_start_id == start_id), 0)
    return left, left > 0 and any(u.checkin_id == start_id for u in undone)
