"""consumers.incidents.store against a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg

from consumers.clock.store import update_environments
from consumers.incidents.rules import INITIAL_STATE, IncidentState
from consumers.incidents.store import load_states, open_incidents, resolve_incidents
from schemas.enums import MonitorStatus
from tests.integration.clock_helpers import crontab_config, seed_monitor, seed_project

T = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _env(conn: psycopg.Connection, slug: str = "job") -> tuple[int, int]:
    return seed_monitor(conn, 1, slug, crontab_config("* * * * *"))


def test_opening_twice_keeps_one_open_incident(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
        monitor_id, env_id = _env(conn)
        assert open_incidents(conn, [(monitor_id, env_id, 7, T)]) == 1
        assert open_incidents(conn, [(monitor_id, env_id, 8, T)]) == 0
        assert open_incidents(conn, [(monitor_id, env_id, 9, T)]) == 0
        rows = conn.execute("SELECT starting_checkin_id FROM incidents").fetchall()
    assert rows == [(7,)]


def test_resolving_closes_the_open_incident_once_and_a_new_one_may_open(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
        monitor_id, env_id = _env(conn)
        open_incidents(conn, [(monitor_id, env_id, 7, T)])
        assert resolve_incidents(conn, [(env_id, 10, T)]) == 1
        assert resolve_incidents(conn, [(env_id, 11, T)]) == 0
        assert open_incidents(conn, [(monitor_id, env_id, 12, T)]) == 1
        rows = conn.execute("SELECT starting_checkin_id, resolving_checkin_id FROM incidents ORDER BY id").fetchall()
    assert rows == [(7, 10), (12, None)]


def test_states_round_trip_with_the_open_flag_and_status(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_project(conn)
        m1, e1 = _env(conn, "a")
        _, e2 = _env(conn, "b")
        assert load_states(conn, [e1, e2]) == {e1: INITIAL_STATE, e2: INITIAL_STATE}
        failing = IncidentState(3, 41, T, 0, True)
        update_environments(conn, {}, {e1: (failing, MonitorStatus.ERROR), e2: (INITIAL_STATE, MonitorStatus.OK)})
        open_incidents(conn, [(m1, e1, 41, T)])
        with conn.transaction():
            states = load_states(conn, [e1, e2, 999], for_update=True)
        statuses: dict[int, int] = dict(conn.execute("SELECT id, status FROM monitor_environments").fetchall())
    assert states == {e1: failing, e2: INITIAL_STATE}
    assert statuses == {e1: MonitorStatus.ERROR, e2: MonitorStatus.OK}
