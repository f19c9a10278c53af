"""Read API routes against real PostgreSQL: resolution, scoping, twins, auth, pagination, bad parameters."""

from __future__ import annotations

import itertools
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.api_seed import Seeder
from tests.integration.api_world import T0, World, seed_world

pytestmark = pytest.mark.postgres

@pytest.fixture
def world(database_url: str) -> World:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return seed_world(conn)



def get(client: TestClient, token: str, path: str, **params: object):  # type: ignore[no-untyped-def]
    # httpx drops a path's own query string when params are given, even empty ones.
    return client.get(path, params=params or None, headers={"Authorization": f"Bearer {token}"})


def org_prefixes(w: World) -> list[str]:
    return [f"/api/0/organizations/{org}/monitors/{mon}/"
            for org, mon in itertools.product(("acme", w.acme_id), ("nightly", w.nightly.guid))]


def project_prefixes(w: World) -> list[str]:
    return [f"/api/0/projects/{org}/{proj}/monitors/{mon}/"
            for org, proj, mon in itertools.product(("acme", w.acme_id), ("backend", w.backend_id),
                                                    ("nightly", w.nightly.guid))]


STATS = f"stats/?since={int(T0.timestamp())}&until={int((T0 + timedelta(hours=5)).timestamp())}&resolution=3600"


def resources(w: World) -> list[str]:
    return ["", "checkins/", f"checkins/{w.production[0].guid}/", "checkins/latest/",
            "checkins/latest/?environment=staging", "checkins/latest/attachment/",
            f"checkins/{w.attached.guid}/attachment/", STATS, "environments/production/", "processing-errors/"]


def test_every_monitor_route_answers_the_same_body_under_every_id_and_slug_combination(world: World,
                                                                                      client: TestClient) -> None:
    for resource in resources(world):
        canonical = get(client, world.acme_token, org_prefixes(world)[0] + resource)
        assert canonical.status_code == 200, (resource, canonical.text)
        for prefix in org_prefixes(world)[1:] + project_prefixes(world):
            response = get(client, world.acme_token, prefix + resource)
            assert response.status_code == 200, (prefix + resource, response.text)
            assert response.content == canonical.content, prefix + resource


def test_monitor_details_show_config_environments_and_the_open_incident(world: World, client: TestClient) -> None:
    body = get(client, world.acme_token, "/api/0/organizations/acme/monitors/nightly/").json()
    assert body["id"] == str(world.nightly.guid)
    assert (body["slug"], body["name"], body["status"]) == ("nightly", "Nightly backup", "active")
    assert body["project"] == {"id": str(world.backend_id), "slug": "backend"}
    assert body["config"]["schedule"] == "0 * * * *" and body["config"]["checkin_margin"] == 5
    production, staging = body["environments"]
    assert production == {
        "name": "production", "status": "error", "isMuted": False,
        "lastCheckIn": "2026-03-01T16:00:00Z", "nextCheckIn": "2026-03-01T17:00:00Z",
        "nextCheckInLatest": "2026-03-01T17:05:00Z", "dateCreated": production["dateCreated"],
        "activeIncident": {"id": world.incident_guid, "startingTimestamp": "2026-03-01T15:00:00Z",
                           "resolvingTimestamp": None},
    }
    assert (staging["name"], staging["status"], staging["isMuted"], staging["activeIncident"]) == \
        ("staging", "ok", True, None)


def test_checkins_come_newest_first_with_sentry_fields(world: World, client: TestClient) -> None:
    body = get(client, world.acme_token, "/api/0/organizations/acme/monitors/nightly/checkins/").json()
    everything = sorted(world.production + world.staging, key=lambda c: c.date_added, reverse=True)
    assert [c["id"] for c in body] == [str(c.guid) for c in everything]
    newest = body[0]
    assert newest == {
        "id": str(world.attached.guid), "environment": "production", "status": "error", "duration": 1004,
        "dateCreated": "2026-03-01T16:00:00Z", "dateAdded": "2026-03-01T16:00:00Z",
        "dateUpdated": "2026-03-01T16:00:00Z", "expectedTime": None, "monitorConfig": newest["monitorConfig"],
        "hasAttachment": True, "dateInProgress": None, "dateClock": None,
    }
    assert [c["status"] for c in body if c["environment"] == "production"] == \
        ["error", "timeout", "missed", "error", "ok"]


def test_checkins_filter_by_repeated_environment_and_time_window(world: World, client: TestClient) -> None:
    path = "/api/0/organizations/acme/monitors/nightly/checkins/"
    staging = get(client, world.acme_token, path, environment="staging").json()
    assert {c["environment"] for c in staging} == {"staging"} and len(staging) == 3
    both = get(client, world.acme_token, path + "?environment=staging&environment=production").json()
    assert len(both) == 8
    since, until = int((T0 + timedelta(hours=1)).timestamp()), int((T0 + timedelta(hours=2)).timestamp())
    window = get(client, world.acme_token, path, since=since, until=until).json()
    assert [c["dateCreated"] for c in window] == ["2026-03-01T14:00:00Z", "2026-03-01T13:30:00Z",
                                                  "2026-03-01T13:00:00Z"]


def test_checkin_pages_follow_link_cursors_forward_and_back(world: World, client: TestClient) -> None:
    path = "/api/0/organizations/acme/monitors/nightly/checkins/"
    seen: list[str] = []
    page = get(client, world.acme_token, path, per_page=3)
    pages = []
    while True:
        pages.append(page)
        seen += [c["id"] for c in page.json()]
        links = page.links
        assert 'results="' in page.headers["Link"] and 'rel="next"' in page.headers["Link"]
        if 'rel="next"; results="false"' in page.headers["Link"]:
            break
        page = client.get(links["next"]["url"], headers={"Authorization": f"Bearer {world.acme_token}"})
    everything = sorted(world.production + world.staging, key=lambda c: c.date_added, reverse=True)
    assert seen == [str(c.guid) for c in everything]
    assert len(pages) == 3
    assert 'rel="previous"; results="false"' in pages[0].headers["Link"]
    back = client.get(pages[2].links["previous"]["url"], headers={"Authorization": f"Bearer {world.acme_token}"})
    assert back.json() == pages[1].json()


def test_monitor_list_pages_and_filters(world: World, client: TestClient) -> None:
    path = "/api/0/organizations/acme/monitors/"
    everything = get(client, world.acme_token, path).json()
    assert sorted(m["id"] for m in everything) == sorted(
        str(m.guid) for m in (world.nightly, world.frontend_nightly, world.deploy))
    first = get(client, world.acme_token, path, per_page=2)
    second = client.get(first.links["next"]["url"], headers={"Authorization": f"Bearer {world.acme_token}"})
    assert [m["id"] for m in first.json() + second.json()] == [m["id"] for m in everything]
    assert 'rel="next"; results="false"' in second.headers["Link"]
    by_project = get(client, world.acme_token, path, project="frontend").json()
    assert {m["slug"] for m in by_project} == {"nightly", "deploy"}
    assert {m["id"] for m in get(client, world.acme_token, path, project=str(world.backend_id)).json()} == \
        {str(world.nightly.guid)}
    staging = get(client, world.acme_token, path, environment="staging").json()
    assert [(m["id"], [e["name"] for e in m["environments"]]) for m in staging] == \
        [(str(world.nightly.guid), ["staging"])]
    assert [m["id"] for m in get(client, world.acme_token, path, status="error").json()] == [str(world.nightly.guid)]
    assert get(client, world.acme_token, path, status="disabled").json() == []


def test_attachment_is_served_with_type_and_filename(world: World, client: TestClient) -> None:
    response = get(client, world.acme_token, "/api/0/organizations/acme/monitors/nightly/checkins/latest/attachment/")
    assert response.content == b"line 1\nline 2\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-disposition"] == 'attachment; filename="job output.log"'


def test_environment_route_shows_status_schedule_incident_and_recent_checkins(world: World,
                                                                             client: TestClient) -> None:
    body = get(client, world.acme_token, "/api/0/organizations/acme/monitors/nightly/environments/production/").json()
    assert (body["name"], body["status"], body["nextCheckIn"], body["nextCheckInLatest"]) == \
        ("production", "error", "2026-03-01T17:00:00Z", "2026-03-01T17:05:00Z")
    assert body["activeIncident"]["id"] == world.incident_guid
    assert [c["id"] for c in body["recentCheckIns"]] == [str(c.guid) for c in reversed(world.production)]


def test_processing_errors_are_scoped_to_the_organization_and_monitor(world: World, client: TestClient) -> None:
    for path in ("/api/0/organizations/acme/processing-errors/", "/api/0/projects/acme/backend/processing-errors/",
                 "/api/0/organizations/acme/monitors/nightly/processing-errors/"):
        body = get(client, world.acme_token, path).json()
        assert [(e["monitorId"], e["errors"]) for e in body] == [
            (str(world.nightly.guid), [{"type": 1, "name": "checkin_finished", "reason": "already finished"}])], path
    assert get(client, world.acme_token, "/api/0/organizations/acme/monitors/deploy/processing-errors/").json() == []


def not_found_cases(w: World) -> list[tuple[str, str]]:
    org, proj = "/api/0/organizations", "/api/0/projects"
    return [
        (f"{org}/globex/monitors/", "Organization not found"),
        (f"{org}/{w.globex_id}/monitors/nightly/", "Organization not found"),
        (f"{org}/nope/processing-errors/", "Organization not found"),
        (f"{org}/acme/monitors/{w.foreign.guid}/", "Monitor not found"),
        (f"{org}/acme/monitors/missing/", "Monitor not found"),
        (f"{org}/acme/monitors/{w.foreign.guid}/stats/", "Monitor not found"),
        (f"{proj}/acme/other/monitors/nightly/", "Project not found"),
        (f"{proj}/acme/{w.other_id}/monitors/nightly/checkins/", "Project not found"),
        (f"{proj}/acme/backend/monitors/deploy/", "Monitor not found"),
        (f"{proj}/acme/backend/monitors/{w.frontend_nightly.guid}/checkins/", "Monitor not found"),
        (f"{proj}/acme/frontend/monitors/{w.nightly.guid}/", "Monitor not found"),
        (f"{org}/acme/monitors/nightly/environments/qa/", "Environment not found"),
        (f"{proj}/acme/backend/monitors/nightly/environments/qa/", "Environment not found"),
        (f"{org}/acme/monitors/nightly/checkins/latest/?environment=qa", "Environment not found"),
        (f"{org}/acme/monitors/nightly/checkins/{w.foreign.guid}/", "Check-in not found"),
        (f"{org}/acme/monitors/nightly/checkins/not-a-guid/", "Check-in not found"),
        (f"{org}/acme/monitors/deploy/checkins/latest/", "Check-in not found"),
        (f"{org}/acme/monitors/nightly/checkins/{w.production[0].guid}/attachment/", "Check-in has no attachment"),
        (f"{proj}/acme/backend/monitors/nightly/checkins/latest/attachment/?environment=staging",
         "Check-in has no attachment"),
    ]


def test_missing_and_foreign_objects_are_404s_naming_which(world: World, client: TestClient) -> None:
    for path, detail in not_found_cases(world):
        response = get(client, world.acme_token, path)
        assert (response.status_code, response.json().get("detail")) == (404, detail), (path, response.text)


def test_a_foreign_monitor_answers_exactly_like_a_missing_one(world: World, client: TestClient) -> None:
    foreign = get(client, world.acme_token, f"/api/0/organizations/acme/monitors/{world.foreign.guid}/")
    missing = get(client, world.acme_token, "/api/0/organizations/acme/monitors/00000000-0000-4000-8000-000000000000/")
    assert (foreign.status_code, foreign.content) == (missing.status_code, missing.content)


def test_an_organization_slug_names_its_oldest_monitor_with_that_slug(world: World, client: TestClient) -> None:
    body = get(client, world.acme_token, "/api/0/organizations/acme/monitors/nightly/").json()
    assert body["id"] == str(world.nightly.guid)
    frontend = get(client, world.acme_token, "/api/0/projects/acme/frontend/monitors/nightly/").json()
    assert frontend["id"] == str(world.frontend_nightly.guid)


def test_a_slug_that_looks_like_another_monitors_guid_names_the_monitor_with_that_slug(
        world: World, database_url: str, client: TestClient) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        lookalike = Seeder(conn).monitor(world.acme_id, world.backend_id, str(world.deploy.guid))
    by_key = get(client, world.acme_token, f"/api/0/organizations/acme/monitors/{world.deploy.guid}/").json()
    assert by_key["id"] == str(lookalike.guid)
    assert get(client, world.acme_token, "/api/0/organizations/acme/monitors/deploy/").json()["id"] == str(
        world.deploy.guid)
    under_frontend = get(client, world.acme_token, f"/api/0/projects/acme/frontend/monitors/{world.deploy.guid}/")
    assert under_frontend.json()["id"] == str(world.deploy.guid)


@pytest.mark.parametrize("headers, detail", [
    ({}, "Authentication credentials were not provided."),
    ({"Authorization": "Bearer cpt_not-a-real-token"}, "Invalid token"),
    ({"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, "Authentication credentials were not provided."),
])
def test_requests_without_a_valid_token_are_401(world: World, client: TestClient, headers: dict[str, str],
                                                 detail: str) -> None:
    for path in ("/api/0/organizations/acme/monitors/", "/api/0/projects/acme/backend/monitors/nightly/stats/"):
        response = client.get(path, headers=headers)
        assert (response.status_code, response.json()["detail"]) == (401, detail)
        assert response.headers["www-authenticate"] == "Bearer"


def test_another_organizations_token_sees_none_of_it(world: World, client: TestClient) -> None:
    for path in ["/api/0/organizations/acme/monitors/", "/api/0/organizations/acme/processing-errors/"] + [
            p + r for p in org_prefixes(world)[:1] + project_prefixes(world)[:1] for r in resources(world)]:
        response = get(client, world.globex_token, path)
        assert (response.status_code, response.json()["detail"]) == (404, "Organization not found"), path
    own = get(client, world.globex_token, "/api/0/organizations/globex/monitors/").json()
    assert [m["id"] for m in own] == [str(world.foreign.guid)]


@pytest.mark.parametrize("query, parameter", [
    ("since=yesterday", "since"),
    ("until=-5", "until"),
    ("since=200&until=100", "since"),
    ("statsPeriod=1fortnight", "statsPeriod"),
    ("statsPeriod=1h&since=100", "statsPeriod"),
    ("cursor=abc", "cursor"),
    ("cursor=1:2", "cursor"),
    ("per_page=0", "per_page"),
    ("per_page=1000", "per_page"),
])
def test_bad_checkin_parameters_are_400_naming_the_parameter(world: World, client: TestClient, query: str,
                                                              parameter: str) -> None:
    response = get(client, world.acme_token, f"/api/0/organizations/acme/monitors/nightly/checkins/?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter
    assert parameter in response.json()["detail"]


@pytest.mark.parametrize("path, parameter", [
    ("/api/0/organizations/acme/monitors/?status=broken", "status"),
    ("/api/0/organizations/acme/monitors/?cursor=x", "cursor"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?resolution=fast", "resolution"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?resolution=5400", "resolution"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?resolution=10", "resolution"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?since=0&until=100000000&resolution=3600", "resolution"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?since=0&until=253402300799", "since"),
    ("/api/0/organizations/acme/monitors/nightly/stats/?since=nan", "since"),
    ("/api/0/projects/acme/backend/processing-errors/?per_page=-1", "per_page"),
])
def test_bad_parameters_elsewhere_are_400_naming_the_parameter(world: World, client: TestClient, path: str,
                                                               parameter: str) -> None:
    response = get(client, world.acme_token, path)
    assert (response.status_code, response.json()["parameter"]) == (400, parameter), response.text


def test_health_and_metrics_need_no_token(client: TestClient, world: World) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    get(client, world.acme_token, "/api/0/organizations/acme/monitors/")
    metrics = client.get("/metrics").text
    route = "/api/0/organizations/{organization_id_or_slug}/monitors/"
    assert f'cronpipe_api_requests_total{{route="{route}",status="200"}}' in metrics
