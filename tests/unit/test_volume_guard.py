"""The volume-anomaly guard's decision: deviation, metric classes, Sentry's transitions, and
the failure run recounted when held failures are undone."""

from __future__ import annotations

import pytest

from consumers.clock import volume
from consumers.clock.volume import Decision, Metric, Transition, classify, next_decision, pct_deviation

N, A, I = Metric.NORMAL, Metric.ABNORMAL, Metric.INCIDENT  # noqa: E741


def test_the_deviation_is_the_percent_difference_from_the_baseline_mean() -> None:
    assert pct_deviation(50, [100, 100, 100]) == -50.0
    assert pct_deviation(110, [100, 100]) == pytest.approx(10.0)


def test_fewer_than_two_baseline_points_give_no_deviation_and_a_normal_metric() -> None:
    assert pct_deviation(0, []) is None
    assert pct_deviation(0, [100]) is None
    assert classify(None, 10, 30) is Metric.NORMAL


@pytest.mark.parametrize(("pct", "metric"), [
    (0.0, N), (-9.99, N), (-10.0, A), (-29.9, A), (-30.0, I), (-100.0, I), (25.0, N)])
def test_drops_of_ten_and_thirty_percent_are_abnormal_and_incident_metrics(pct: float, metric: Metric) -> None:
    assert classify(pct, 10, 30) is metric


@pytest.mark.parametrize(("previous", "window", "expected"), [
    (Decision.NORMAL, [N, N, N, N, N], Transition(Decision.NORMAL)),
    (Decision.NORMAL, [N, N, N, N, A], Transition(Decision.ABNORMAL)),
    (Decision.NORMAL, [N, N, N, N, I], Transition(Decision.INCIDENT)),
    (Decision.NORMAL, [A], Transition(Decision.ABNORMAL)),
    (Decision.ABNORMAL, [N, N, N, A, N], Transition(Decision.ABNORMAL)),
    (Decision.ABNORMAL, [N, N, N, N, N], Transition(Decision.NORMAL, release=True)),
    (Decision.ABNORMAL, [N, N, N, A, I], Transition(Decision.INCIDENT, backdate=True)),
    (Decision.ABNORMAL, [A, A, A, A, A], Transition(Decision.ABNORMAL)),
    (Decision.INCIDENT, [I, I, I, I, A], Transition(Decision.INCIDENT)),
    (Decision.INCIDENT, [I, I, I, I, N], Transition(Decision.RECOVERING)),
    (Decision.RECOVERING, [I, I, I, N, N], Transition(Decision.RECOVERING)),
    (Decision.RECOVERING, [I, I, N, N, A], Transition(Decision.INCIDENT, backdate=True)),
    (Decision.RECOVERING, [I, N, N, N, I], Transition(Decision.INCIDENT, backdate=True)),
    (Decision.RECOVERING, [N, N, N, N, N], Transition(Decision.NORMAL, release=True, recovered=True)),
])
def test_each_transition_follows_sentrys_system_incident_rules(
        previous: Decision, window: list[Metric], expected: Transition) -> None:
    assert next_decision(previous, window) == expected


def test_only_abnormal_and_recovering_ticks_are_pending() -> None:
    assert [d for d in Decision if d.pending] == [Decision.ABNORMAL, Decision.RECOVERING]


@pytest.mark.parametrize(("run", "start", "undone", "expected"), [
    # A real failure (id 1) started the run; two held ones (2, 3) were counted in it.
    (3, 1, [volume.UndoneFailure(2, 1), volume.UndoneFailure(3, 1)], (1, False)),
    # The held failure started the run and a job's ERROR (4) followed: 4 is left, as the start.
    (2, 2, [volume.UndoneFailure(2, 2)], (1, True)),
    # Only held failures in it: no run is left.
    (2, 2, [volume.UndoneFailure(2, 2), volume.UndoneFailure(3, 2)], (0, False)),
    # An OK ended the held failures' run; the current one (from 9) does not change.
    (1, 9, [volume.UndoneFailure(2, 2)], (1, False)),
    # A TIMEOUT that was never counted (a newer run had finished) takes nothing off.
    (1, 1, [volume.UndoneFailure(5, None)], (1, False)),
    # No run at all.
    (0, None, [volume.UndoneFailure(2, 2)], (0, False)),
])
def test_undone_failures_come_off_only_the_run_they_were_counted_in(
        run: int, start: int | None, undone: list[volume.UndoneFailure], expected: tuple[int, bool]) -> None:
    assert volume.recount_run(run, start, undone) == expected

