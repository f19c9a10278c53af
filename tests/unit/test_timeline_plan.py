"""Timeline bucket planning and the merging of rollup and in-progress rows (pure)."""

from __future__ import annotations

import pytest

from api.errors import BadParameter
from api.timeline import TimelinePlan, cells_by_environment, plan_timeline

NOW = 1_772_366_400 + 1234  # 2026-03-01T12:20:34Z


@pytest.mark.parametrize(("range_s", "resolution", "buckets"), [
    (86400 - 3600, 3600, 24), (7 * 86400 - 6 * 3600, 6 * 3600, 28), (30 * 86400 - 86400, 86400, 30),
])
def test_the_dashboards_periods_get_a_few_dozen_ticks(range_s: int, resolution: int, buckets: int) -> None:
    plan = plan_timeline(NOW - range_s, NOW, resolution, NOW)
    assert (plan.resolution, plan.buckets) == (resolution, buckets)
    assert plan.start % resolution == 0 and plan.start <= NOW - range_s < plan.start + resolution


def test_without_parameters_it_covers_the_last_day_hourly() -> None:
    assert plan_timeline(None, None, None, NOW) == TimelinePlan(3600, 3600, (NOW - 86400) // 3600 * 3600, 25)


def test_an_automatic_resolution_for_a_month_is_daily_from_the_daily_rollups() -> None:
    plan = plan_timeline(NOW - 30 * 86400, NOW, None, NOW)
    assert (plan.resolution, plan.source) == (86400, 86400)


@pytest.mark.parametrize(("since", "until", "resolution", "parameter"), [
    (NOW, NOW - 1, None, "since"),
    (NOW - 3600, NOW, 1800, "resolution"),
    (NOW - 3600, NOW, 5400, "resolution"),
    (NOW - 300 * 3600, NOW, 3600, "resolution"),
    (0, NOW, None, "since"),
])
def test_it_refuses_ranges_it_cannot_serve_from_the_rollups(since: int, until: int, resolution: int | None,
                                                           parameter: str) -> None:
    with pytest.raises(BadParameter) as raised:
        plan_timeline(since, until, resolution, NOW)
    assert raised.value.parameter == parameter


def test_rollup_and_in_progress_rows_of_one_bucket_are_added_up_in_index_order() -> None:
    rows = [(7, 3, 1, 0, 0, 0, 0, 0), (7, 0, 0, 2, 0, 0, 0, 0), (7, 3, 0, 0, 0, 0, 1, 0), (8, 1, 0, 0, 0, 1, 0, 0)]
    assert cells_by_environment(rows) == {7: [[0, 0, 2, 0, 0, 0, 0], [3, 1, 0, 0, 0, 1, 0]],
                                          8: [[1, 0, 0, 0, 1, 0, 0]]}
