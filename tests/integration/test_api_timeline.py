"""The monitors timeline: every monitor's environments with per-bucket counts from the rollups,
equal to those computed from the check-ins; filters, paging and 400s naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from schemas.enums import CheckInStatus, MonitorStatus, api_name
from tests.integration.api_seed import SeededCheckIn, Seeder

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
SINCE = int(T0.timestamp())
UNTIL = SINCE + 23 * 3600
PATH = "/api/0/organizations/acme/monitors-timeline/"
FIELDS = ("ok", "error", "missed", "timeout", "in_progress", "unknown")


@dataclass(frozen=True)
class TimelineWorld:
    token: str
    other_token: str
    checkins: dict[tuple[str, str], list[SeededCheckIn]]


@pytest.fixture
def world(database_url: str) -> TimelineWorld:
    plan = {
        ("nightly", "production"): [(1, CheckInStatus.OK), (1, CheckInStatus.ERROR), (5, CheckInStatus.MISSED),
                                    (7, CheckInStatus.IN_PROGRESS), (22, CheckInStatus.TIMEOUT)],
        ("nightly", "staging"): [(2, CheckInStatus.OK), (23, CheckInStatus.UNKNOWN)],
        ("backup", "production"): [(0, CheckInStatus.OK), (0, CheckInStatus.IN_PROGRESS),
                                   (30, CheckInStatus.ERROR)],  # hour 30: outside the range
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        org = s.org("acme")
        backend, ops = s.project("acme", "backend"), s.project("acme", "ops")
        monitors = {"nightly": s.monitor(org, backend, "nightly"),
                    "backup": s.monitor(org, ops, "backup", status=MonitorStatus.DISABLED)}
        s.monitor(org, backend, "fresh")  # no environment yet
        checkins: dict[tuple[str, str], list[SeededCheckIn]] = {}
        for (slug, env), rows in plan.items():
            s.environment(monitors[slug], env)
            checkins[(slug, env)] = [
                s.checkin(monitors[slug], env, status, T0 + timedelta(hours=hour, minutes=10 + i), duration_ms=100)
                for i, (hour, status) in enumerate(rows)]
        s.build_rollups()
        s.org("other")
        other_token = s.token("other")
        return TimelineWorld(s.token("acme"), other_token, checkins)


def expected_cells(checkins: list[SeededCheckIn], since: int, resolution: int, buckets: int) -> list[list[int]]:
    cells: dict[int, list[int]] = {}
    for c in checkins:
        index = (int(c.date_added.timestamp()) - since) // resolution
        if 0 <= index < buckets:
            cells.setdefault(index, [index] + [0] * len(FIELDS))[1 + FIELDS.index(api_name(c.status))] += 1
    return [cells[i] for i in sorted(cells)]


def get(client: TestClient, token: str, **params: Any) -> Any:
    return client.get(PATH, params=params, headers={"Authorization": f"Bearer {token}"})


def test_every_monitor_comes_with_each_environments_buckets_computed_from_its_checkins(
        client: TestClient, world: TimelineWorld) -> None:
    response = get(client, world.token, since=SINCE, until=UNTIL, resolution="1h")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert (body["since"], body["until"], body["resolution"], body["buckets"]) == (SINCE, UNTIL + 3600, 3600, 24)
    assert [m["slug"] for m in body["monitors"]] == ["backup", "fresh", "nightly"]
    by_slug = {m["slug"]: m for m in body["monitors"]}
    assert by_slug["backup"]["status"] == "disabled" and by_slug["fresh"]["environments"] == []
    for (slug, env), checkins in world.checkins.items():
        shown = {e["name"]: e for e in by_slug[slug]["environments"]}[env]
        assert shown["timeline"] == expected_cells(checkins, SINCE, 3600, 24), (slug, env)
    nightly = {e["name"]: e["timeline"] for e in by_slug["nightly"]["environments"]}
    assert nightly["production"][0] == [1, 1, 1, 0, 0, 0, 0]  # an ok and an error in one hour


def test_six_hour_buckets_add_up_the_hourly_rollups(client: TestClient, world: TimelineWorld) -> None:
    body = get(client, world.token, since=SINCE, until=UNTIL, resolution=6 * 3600).json()
    assert body["buckets"] == 4
    nightly = next(m for m in body["monitors"] if m["slug"] == "nightly")
    production = next(e for e in nightly["environments"] if e["name"] == "production")
    assert production["timeline"] == expected_cells(world.checkins[("nightly", "production")], SINCE, 6 * 3600, 4)


def test_filters_by_project_monitor_and_environment(client: TestClient, world: TimelineWorld) -> None:
    window = {"since": SINCE, "until": UNTIL}
    assert [m["slug"] for m in get(client, world.token, project="ops", **window).json()["monitors"]] == ["backup"]
    nightly = get(client, world.token, monitor="nightly", environment="staging", **window).json()["monitors"]
    assert [(m["slug"], [e["name"] for e in m["environments"]]) for m in nightly] == [("nightly", ["staging"])]
    guid = nightly[0]["id"]
    assert [m["slug"] for m in get(client, world.token, monitor=guid, **window).json()["monitors"]] == ["nightly"]


def test_pages_follow_the_link_header(client: TestClient, world: TimelineWorld) -> None:
    first = get(client, world.token, per_page=2)
    assert [m["slug"] for m in first.json()["monitors"]] == ["backup", "fresh"]
    assert 'rel="next"; results="true"; cursor="0:2:0"' in first.headers["Link"]
    second = get(client, world.token, per_page=2, cursor="0:2:0")
    assert [m["slug"] for m in second.json()["monitors"]] == ["nightly"]
    assert 'rel="next"; results="false"' in second.headers["Link"]


def test_another_organizations_token_sees_no_monitor_of_it(client: TestClient, world: TimelineWorld) -> None:
    response = get(client, world.other_token)
    assert (response.status_code, response.json()["detail"]) == (404, "Organization not found")
    assert get(client, "cpt_wrong").status_code == 401


@pytest.mark.parametrize(("params", "parameter", "reason"), [
    ({"resolution": "30m"}, "resolution", "whole number of hours"),
    ({"resolution": "5400"}, "resolution", "whole number of hours"),
    ({"resolution": "soon"}, "resolution", "is not a duration"),
    ({"since": UNTIL, "until": SINCE}, "since", "must not be after until"),
    ({"since": SINCE - 400 * 3600, "until": SINCE, "resolution": "1h"}, "resolution", "at most 200"),
    ({"since": -1}, "since", "greater than or equal to 0"),
    ({"per_page": 1001}, "per_page", "less than or equal to 1000"),
    ({"cursor": "next"}, "cursor", "not a cursor"),
])
def test_bad_parameters_are_400s_naming_the_parameter(client: TestClient, world: TimelineWorld,
                                                      params: dict[str, Any], parameter: str, reason: str) -> None:
    response = get(client, world.token, **params)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter and reason in response.json()["detail"]
