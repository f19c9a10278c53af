"""Per-monitor alert routing against real PostgreSQL: the monitor body's ``alertChannels``
(API and `cronpipe monitor`), the tenant rule (a monitor never routes to another
organization's channel, in the API and in the schema), and the deliveries the notifier
creates for a consumed event (notifier.store.record_events)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cronpipe.admin import create_org, create_project, create_token
from cronpipe.cli import main
from notifier import store
from schemas.examples import load_example
from schemas.incident_events import IncidentEvent

pytestmark = pytest.mark.postgres

ORG = "/api/0/organizations/acme"
CONFIG = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


@dataclass
class Tenants:
    """acme (a write token, channels ``a`` and ``b``) and globex (channel ``foreign``)."""

    url: str
    client: TestClient
    token: str
    channels: dict[str, store.Channel]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {self.token}"})

    def create(self, name: str, **body: Any) -> dict[str, Any]:
        response = self.call("POST", f"{ORG}/monitors/", {"project": "backend", "name": name, "config": CONFIG,
                                                         **body})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def guid(self, name: str) -> str:
        return str(self.channels[name].guid)

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def tenants(database_url: str) -> Iterator[Tenants]:
    channels: dict[str, store.Channel] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for org in ("acme", "globex"):
            create_org(conn, org)
        create_project(conn, "acme", "backend", 1)
        create_project(conn, "globex", "other", 2)
        token = create_token(conn, "acme", "write")
        for name, org in (("a", "acme"), ("b", "acme"), ("foreign", "globex")):
            channels[name] = store.create_channel(conn, org, "webhook", f"https://{name}.example.com/hook")[0]
    with TestClient(create_app(database_url, pool_size=2, purge_in_background=False)) as client:
        yield Tenants(database_url, client, token, channels)


# --- the monitor body ------------------------------------------------------------------------


def test_a_monitor_routes_to_every_channel_until_its_body_names_some(tenants: Tenants) -> None:
    created = tenants.create("nightly")
    assert created["alertChannels"] == "all"
    named = tenants.call("PUT", f"{ORG}/monitors/nightly/", {"alertChannels": [tenants.guid("b")]})
    assert named.status_code == 200 and named.json()["alertChannels"] == [tenants.guid("b")]
    assert tenants.call("GET", f"{ORG}/monitors/nightly/").json()["alertChannels"] == [tenants.guid("b")]
    assert [m["alertChannels"] for m in tenants.call("GET", f"{ORG}/monitors/").json()] == [[tenants.guid("b")]]
    renamed = tenants.call("PUT", f"{ORG}/monitors/nightly/", {"name": "Nightly"}).json()
    assert renamed["alertChannels"] == [tenants.guid("b")]  # absent: unchanged
    assert tenants.call("PUT", f"{ORG}/monitors/nightly/", {"alertChannels": "all"}).json()["alertChannels"] == "all"
    assert tenants.call("PUT", f"{ORG}/monitors/nightly/", {"alertChannels": []}).json()["alertChannels"] == []


def test_a_monitor_created_with_channels_lists_them_once_in_channel_order(tenants: Tenants) -> None:
    wanted = [tenants.guid("b"), tenants.guid("a"), tenants.guid("b")]
    assert tenants.create("nightly", alertChannels=wanted)["alertChannels"] == [tenants.guid("a"), tenants.guid("b")]


@pytest.mark.parametrize("channel", ["foreign", "missing", "not-a-guid"])
def test_a_channel_of_another_organization_is_refused_like_a_missing_one(tenants: Tenants, channel: str) -> None:
    tenants.create("nightly", alertChannels=[tenants.guid("a")])
    text = {"foreign": tenants.guid("foreign"), "missing": str(uuid.uuid4()), "not-a-guid": "abc"}[channel]
    refused = tenants.call("PUT", f"{ORG}/monitors/nightly/", {"alertChannels": [tenants.guid("b"), text]})
    assert refused.status_code == 400
    assert refused.json() == {"detail": f"Invalid parameter 'alertChannels': no channel {text!r} in this organization",
                              "parameter": "alertChannels"}
    assert tenants.call("GET", f"{ORG}/monitors/nightly/").json()["alertChannels"] == [tenants.guid("a")]
    created = tenants.call("POST", f"{ORG}/monitors/", {"project": "backend", "name": "other", "config": CONFIG,
                                                         "alertChannels": [text]})
    assert created.status_code == 400 and tenants.rows("SELECT count(*) FROM monitors") == [(1,)]


def test_the_schema_refuses_a_route_to_another_organizations_channel(tenants: Tenants) -> None:
    monitor_id = tenants.create("nightly")["id"]
    with psycopg.connect(tenants.url) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO monitor_alert_channels (monitor_id, channel_id, organization_id)"
                     " SELECT m.id, %s, m.organization_id FROM monitors m WHERE m.guid = %s",
                     (tenants.channels["foreign"].id, monitor_id))
    with psycopg.connect(tenants.url) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO monitor_alert_channels (monitor_id, channel_id, organization_id)"
                     " SELECT m.id, %s, %s FROM monitors m WHERE m.guid = %s",
                     (tenants.channels["foreign"].id, tenants.channels["foreign"].organization_id, monitor_id))


def test_deleting_the_only_named_channel_leaves_the_monitor_routed_to_none(tenants: Tenants) -> None:
    tenants.create("nightly", alertChannels=[tenants.guid("a")])
    assert tenants.call("DELETE", f"{ORG}/alert-channels/{tenants.guid('a')}/").status_code == 204
    assert tenants.call("GET", f"{ORG}/monitors/nightly/").json()["alertChannels"] == []


def test_cronpipe_monitor_sets_the_routing_with_channel_and_all_channels(
        tenants: Tenants, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRONPIPE_DATABASE_URL", tenants.url)

    def run(*argv: str) -> tuple[int, Any]:
        code = main(["monitor", *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out) if out.out.strip() else out.err

    code, created = run("create", "--org", "acme", "--project", "backend", "--name", "nightly",
                        "--config", json.dumps(CONFIG), "--channel", tenants.guid("a"))
    assert code == 0 and created["alertChannels"] == [tenants.guid("a")]
    code, updated = run("update", "--org", "acme", "nightly", "--channel", tenants.guid("a"),
                        "--channel", tenants.guid("b"))
    assert code == 0 and updated["alertChannels"] == [tenants.guid("a"), tenants.guid("b")]
    assert run("update", "--org", "acme", "nightly", "--all-channels")[1]["alertChannels"] == "all"
    code, err = run("update", "--org", "acme", "nightly", "--channel", tenants.guid("foreign"))
    assert code == 1 and f"no channel {tenants.guid('foreign')!r} in this organization" in err


# --- what the notifier delivers --------------------------------------------------------------


def event(organization_id: int, monitor: str) -> IncidentEvent:
    body = load_example("incident_opened")
    body.update({"event_id": str(uuid.uuid4()), "organization": {"id": organization_id, "slug": "acme"},
                 "monitor": {**body["monitor"], "id": monitor}})
    return IncidentEvent.model_validate(body)


def test_a_consumed_event_gets_deliveries_only_for_the_channels_its_monitor_routes_to(tenants: Tenants) -> None:
    routed = tenants.create("routed", alertChannels=[tenants.guid("b")])["id"]
    everywhere = tenants.create("everywhere")["id"]
    nowhere = tenants.create("nowhere", alertChannels=[])["id"]
    acme = tenants.channels["a"].organization_id
    with psycopg.connect(tenants.url, autocommit=True) as conn:
        globex_monitor = conn.execute(
            "INSERT INTO monitors (organization_id, project_id, slug, name, config, alert_channels_selected)"
            " VALUES (%s, 2, 'theirs', 'theirs', '{}', true) RETURNING guid",
            (tenants.channels["foreign"].organization_id,)).fetchone()[0]  # type: ignore[index]
        events = {"routed": event(acme, routed), "everywhere": event(acme, everywhere),
                  "nowhere": event(acme, nowhere), "unknown monitor": event(acme, str(uuid.uuid4())),
                  "another tenant's monitor": event(acme, str(globex_monitor))}
        store.record_events(conn, list(events.values()), group="g", topic="t", next_offsets={0: 5})
    delivered = tenants.rows("SELECT d.event_id, c.guid FROM alert_deliveries d"
                             " JOIN alert_channels c ON c.id = d.channel_id")
    by_event: dict[str, list[str]] = {name: [] for name in events}
    names = {e.event_id: name for name, e in events.items()}
    for event_id, channel in delivered:
        by_event[names[event_id]].append(str(channel))
    everyone = sorted([tenants.guid("a"), tenants.guid("b")])
    assert {name: sorted(channels) for name, channels in by_event.items()} == {
        "routed": [tenants.guid("b")], "everywhere": everyone, "nowhere": [], "unknown monitor": everyone,
        "another tenant's monitor": everyone}
