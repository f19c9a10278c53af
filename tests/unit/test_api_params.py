"""Pure parts of the read API: durations, time ranges, cursors, stats planning, file names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.errors import BadParameter, describe_validation
from api.metrics import route_template
from api.params import Cursor, parse_cursor, parse_duration, time_range
from api.present import content_disposition
from api.stats import MAX_BUCKETS, fill_buckets, plan_stats

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, seconds", [("3600", 3600), ("1h", 3600), ("24h", 86400), ("14d", 14 * 86400),
                                           ("30m", 1800), ("2w", 14 * 86400), ("90s", 90)])
def test_durations_read_seconds_or_a_unit_suffix(text: str, seconds: int) -> None:
    assert parse_duration("statsPeriod", text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "h", "-1h", "0", "0h", "1.5h", "٣h", "99999999999"])
def test_bad_durations_name_the_parameter(text: str) -> None:
    with pytest.raises(BadParameter) as raised:
        parse_duration("statsPeriod", text)
    assert raised.value.parameter == "statsPeriod"


def test_stats_period_counts_back_from_now() -> None:
    window = time_range(None, None, "24h", NOW)
    assert (window.since, window.until) == (NOW - timedelta(hours=24), NOW)


def test_since_and_until_are_unix_seconds() -> None:
    window = time_range(0, 86400.5, None, NOW)
    assert window.since == datetime(1970, 1, 1, tzinfo=UTC)
    assert window.until == datetime(1970, 1, 2, 0, 0, 0, 500000, tzinfo=UTC)


def test_cursors_round_trip_in_sentrys_shape() -> None:
    assert parse_cursor("1700000000000000:42:1") == Cursor(1700000000000000, 42, True)
    assert str(Cursor(5, 0, False)) == "5:0:0"
    assert parse_cursor(None) is None


@pytest.mark.parametrize("text", ["", "1:2", "a:b:c", "1:2:3", "1:2:0:0", "-1:0:0", "1" * 30 + ":0:0"])
def test_malformed_cursors_are_rejected(text: str) -> None:
    with pytest.raises(BadParameter):
        parse_cursor(text)


def test_hourly_stats_over_90_days_read_hourly_rollups() -> None:
    plan = plan_stats(0, 90 * 86400, 3600)
    assert (plan.source, plan.first, plan.last, plan.end) == (3600, 0, 90 * 86400, 90 * 86400 + 3600)


@pytest.mark.parametrize("resolution, source", [(86400, 86400), (172800, 86400), (7200, 3600), (900, None),
                                                (60, None)])
def test_each_resolution_reads_whole_rollup_rows_or_scans_below_an_hour(resolution: int, source: int | None) -> None:
    assert plan_stats(1000, 200_000, resolution).source == source


def test_buckets_run_from_floor_since_to_floor_until_inclusive() -> None:
    plan = plan_stats(5400, 3 * 3600 + 1, 3600)
    assert (plan.first, plan.last) == (3600, 3 * 3600)


@pytest.mark.parametrize("resolution, parameter", [(5400, "resolution"), (30, "resolution")])
def test_resolutions_the_rollups_cannot_serve_are_rejected(resolution: int, parameter: str) -> None:
    with pytest.raises(BadParameter) as raised:
        plan_stats(0, 86400, resolution)
    assert raised.value.parameter == parameter


def test_the_bucket_count_is_capped() -> None:
    with pytest.raises(BadParameter) as raised:
        plan_stats(0, MAX_BUCKETS * 3600, 3600)
    assert raised.value.parameter == "resolution"


def test_the_automatic_resolution_keeps_responses_small() -> None:
    assert plan_stats(0, 3600, None).resolution == 300
    assert plan_stats(0, 86400, None).resolution == 3600
    assert plan_stats(0, 90 * 86400, None).resolution == 86400


def test_empty_buckets_are_zeros_and_duration_is_the_mean_of_counted_checkins() -> None:
    plan = plan_stats(0, 7200, 3600)
    row = (3600, 2, 1, 1, 0, 0, 301, 3)
    assert fill_buckets(plan, [row]) == [
        {"ts": 0, "ok": 0, "error": 0, "missed": 0, "timeout": 0, "unknown": 0, "duration": 0},
        {"ts": 3600, "ok": 2, "error": 1, "missed": 1, "timeout": 0, "unknown": 0, "duration": 301 / 3},
        {"ts": 7200, "ok": 0, "error": 0, "missed": 0, "timeout": 0, "unknown": 0, "duration": 0},
    ]


@pytest.mark.parametrize("name, header", [
    ("out.log", 'attachment; filename="out.log"'),
    ('a"b.txt', "attachment; filename=\"ab.txt\"; filename*=utf-8''a%22b.txt"),
    ("résumé.txt", "attachment; filename=\"rsum.txt\"; filename*=utf-8''r%C3%A9sum%C3%A9.txt"),
    ("x\r\nSet-Cookie: a", "attachment; filename=\"xSet-Cookie: a\"; filename*=utf-8''x%0D%0ASet-Cookie%3A%20a"),
])
def test_attachment_names_are_quoted_safely(name: str, header: str) -> None:
    assert content_disposition(name) == header


def test_fastapi_validation_errors_become_one_bad_parameter() -> None:
    error = describe_validation([{"loc": ("query", "since"), "msg": "Input should be a valid number"}])
    assert (error.status, error.parameter) == (400, "since")


def test_metrics_label_routes_by_template_not_by_id() -> None:
    scope = {"route": object(), "path": "/api/0/organizations/acme/monitors/nightly/stats/",
             "path_params": {"organization_id_or_slug": "acme", "monitor_id_or_slug": "nightly"}}
    assert route_template(scope) == \
        "/api/0/organizations/{organization_id_or_slug}/monitors/{monitor_id_or_slug}/stats/"
    assert route_template({"path": "/nope"}) == "unmatched"
