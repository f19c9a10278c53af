"""The volume guard made visible: the read API's system incidents, /metrics, ``cronpipe clock status``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient

from cronpipe.clock_status import clock_status
from tests.integration.api_world import World, seed_world

pytestmark = pytest.mark.postgres

UTC = timezone.utc
T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
#: Ticks T..T+9: normal, abnormal, incident x3 (T+1 back-dated), recovering x2, normal, incident, incident.
DECISIONS = ["normal", "incident", "incident", "incident", "incident", "recovering", "recovering", "normal",
             "incident", "incident"]
PCTS = [0.0, -15.0, -50.0, -60.0, -40.0, 0.0, 0.0, 0.0, -35.0, -45.0]


@pytest.fixture
def world(database_url: str) -> World:
    with psycopg.connect(database_url, autocommit=True) as conn:
        world = seed_world(conn)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO clock_volume_decisions (tick, metric, pct_deviation, decision)"
                            " VALUES (%s, 'normal', %s, %s)",
                            [(T + i * M, p, d) for i, (d, p) in enumerate(zip(DECISIONS, PCTS, strict=True))])
        return world


def test_system_incidents_list_each_run_newest_first_and_the_current_decision(
        world: World, client: TestClient) -> None:
    response = client.get("/api/0/system-incidents/", headers={"Authorization": f"Bearer {world.acme_token}"})
    assert response.status_code == 200
    body = response.json()
    assert (body["decision"], body["pct_deviation"]) == ("incident", -45.0)
    assert [(i["start"], i["end"], i["lowest_pct_deviation"]) for i in body["incidents"]] == [
        ((T + 8 * M).isoformat().replace("+00:00", "Z"), None, -45.0),
        ((T + M).isoformat().replace("+00:00", "Z"), (T + 7 * M).isoformat().replace("+00:00", "Z"), -60.0),
    ]


def test_system_incidents_need_a_valid_token(world: World, client: TestClient) -> None:
    assert client.get("/api/0/system-incidents/").status_code == 401
    assert client.get("/api/0/system-incidents/", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_metrics_expose_the_current_decision_and_deviation(world: World, client: TestClient) -> None:
    text = client.get("/metrics").text
    assert 'cronpipe_volume_decision{decision="incident"} 1.0' in text
    assert 'cronpipe_volume_decision{decision="normal"} 0.0' in text
    assert "cronpipe_volume_pct_deviation -45.0" in text


def test_clock_status_prints_the_decision_and_the_last_hour_of_ticks(world: World, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        status = clock_status(conn)
    assert (status["decision"], status["pct_deviation"]) == ("incident", -45.0)
    assert [t["decision"] for t in status["ticks"]] == DECISIONS


def test_clock_status_without_any_tick_is_normal(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert clock_status(conn) == {"decision": "normal", "pct_deviation": None, "tick": None, "ticks": []}
