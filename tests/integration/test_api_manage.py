"""Monitor management routes against real PostgreSQL: create, update (merge and the
recomputations), mute, disable, delete (and the background purge), bulk edit, list filters,
write scopes, and the same operations through `cronpipe monitor`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deletions import purge_all
from cronpipe.cli import main
from tests.integration.api_seed import Seeder

pytestmark = pytest.mark.postgres

ORG = "/api/0/organizations/acme"
NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
HOURLY = {"schedule_type": "crontab", "schedule": "0 * * * *", "checkin_margin": 5, "max_runtime": 30}


class Api:
    """The app with a write and a read token of acme (and a token of globex), "now" fixed."""

    def __init__(self, client: TestClient, write: str, read: str, foreign: str) -> None:
        self.client, self.write, self.read, self.foreign = client, write, read, foreign

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             params: Any = None) -> Any:
        return self.client.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token or self.write}"})

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.call("POST", f"{ORG}/monitors/", {"project": "backend", "config": HOURLY, **body})
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        s.org("acme")
        s.org("globex")
        s.project("acme", "backend", 11)
        s.project("acme", "frontend", 12)
        s.project("globex", "other", 21)
        from cronpipe.admin import create_token

        write, read, foreign = create_token(conn, "acme", "write"), s.token("acme"), create_token(conn, "globex",
                                                                                                    "write")
    app = create_app(database_url, pool_size=2, purge_in_background=False)
    app.state.now = lambda: NOW
    with TestClient(app) as client:
        yield Api(client, write, read, foreign)


def db_rows(database_url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def add_environment(database_url: str, monitor_guid: str, name: str, last: datetime,
                    in_progress_at: datetime | None = None) -> int:
    """An environment as the processor leaves it after a check-in at ``last`` (and an
    IN_PROGRESS check-in started at ``in_progress_at``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        monitor_id = conn.execute("SELECT id FROM monitors WHERE guid = %s", (monitor_guid,)).fetchone()[0]  # type: ignore[index]
        env_id = conn.execute(
            "INSERT INTO monitor_environments (monitor_id, environment, status, last_checkin, next_checkin,"
            " next_checkin_latest) VALUES (%s, %s, 4, %s, %s, %s) RETURNING id",
            (monitor_id, name, last, last + timedelta(hours=1), last + timedelta(hours=1, minutes=5)),
        ).fetchone()[0]  # type: ignore[index]
        if in_progress_at is not None:
            conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(%s::timestamptz AT TIME ZONE 'UTC')::date])",
                         (in_progress_at,))
            conn.execute(
                "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
                " date_updated, timeout_at) VALUES (gen_random_uuid(), 11, %s, %s, 3, %s, %s, %s)",
                (monitor_id, env_id, in_progress_at, in_progress_at, in_progress_at + timedelta(minutes=30)))
        return int(env_id)


# --- create -------------------------------------------------------------------------------


def test_create_answers_201_with_the_monitor_and_slugifies_the_name(api: Api) -> None:
    body = api.create(name="Nightly Backup!", isMuted=True)
    assert (body["slug"], body["name"], body["status"], body["isMuted"], body["isUpserting"]) == (
        "nightly-backup", "Nightly Backup!", "active", True, False)
    assert body["project"] == {"id": "11", "slug": "backend"}
    assert body["config"]["schedule"] == "0 * * * *" and body["config"]["checkin_margin"] == 5
    assert api.call("GET", f"{ORG}/monitors/nightly-backup/").json() == body


def test_create_accepts_snake_case_and_the_check_in_config_shapes(api: Api) -> None:
    body = api.create(name="every two hours", slug="two-hours", status="disabled", is_muted=False,
                      config={"schedule": {"type": "interval", "value": 2, "unit": "hour"}, "timezone": "Europe/Paris"})
    assert (body["slug"], body["status"]) == ("two-hours", "disabled")
    assert body["config"]["schedule_type"] == "interval" and body["config"]["schedule"] == [2, "hour"]


@pytest.mark.parametrize("body, parameter, detail", [
    ({"config": HOURLY, "project": "backend"}, "name", "field required"),
    ({"name": "x", "project": "backend"}, "config", "field required"),
    ({"name": "x", "config": HOURLY}, "project", "field required"),
    ({"name": "x", "config": HOURLY, "project": "other"}, "project", "no project"),
    ({"name": "x" * 129, "config": HOURLY, "project": "backend"}, "name", "at most 128"),
    ({"name": "x", "config": {"schedule_type": "crontab", "schedule": "0 0 * * * *"}, "project": "backend"},
     "config", "schedule"),
    ({"name": "x", "config": {**HOURLY, "timezone": "Mars/Olympus"}, "project": "backend"}, "config", "timezone"),
    ({"name": "x", "config": HOURLY, "project": "backend", "status": "paused"}, "status", "'active' or 'disabled'"),
    ({"name": "bad\u0000name", "config": HOURLY, "project": "backend"}, "name", "NUL"),
    ({"name": "!!!", "config": HOURLY, "project": "backend"}, "name", "letter or digit"),
])
def test_create_refuses_a_bad_body_with_400_naming_the_field(api: Api, body: dict[str, Any], parameter: str,
                                                              detail: str) -> None:
    response = api.call("POST", f"{ORG}/monitors/", body)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter and detail in response.json()["detail"]


def test_a_slug_in_use_in_the_project_is_a_400_but_free_in_another_project(api: Api) -> None:
    api.create(name="job")
    taken = api.call("POST", f"{ORG}/monitors/", {"name": "job", "project": "backend", "config": HOURLY})
    assert (taken.status_code, taken.json()) == (400, {"detail": 'The slug "job" is already in use.',
                                                       "parameter": "slug"})
    assert api.call("POST", f"{ORG}/monitors/", {"name": "job", "project": "frontend", "config": HOURLY}
                    ).status_code == 201


def test_the_project_route_creates_in_its_own_project(api: Api) -> None:
    response = api.call("POST", "/api/0/projects/acme/frontend/monitors/", {"name": "deploy", "config": HOURLY})
    assert response.status_code == 201 and response.json()["project"]["slug"] == "frontend"
    clash = api.call("POST", "/api/0/projects/acme/frontend/monitors/",
                     {"name": "deploy2", "config": HOURLY, "project": "backend"})
    assert (clash.status_code, clash.json()["parameter"]) == (400, "project")


# --- scopes and 404s ------------------------------------------------------------------------


def test_a_read_token_gets_403_on_every_write_route_and_changes_nothing(api: Api) -> None:
    guid = api.create(name="job")["id"]
    for method, path, body in [
        ("POST", f"{ORG}/monitors/", {"name": "x", "project": "backend", "config": HOURLY}),
        ("PUT", f"{ORG}/monitors/", {"ids": [guid], "status": "disabled"}),
        ("PUT", f"{ORG}/monitors/job/", {"name": "renamed"}),
        ("DELETE", f"{ORG}/monitors/job/", None),
        ("PUT", f"{ORG}/monitors/job/environments/production/", {"isMuted": True}),
        ("DELETE", f"{ORG}/monitors/job/environments/production/", None),
        ("PUT", "/api/0/projects/acme/backend/monitors/job/", {"name": "renamed"}),
        ("POST", "/api/0/projects/acme/backend/monitors/", {"name": "x", "config": HOURLY}),
    ]:
        response = api.call(method, path, body, token=api.read)
        assert response.status_code == 403, (method, path)
        assert "can only read" in response.json()["detail"]
    assert api.call("GET", f"{ORG}/monitors/job/", token=api.read).json()["name"] == "job"


def test_foreign_and_missing_monitors_are_404_for_writes(api: Api) -> None:
    api.create(name="job")
    for method, body in (("PUT", {"name": "mine now"}), ("DELETE", None)):
        assert api.call(method, "/api/0/organizations/globex/monitors/job/", body).status_code == 404
        foreign = api.call(method, f"{ORG}/monitors/job/", body, token=api.foreign)
        assert (foreign.status_code, foreign.json()["detail"]) == (404, "Organization not found")
        missing = api.call(method, f"{ORG}/monitors/nope/", body)
        assert (missing.status_code, missing.json()["detail"]) == (404, "Monitor not found")
    assert api.call("PUT", f"{ORG}/monitors/job/environments/nowhere/", {"isMuted": True}).status_code == 404
    assert api.call("DELETE", f"{ORG}/monitors/job/", params={"environment": "nowhere"}).status_code == 404


# --- update ---------------------------------------------------------------------------------


def test_a_config_update_is_merged_into_the_stored_one_and_validated_whole(api: Api) -> None:
    api.create(name="job")
    body = api.call("PUT", f"{ORG}/monitors/job/", {"config": {"checkin_margin": 10}}).json()
    assert body["config"] == {**HOURLY, "checkin_margin": 10, "timezone": "UTC",
                              "failure_issue_threshold": None, "recovery_threshold": None}
    bad = api.call("PUT", f"{ORG}/monitors/job/", {"config": {"schedule_type": "interval"}})
    assert (bad.status_code, bad.json()["parameter"]) == (400, "config")
    assert api.call("GET", f"{ORG}/monitors/job/").json()["config"]["checkin_margin"] == 10


def test_a_schedule_change_moves_next_check_in_of_every_environment(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    last = NOW - timedelta(minutes=5)  # 11:55:30; hourly it is expected at 13:00
    for name in ("production", "staging"):
        add_environment(database_url, guid, name, last)
    body = api.call("PUT", f"{ORG}/monitors/job/", {"config": {"schedule": "*/15 * * * *"}}).json()
    for env in body["environments"]:
        assert (env["nextCheckIn"], env["nextCheckInLatest"]) == ("2026-06-01T12:00:00Z", "2026-06-01T12:05:00Z")


def test_a_new_schedule_never_reaches_back_past_now(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    add_environment(database_url, guid, "production", NOW - timedelta(hours=3))
    env = api.call("PUT", f"{ORG}/monitors/job/", {"config": {"schedule": "*/15 * * * *"}}).json()["environments"][0]
    assert env["nextCheckIn"] == "2026-06-01T12:15:00Z"


def test_a_margin_change_moves_next_check_in_latest_only(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    add_environment(database_url, guid, "production", datetime(2026, 6, 1, 11, 0, tzinfo=UTC))
    env = api.call("PUT", f"{ORG}/monitors/job/", {"config": {"checkin_margin": 20}}).json()["environments"][0]
    assert (env["nextCheckIn"], env["nextCheckInLatest"]) == ("2026-06-01T12:00:00Z", "2026-06-01T12:20:00Z")


def test_a_max_runtime_change_moves_the_timeout_of_in_progress_check_ins(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    started = datetime(2026, 6, 1, 11, 58, 40, tzinfo=UTC)
    add_environment(database_url, guid, "production", started, in_progress_at=started)
    api.call("PUT", f"{ORG}/monitors/job/", {"config": {"max_runtime": 90}})
    assert db_rows(database_url, "SELECT timeout_at FROM checkins")[0][0] == datetime(2026, 6, 1, 13, 28, tzinfo=UTC)


def test_moving_a_monitor_to_another_project_is_a_400(api: Api) -> None:
    api.create(name="job")
    response = api.call("PUT", f"{ORG}/monitors/job/", {"project": "frontend"})
    assert (response.status_code, response.json()["parameter"]) == (400, "project")
    assert api.call("PUT", f"{ORG}/monitors/job/", {"project": "backend", "name": "Job"}).json()["name"] == "Job"


def test_renaming_to_a_slug_in_use_is_a_400_and_changes_nothing(api: Api) -> None:
    api.create(name="one")
    api.create(name="two")
    response = api.call("PUT", f"{ORG}/monitors/two/", {"slug": "one", "name": "renamed"})
    assert response.json() == {"detail": 'The slug "one" is already in use.', "parameter": "slug"}
    assert api.call("GET", f"{ORG}/monitors/two/").json()["name"] == "two"


def test_mute_applies_to_every_environment_and_one_environment_can_be_unmuted(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    for name in ("production", "staging"):
        add_environment(database_url, guid, name, NOW)
    body = api.call("PUT", f"{ORG}/monitors/job/", {"isMuted": True}).json()
    assert body["isMuted"] is True and all(e["isMuted"] for e in body["environments"])
    body = api.call("PUT", f"{ORG}/monitors/job/environments/staging/", {"isMuted": False}).json()
    assert body["isMuted"] is False
    assert {e["name"]: e["isMuted"] for e in body["environments"]} == {"production": True, "staging": False}
    assert db_rows(database_url, "SELECT is_muted FROM monitors") == [(False,)]


def test_disable_and_enable_restarts_from_the_next_slot_after_now(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    add_environment(database_url, guid, "production", NOW - timedelta(days=2))
    assert api.call("PUT", f"{ORG}/monitors/job/", {"status": "disabled"}).json()["status"] == "disabled"
    body = api.call("PUT", f"{ORG}/monitors/job/", {"status": "active"}).json()
    env = body["environments"][0]
    assert (body["status"], env["nextCheckIn"], env["nextCheckInLatest"]) == (
        "active", "2026-06-01T13:00:00Z", "2026-06-01T13:05:00Z")


# --- bulk and list --------------------------------------------------------------------------


def test_bulk_edit_changes_every_listed_monitor_and_refuses_foreign_ids(api: Api) -> None:
    ids = [api.create(name=n)["id"] for n in ("a", "b")]
    result = api.call("PUT", f"{ORG}/monitors/", {"ids": ids, "status": "disabled", "isMuted": True}).json()
    assert [(m["id"], m["status"], m["isMuted"]) for m in result["updated"]] == [
        (ids[0], "disabled", True), (ids[1], "disabled", True)]
    assert result["errored"] == []
    other = api.call("POST", "/api/0/organizations/globex/monitors/",
                     {"name": "theirs", "project": "other", "config": HOURLY}, token=api.foreign).json()["id"]
    for bad in ([ids[0], other], [ids[0], "not-a-guid"]):
        response = api.call("PUT", f"{ORG}/monitors/", {"ids": bad, "status": "active"})
        assert response.json() == {"detail": "Not all ids are valid for this organization.", "parameter": "ids"}
    assert api.call("GET", f"{ORG}/monitors/a/").json()["status"] == "disabled"
    in_frontend = api.call("POST", "/api/0/projects/acme/frontend/monitors/", {"name": "c", "config": HOURLY}).json()
    twin = api.call("PUT", "/api/0/projects/acme/frontend/monitors/", {"ids": [in_frontend["id"]], "isMuted": True})
    assert twin.json()["updated"][0]["isMuted"] is True
    outside = api.call("PUT", "/api/0/projects/acme/frontend/monitors/", {"ids": ids, "status": "active"})
    assert outside.json()["parameter"] == "ids"


def test_the_list_filters_by_query_and_status_and_sorts_by_muted(api: Api) -> None:
    api.create(name="backup db")
    api.create(name="backup files", status="disabled")
    api.create(name="report", isMuted=True)
    def names(**params: str) -> list[str]:
        return [m["name"] for m in api.call("GET", f"{ORG}/monitors/", params=params).json()]

    assert names(query="backup") == ["backup db", "backup files"]
    assert names(query="backup status:disabled") == ["backup files"]
    assert names(query="status:disabled") == ["backup files"]
    assert names(sort="muted") == ["backup db", "backup files", "report"]
    assert names(sort="status")[-1] == "backup files"
    assert api.call("GET", f"{ORG}/monitors/", params={"sort": "age"}).json()["parameter"] == "sort"
    assert api.call("GET", f"{ORG}/monitors/", params={"query": "status:sleepy"}).json()["parameter"] == "query"


# --- delete ---------------------------------------------------------------------------------


def seed_history(database_url: str, guid: str, name: str, checkins: int) -> int:
    env_id = add_environment(database_url, guid, name, NOW)
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY(SELECT d::date FROM generate_series("
                     "((%s::timestamptz - %s * interval '1 minute') AT TIME ZONE 'UTC')::date,"
                     " (%s::timestamptz AT TIME ZONE 'UTC')::date, interval '1 day') AS d))", (NOW, checkins, NOW))
        conn.execute(
            "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
            " date_updated) SELECT gen_random_uuid(), 11, me.monitor_id, me.id, 1,"
            " %s - g * interval '1 minute', %s FROM monitor_environments me, generate_series(1, %s) g"
            " WHERE me.id = %s", (NOW, NOW, checkins, env_id))
        conn.execute("INSERT INTO checkin_attachments (checkin_guid, project_id, monitor_id, filename, content_type,"
                     " size, data, date_added) SELECT guid, 11, monitor_id, 'out.log', 'text/plain', 1, 'x', now()"
                     " FROM checkins WHERE monitor_environment_id = %s LIMIT 3", (env_id,))
        conn.execute("INSERT INTO incidents (monitor_id, monitor_environment_id, starting_timestamp)"
                     " SELECT monitor_id, id, %s FROM monitor_environments WHERE id = %s", (NOW, env_id))
        s.build_rollups()
    return env_id


TABLES = {"checkins": "monitor_environment_id", "checkin_rollups": "monitor_environment_id",
          "incidents": "monitor_environment_id", "monitor_environments": "id"}


def rows_of(database_url: str, env_id: int) -> dict[str, int]:
    return {t: db_rows(database_url, f"SELECT count(*) FROM {t} WHERE {c} = %s", (env_id,))[0][0]
            for t, c in TABLES.items()}


def purge(database_url: str, batch: int) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await purge_all(conn, batch)
    return asyncio.run(run())


def test_delete_frees_the_slug_at_once_and_the_purge_removes_every_row(api: Api, database_url: str) -> None:
    old = api.create(name="job")["id"]
    env_id = seed_history(database_url, old, "production", 1200)
    assert api.call("DELETE", f"{ORG}/monitors/job/").status_code == 202
    assert api.call("GET", f"{ORG}/monitors/job/").status_code == 404
    assert api.call("GET", f"{ORG}/monitors/{old}/").status_code == 404
    new = api.create(name="job")
    assert new["id"] != old and new["environments"] == []
    assert rows_of(database_url, env_id)["checkins"] == 1200
    assert purge(database_url, batch=500) == 3  # 500, 500, then 200 and everything else
    assert rows_of(database_url, env_id) == dict.fromkeys(TABLES, 0)
    monitor_rows = db_rows(database_url, "SELECT guid::text FROM monitors")
    assert monitor_rows == [(new["id"],)]
    assert db_rows(database_url, "SELECT count(*) FROM checkin_attachments") == [(0,)]
    assert db_rows(database_url, "SELECT count(*) FROM checkin_guids") == [(0,)]
    assert db_rows(database_url, "SELECT count(*) FROM monitor_deletions") == [(0,)]


def test_deleting_environments_leaves_the_monitor_and_its_other_environments(api: Api, database_url: str) -> None:
    guid = api.create(name="job")["id"]
    envs = {name: seed_history(database_url, guid, name, 10) for name in ("production", "staging", "dev")}
    response = api.call("DELETE", f"{ORG}/monitors/job/", params={"environment": ["staging", "dev"]})
    assert response.status_code == 202
    body = api.call("GET", f"{ORG}/monitors/job/").json()
    assert [e["name"] for e in body["environments"]] == ["production"]
    assert {c["environment"] for c in api.call("GET", f"{ORG}/monitors/job/checkins/").json()} == {"production"}
    assert api.call("DELETE", f"{ORG}/monitors/job/environments/production/").status_code == 202
    purge(database_url, batch=100)
    assert all(rows_of(database_url, e) == dict.fromkeys(TABLES, 0) for e in envs.values())
    assert api.call("GET", f"{ORG}/monitors/job/").json()["environments"] == []


# --- the command line -----------------------------------------------------------------------


def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *argv: str) -> tuple[int, Any]:
    monkeypatch.setenv("CRONPIPE_DATABASE_URL", database_url)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else out.err


def test_cronpipe_monitor_runs_the_same_operations(api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, Any]:
        return cli(database_url, monkeypatch, capsys, "monitor", *argv)

    code, created = run("create", "--org", "acme", "--project", "backend", "--name", "Nightly",
                        "--config", json.dumps(HOURLY))
    assert code == 0 and created["slug"] == "nightly" and created["isUpserting"] is False
    assert run("mute", "--org", "acme", "nightly")[1]["isMuted"] is True
    assert run("disable", "--org", "acme", "nightly")[1]["status"] == "disabled"
    assert run("update", "--org", "acme", "nightly", "--config", '{"checkin_margin": 9}')[1]["config"][
        "checkin_margin"] == 9
    assert [m["slug"] for m in run("list", "--org", "acme")[1]["monitors"]] == ["nightly"]
    assert run("show", "--org", "acme", "nightly")[1] == api.call("GET", f"{ORG}/monitors/nightly/").json()
    code, err = run("create", "--org", "acme", "--project", "backend", "--name", "Nightly", "--config",
                    json.dumps(HOURLY))
    assert code == 1 and 'The slug "nightly" is already in use.' in err
    assert run("delete", "--org", "acme", "nightly", "--wait")[1] == {"deleted": created["id"], "purged": True}
    assert db_rows(database_url, "SELECT count(*) FROM monitors") == [(0,)]
    code, err = run("show", "--org", "acme", "nightly")
    assert code == 1 and "Monitor not found" in err



def test_a_write_that_cannot_lock_the_monitor_in_time_is_a_503_and_changes_nothing(api: Api,
                                                                                   database_url: str) -> None:
    api.create(name="job")
    with psycopg.connect(database_url) as holder:  # a pipeline transaction that holds the monitor row
        holder.execute("SELECT 1 FROM monitors WHERE slug = 'job' FOR UPDATE")
        busy = api.call("PUT", f"{ORG}/monitors/job/", {"name": "renamed"})
        assert (busy.status_code, busy.headers["retry-after"]) == (503, "1")
    assert api.call("GET", f"{ORG}/monitors/job/").json()["name"] == "job"
    assert api.call("PUT", f"{ORG}/monitors/job/", {"name": "renamed"}).json()["name"] == "renamed"
