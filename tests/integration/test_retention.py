"""Retention against real PostgreSQL: 200 days of check-ins with mixed retention (30/90),
one maintenance pass, and exactly the expired rows are gone (consumers.maintenance)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from consumers.maintenance.plan import RetentionConfig, expired
from consumers.maintenance.run import maintain
from tests.integration.api_seed import Seeder
from tests.integration.retention_seed import seed_history

UTC = timezone.utc
DAYS = 200
NOW = datetime.now(UTC)
TODAY = NOW.date()
FIRST = TODAY - timedelta(days=DAYS - 1)
#: Small batches, so every batched delete takes several steps.
CONFIG = RetentionConfig(default_days=90, hourly_rollup_days=90, daily_rollup_days=400, ahead_days=7,
                         batch_size=7)


@dataclass(frozen=True)
class World:
    url: str
    token: str
    monitor_id: int
    #: guid -> (day, retention_days)
    rows: dict[uuid.UUID, tuple[date, int]]
    attachments: set[uuid.UUID]


def _rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """One monitor, two environments, 4 check-ins a day for 200 days (two kept 30 days,
    two 90 days, at 00:30 and 23:30 UTC), an attachment on the first of each day, rollups
    derived from them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed = Seeder(conn)
        org_id = seed.org("acme")
        project_id = seed.project("acme", "backend", 1)
        token = seed.token("acme")
        monitor = seed.monitor(org_id, project_id, "nightly")
        envs = [seed.environment(monitor, "production"), seed.environment(monitor, "staging")]
        rows = seed_history(conn, project_id=project_id, monitor_id=monitor.id, env_ids=envs, first=FIRST,
                            days=DAYS, per_day=((30, 30), (30, 90), (23 * 60 + 30, 30), (23 * 60 + 30, 90)))
        # An attachment on each day's first check-in.
        attachments = {g for i, g in enumerate(rows) if i % 4 == 0}
        conn.execute("INSERT INTO checkin_attachments (checkin_guid, project_id, monitor_id, filename,"
                     " content_type, size, data, date_added)"
                     " SELECT c.guid, c.project_id, c.monitor_id, 'out.log', 'text/plain', 2, 'ok', c.date_added"
                     " FROM checkins c WHERE c.guid = ANY(%s)", (list(attachments),))
        seed.build_rollups()
    yield World(database_url, token, monitor.id, rows, attachments)


def _kept(world: World) -> set[uuid.UUID]:
    return {g for g, (day, r) in world.rows.items() if not expired(day, r, TODAY)}


def _stats(client: TestClient, world: World, since: date, resolution: str) -> Any:
    start = int(datetime.combine(since, time(), UTC).timestamp())
    response = client.get("/api/0/organizations/acme/monitors/nightly/stats/",
                          params={"since": start, "until": int(NOW.timestamp()), "resolution": resolution},
                          headers={"Authorization": f"Bearer {world.token}"})
    assert response.status_code == 200, response.text
    return response.json()


def _checkin_page(client: TestClient, world: World, since: date) -> Any:
    response = client.get("/api/0/organizations/acme/monitors/nightly/checkins/",
                          params={"since": int(datetime.combine(since, time(), UTC).timestamp())},
                          headers={"Authorization": f"Bearer {world.token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_maintenance_deletes_exactly_the_expired_check_ins_with_their_guids_and_attachments(world: World) -> None:
    summary = maintain(world.url, NOW, CONFIG)
    assert summary.skipped is None and not summary.stopped
    remaining = {r[0] for r in _rows(world.url, "SELECT guid FROM checkins")}
    assert remaining == _kept(world)
    # Each kept row is younger than its retention plus one day; each deleted one is older than its retention.
    for guid, (day, r) in world.rows.items():
        age = NOW - datetime.combine(day, time(), UTC)
        if guid in remaining:
            assert age < timedelta(days=r + 1)
        else:
            assert age >= timedelta(days=r)
    assert summary.trimmed_checkins > 0 and summary.dropped
    guids = _rows(world.url, "SELECT g.guid, g.checkin_id, g.date_added FROM checkin_guids g ORDER BY 1")
    assert guids == _rows(world.url, "SELECT guid, id, date_added FROM checkins ORDER BY 1")
    attached = {r[0] for r in _rows(world.url, "SELECT checkin_guid FROM checkin_attachments")}
    assert attached == world.attachments & _kept(world)
    again = maintain(world.url, NOW, CONFIG)
    assert (again.created, again.dropped, again.trimmed_checkins, again.attachments_deleted) == ([], [], 0, 0)


def test_partitions_whose_rows_all_expired_are_dropped_and_the_next_days_exist_ahead(world: World) -> None:
    maintain(world.url, NOW, CONFIG)
    days = {datetime.strptime(name[len("checkins_p"):], "%Y%m%d").date() for (name,) in _rows(
        world.url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                   " WHERE i.inhparent = 'checkins'::regclass")}
    assert min(days) == TODAY - timedelta(days=90)  # the oldest day with a 90-day row not yet expired
    assert {TODAY + timedelta(days=n) for n in range(8)} <= days
    assert _rows(world.url, "SELECT count(*) FROM pg_class WHERE relname ~ '^checkins_p' AND relkind = 'r'"
                            " AND NOT relispartition") == [(0,)]


def test_rollups_and_api_answers_for_the_kept_window_are_unchanged(world: World, client: TestClient) -> None:
    daily_before = _stats(client, world, FIRST, "1d")
    hourly_before = _stats(client, world, TODAY - timedelta(days=30), "1h")
    page_before = _checkin_page(client, world, TODAY - timedelta(days=29))
    gone = next(g for g, (day, r) in world.rows.items() if expired(day, r, TODAY) and day > TODAY - timedelta(days=90))
    kept = next(iter(_kept(world)))
    maintain(world.url, NOW, CONFIG)
    # 200 days at one-day resolution still answer from the daily rollups.
    assert _stats(client, world, FIRST, "1d") == daily_before
    assert sum(b["ok"] + b["error"] for b in daily_before) == 4 * DAYS
    assert _stats(client, world, TODAY - timedelta(days=30), "1h") == hourly_before
    assert _checkin_page(client, world, TODAY - timedelta(days=29)) == page_before
    hourly_cutoff = datetime.combine(TODAY, time(), UTC) - timedelta(days=90)
    assert _rows(world.url, "SELECT count(*) FROM checkin_rollups WHERE resolution = 3600 AND bucket < %s",
                 (hourly_cutoff,)) == [(0,)]
    assert _rows(world.url, "SELECT count(*) FROM checkin_rollups WHERE resolution = 86400")[0][0] >= DAYS
    auth = {"Authorization": f"Bearer {world.token}"}
    base = "/api/0/projects/acme/backend/monitors/nightly/checkins/"
    assert client.get(f"{base}{gone.hex}/", headers=auth).status_code == 404
    assert client.get(f"{base}{kept.hex}/", headers=auth).status_code == 200


def test_a_pass_is_skipped_while_another_runs_and_a_stopped_pass_leaves_the_rest_to_the_next(world: World) -> None:
    with psycopg.connect(world.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (0x6372706D61696E74,))
        assert maintain(world.url, NOW, CONFIG).skipped == "another maintenance pass is running"
    assert len(_rows(world.url, "SELECT 1 FROM checkins")) == 4 * DAYS
    stop = threading.Event()
    stop.set()
    assert maintain(world.url, NOW, CONFIG, should_stop=stop.is_set).stopped
    assert len(_rows(world.url, "SELECT 1 FROM checkins")) == 4 * DAYS
    maintain(world.url, NOW, CONFIG)
    assert {r[0] for r in _rows(world.url, "SELECT guid FROM checkins")} == _kept(world)
