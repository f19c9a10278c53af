"""Stats endpoint: per-bucket counts and mean durations equal those computed from the check-ins."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from schemas.enums import CheckInStatus
from tests.integration.api_seed import SeededCheckIn, Seeder
from tests.integration.api_world import expected_stats

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class StatsWorld:
    token: str
    checkins: list[SeededCheckIn]


@pytest.fixture
def stats_world(database_url: str) -> StatsWorld:
    rng = random.Random(6)
    statuses = [CheckInStatus.OK] * 5 + [CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT,
                                         CheckInStatus.IN_PROGRESS, CheckInStatus.UNKNOWN]
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        org_id = s.org("acme")
        project_id = s.project("acme", "backend")
        monitor = s.monitor(org_id, project_id, "every-minute")
        checkins = []
        for env in ("production", "staging"):
            s.environment(monitor, env)
            for minute in range(0, 120, 2 if env == "production" else 3):
                status = rng.choice(statuses)
                duration = None if status in (CheckInStatus.MISSED, CheckInStatus.IN_PROGRESS) else rng.randint(1, 9999)
                when = T0 + timedelta(minutes=minute, seconds=rng.randint(0, 59))
                checkins.append(s.checkin(monitor, env, status, when, duration))
        s.build_rollups()
        return StatsWorld(s.token("acme"), checkins)



SINCE = int(T0.timestamp())
UNTIL = int((T0 + timedelta(hours=2) - timedelta(seconds=1)).timestamp())


@pytest.mark.parametrize("environments", [None, {"production"}, {"staging"}, {"production", "staging"}])
@pytest.mark.parametrize("resolution", [3600, 7200, 86400, 900, 60])
def test_stats_match_the_checkins_per_environment_and_combined(stats_world: StatsWorld, client: TestClient,
                                                               environments: set[str] | None,
                                                               resolution: int) -> None:
    params: dict[str, object] = {"since": SINCE, "until": UNTIL, "resolution": resolution}
    if environments:
        params["environment"] = sorted(environments)
    for prefix in ("/api/0/organizations/acme/monitors/every-minute/",
                   "/api/0/projects/acme/backend/monitors/every-minute/"):
        response = client.get(prefix + "stats/", params=params,
                              headers={"Authorization": f"Bearer {stats_world.token}"})
        assert response.status_code == 200, response.text
        assert response.json() == expected_stats(stats_world.checkins, SINCE, UNTIL, resolution, environments)


def test_stats_have_one_bucket_per_resolution_step_from_floor_since_to_floor_until(stats_world: StatsWorld,
                                                                                  client: TestClient) -> None:
    response = client.get("/api/0/organizations/acme/monitors/every-minute/stats/",
                          params={"since": SINCE + 1800, "until": SINCE + 3 * 3600 + 5, "resolution": "1h"},
                          headers={"Authorization": f"Bearer {stats_world.token}"})
    assert [b["ts"] for b in response.json()] == [SINCE + h * 3600 for h in range(4)]
    assert response.json()[-1] == {"ts": SINCE + 3 * 3600, "ok": 0, "error": 0, "missed": 0, "timeout": 0,
                                   "unknown": 0, "duration": 0}


@pytest.mark.parametrize("span, resolution", [(3600, 300), (86400, 3600), (14 * 86400, 21600), (90 * 86400, 86400)])
def test_stats_pick_a_resolution_when_none_is_given(stats_world: StatsWorld, client: TestClient, span: int,
                                                    resolution: int) -> None:
    response = client.get("/api/0/organizations/acme/monitors/every-minute/stats/",
                          params={"since": SINCE, "until": SINCE + span},
                          headers={"Authorization": f"Bearer {stats_world.token}"})
    body = response.json()
    assert body[1]["ts"] - body[0]["ts"] == resolution
    assert body == expected_stats(stats_world.checkins, SINCE, SINCE + span, resolution)
