"""The stats route with its cache on (as under `cronpipe api`): the same bytes as without it,
never older than the bound, never another organization's, errors never kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.stats_cache import StatsCache
from tests.integration.api_world import T0, World, expected_stats, seed_world

pytestmark = pytest.mark.postgres

BOUND = 1.0
SINCE = int(T0.timestamp())
UNTIL = int((T0 + timedelta(hours=6)).timestamp())
ACME = "/api/0/organizations/acme/monitors/nightly/stats/"


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(database_url: str) -> World:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return seed_world(conn)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cached(database_url: str, world: World, clock: Clock) -> Iterator[TestClient]:
    app = create_app(database_url, pool_size=2, stats_cache_seconds=BOUND)
    app.state.stats_cache = StatsCache(BOUND, clock=clock)
    with TestClient(app) as c:
        yield c


def _get(client: TestClient, path: str, token: str, **params: Any) -> Any:
    merged = {k: v for k, v in {"since": SINCE, "until": UNTIL, "resolution": 3600, **params}.items() if v is not None}
    return client.get(path, params=merged, headers={"Authorization": f"Bearer {token}"})


def _add_ok(database_url: str, monitor_id: int, n: int) -> None:
    """n more OK check-ins in the first hour's rollups of every environment of the monitor."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE checkin_rollups SET ok = ok + %s WHERE resolution = 3600 AND bucket = %s"
                     " AND monitor_environment_id IN (SELECT id FROM monitor_environments WHERE monitor_id = %s)",
                     (n, T0, monitor_id))


def _first_ok(response: Any) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()[0]["ok"])


@pytest.mark.parametrize("params", [{}, {"environment": "production"}, {"environment": ["staging", "production"]},
                                    {"resolution": 86400}, {"resolution": 900}, {"resolution": None}])
def test_a_cached_answer_is_the_same_bytes_and_headers_as_an_uncached_one(
        database_url: str, world: World, cached: TestClient, client: TestClient, params: dict[str, Any]) -> None:
    for path in (ACME, "/api/0/projects/acme/backend/monitors/nightly/stats/",
                 f"/api/0/organizations/{world.acme_id}/monitors/{world.nightly.guid}/stats/"):
        fresh = _get(client, path, world.acme_token, **params)
        first = _get(cached, path, world.acme_token, **params)
        again = _get(cached, path, world.acme_token, **params)
        assert fresh.status_code == first.status_code == again.status_code == 200
        assert fresh.content == first.content == again.content
        assert {k: v for k, v in fresh.headers.items() if k != "date"} == \
               {k: v for k, v in again.headers.items() if k != "date"}
    body = _get(cached, ACME, world.acme_token, environment="production").json()
    assert body == expected_stats(world.production, SINCE, UNTIL, 3600, {"production"})


def test_an_answer_is_never_older_than_the_bound(database_url: str, world: World, cached: TestClient,
                                                clock: Clock) -> None:
    before = _first_ok(_get(cached, ACME, world.acme_token))
    _add_ok(database_url, world.nightly.id, 100)
    clock.now += BOUND * 0.4
    assert _first_ok(_get(cached, ACME, world.acme_token)) == before  # within the bound: may be the cached one
    clock.now += BOUND * 0.6  # the bound since the read: the database answers
    assert _first_ok(_get(cached, ACME, world.acme_token)) == before + 200  # two environments


def test_the_first_request_in_the_second_half_of_the_bound_reads_the_database(
        database_url: str, world: World, cached: TestClient, clock: Clock) -> None:
    before = _first_ok(_get(cached, ACME, world.acme_token))
    _add_ok(database_url, world.nightly.id, 10)
    clock.now += BOUND * 0.6
    assert _first_ok(_get(cached, ACME, world.acme_token)) == before + 20


def test_another_organizations_token_never_reaches_a_cached_answer(world: World, cached: TestClient) -> None:
    acme = _get(cached, ACME, world.acme_token)
    assert acme.status_code == 200
    for path in (ACME, f"/api/0/organizations/{world.acme_id}/monitors/nightly/stats/",
                 f"/api/0/organizations/acme/monitors/{world.nightly.guid}/stats/",
                 "/api/0/projects/acme/backend/monitors/nightly/stats/"):
        assert _get(cached, path, world.acme_token).status_code == 200
        refused = _get(cached, path, world.globex_token)
        assert (refused.status_code, refused.json()["detail"]) == (404, "Organization not found"), path
    foreign_guid = _get(cached, f"/api/0/organizations/globex/monitors/{world.nightly.guid}/stats/",
                        world.globex_token)
    assert (foreign_guid.status_code, foreign_guid.json()["detail"]) == (404, "Monitor not found")
    globex = _get(cached, "/api/0/organizations/globex/monitors/nightly/stats/", world.globex_token)
    assert globex.status_code == 200 and globex.content != acme.content
    assert sum(b["ok"] for b in globex.json()) == 1  # globex's own "nightly": one OK check-in
    assert _get(cached, ACME, world.acme_token).content == acme.content


def test_a_missing_monitor_is_not_cached_and_answers_once_it_exists(
        database_url: str, world: World, cached: TestClient) -> None:
    path = "/api/0/organizations/acme/monitors/added-later/stats/"
    missing = _get(cached, path, world.acme_token)
    assert (missing.status_code, missing.json()["detail"]) == (404, "Monitor not found")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO monitors (organization_id, project_id, slug, name, config)"
                     " SELECT organization_id, project_id, 'added-later', 'x', config FROM monitors WHERE id = %s",
                     (world.nightly.id,))
    assert _get(cached, path, world.acme_token).status_code == 200  # same instant: nothing was kept


def test_a_deleted_monitor_answers_404_once_the_bound_has_passed(
        database_url: str, world: World, cached: TestClient, clock: Clock) -> None:
    assert _get(cached, ACME, world.acme_token).status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE monitors SET pending_deletion = true WHERE id = %s", (world.nightly.id,))
    clock.now += BOUND
    gone = _get(cached, ACME, world.acme_token)
    # The oldest remaining "nightly" of acme is frontend's: the path now names that monitor.
    assert gone.status_code == 200 and sum(b["ok"] for b in gone.json()) == 0
    gone = _get(cached, "/api/0/projects/acme/backend/monitors/nightly/stats/", world.acme_token)
    assert (gone.status_code, gone.json()["detail"]) == (404, "Monitor not found")


@pytest.mark.parametrize("params", [{"resolution": "fast"}, {"since": UNTIL + 10}])
def test_a_missing_monitor_with_a_bad_parameter_is_a_404_as_without_the_cache(
        world: World, cached: TestClient, client: TestClient, params: dict[str, Any]) -> None:
    path = "/api/0/organizations/acme/monitors/no-such-monitor/stats/"
    for c in (cached, client):
        response = _get(c, path, world.acme_token, **params)
        assert (response.status_code, response.json()["detail"]) == (404, "Monitor not found")
    bad = _get(cached, ACME, world.acme_token, **params)
    assert bad.status_code == 400


def test_a_request_without_a_valid_token_is_refused_as_without_the_cache(world: World, cached: TestClient) -> None:
    assert _get(cached, ACME, world.acme_token).status_code == 200
    missing = cached.get(ACME)
    wrong = cached.get(ACME, headers={"Authorization": "Bearer cpt_" + "x" * 43})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"] == wrong.headers["www-authenticate"] == "Bearer"
