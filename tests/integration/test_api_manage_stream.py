"""Management writes meet the stream: the real clock agents and the real check-in processor
on Kafka, with the write routes changing the same rows.

Disable stops clock tasks and enable starts from the next slot after "now" (no MISSED for
the disabled time); a muted environment still records incidents; a check-in's config
upsert never re-enables a disabled monitor or un-mutes a muted one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cronpipe.admin import create_token
from schemas.enums import CheckInStatus, ProcessingErrorType
from schemas.topics import Topics
from tests.integration.checkins_pipeline import Pipeline
from tests.integration.clock_helpers import ClockRig, checkins_of, crontab_config, seed_monitor

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
MISSED = CheckInStatus.MISSED


class Clocked:
    """The API on the rig's database, its "now" set by the test."""

    def __init__(self, database_url: str, token: str) -> None:
        self.now = T
        app = create_app(database_url, pool_size=1, purge_in_background=False)
        app.state.now = lambda: self.now
        self.client = TestClient(app)
        self.client.__enter__()
        self.headers = {"Authorization": f"Bearer {token}"}

    def put(self, path: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        self.now = now
        response = self.client.put(path, json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def org_slug(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        return str(conn.execute("SELECT slug FROM organizations").fetchone()[0])  # type: ignore[index]


def test_a_disabled_monitor_gets_no_missed_and_none_for_the_gap_after_enable(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        _, env = seed_monitor(conn, 1, "every-minute", crontab_config("* * * * *", margin=1), next_checkin=T,
                              next_checkin_latest=T + M, last_checkin=T - M)
        _, muted_env = seed_monitor(conn, 1, "quiet", crontab_config("* * * * *", margin=1, failure=1),
                                    next_checkin=T, next_checkin_latest=T + M, last_checkin=T - M)
        org = org_slug(rig.database_url)
        token = create_token(conn, org, "write")
    api = Clocked(rig.database_url, token)
    monitors = f"/api/0/organizations/{org}/monitors"

    async def scenario() -> None:
        assert api.put(f"{monitors}/every-minute/", {"status": "disabled"}, T)["status"] == "disabled"
        assert api.put(f"{monitors}/quiet/", {"isMuted": True}, T)["isMuted"] is True
        rig.tick(*(T + i * M for i in range(1, 11)))  # ten minutes disabled
        await rig.settle()
        assert checkins_of(rig, env) == []
        enabled = api.put(f"{monitors}/every-minute/", {"status": "active"}, T + 10 * M + timedelta(seconds=20))
        assert enabled["environments"][0]["nextCheckIn"] == "2026-05-04T10:11:00Z"
        rig.tick(T + 11 * M)
        await rig.settle()
        assert checkins_of(rig, env) == []
        rig.tick(T + 12 * M)
        await rig.settle()

    try:
        rig.run(["clock_tasks"], scenario)
    finally:
        api.close()
    assert checkins_of(rig, env) == [(MISSED, T + 11 * M, T + 11 * M)]
    muted_checkins = checkins_of(rig, muted_env)
    assert len(muted_checkins) == 12 and {c[0] for c in muted_checkins} == {MISSED}
    incidents = rig.rows("SELECT count(*) FROM incidents WHERE monitor_environment_id = %s", (muted_env,))
    assert incidents == [(1,)]
    assert rig.rows("SELECT is_muted FROM monitor_environments WHERE id = %s", (muted_env,)) == [(True,)]


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    yield p
    p.close()


CRONTAB = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 3}


def test_a_check_in_upsert_never_re_enables_or_unmutes_and_new_environments_start_muted(pipeline: Pipeline) -> None:
    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        token = create_token(conn, "acme", "write")
    app = create_app(pipeline.database_url, pool_size=1, purge_in_background=False)
    headers = {"Authorization": f"Bearer {token}"}

    client = TestClient(app)
    job = "/api/0/organizations/acme/monitors/job/"

    async def scenario() -> None:
        pipeline.check_in("job", "ok", monitor_config=CRONTAB, environment="production")
        await pipeline.drain()
        assert client.get(job, headers=headers).json()["isUpserting"] is True
        body = client.put(job, headers=headers, json={"isMuted": True, "config": {"checkin_margin": 7}}).json()
        assert body["isMuted"] is True and body["isUpserting"] is False
        pipeline.check_in("job", "ok", monitor_config=CRONTAB, environment="staging",
                          at=datetime(2024, 4, 24, 16, 1, tzinfo=UTC))
        await pipeline.drain()
        body = client.get(job, headers=headers).json()
        assert body["isUpserting"] is True and body["config"]["checkin_margin"] == 3
        assert {e["name"]: e["isMuted"] for e in body["environments"]} == {"production": True, "staging": True}
        client.put(job, headers=headers, json={"status": "disabled"})
        pipeline.check_in("job", "ok", monitor_config=CRONTAB, environment="production",
                          at=datetime(2024, 4, 24, 17, 1, tzinfo=UTC))
        await pipeline.drain()

    with client:
        pipeline.run(scenario)
    assert pipeline.one("SELECT status, is_muted FROM monitors WHERE slug = 'job'") == (1, True)
    assert pipeline.errors()[-1][0] == ProcessingErrorType.MONITOR_DISABLED
    assert len(pipeline.checkins("job")) == 2


def test_a_batch_waiting_on_an_api_update_computes_with_the_config_the_update_stored(pipeline: Pipeline) -> None:
    """No lost update: the processor locks the monitor before reading it, so a check-in that
    arrives while a PUT is uncommitted is processed with the PUT's schedule."""
    from api import manage
    from schemas.api import MonitorWrite

    first = datetime(2024, 4, 24, 15, 47, 52, tzinfo=UTC)
    second = first + timedelta(hours=1)  # 16:47:52; hourly → 17:00, every five minutes → 16:50

    async def scenario() -> None:
        pipeline.check_in("job", "ok", monitor_config=CRONTAB, at=first)
        await pipeline.drain()
        monitor_id, org_id = pipeline.one("SELECT id, organization_id FROM monitors WHERE slug = 'job'")  # type: ignore[misc]
        conn = await psycopg.AsyncConnection.connect(pipeline.database_url, autocommit=True)
        async with conn, conn.transaction():
            await manage.update_monitor(conn, org_id, monitor_id,
                                        MonitorWrite(config={"schedule": "*/5 * * * *"}), second)
            pipeline.check_in("job", "ok", at=second)  # no monitor_config: the stored one applies
            assert pipeline.producer.flush(15) == 0
            await asyncio.sleep(1.0)  # let the batch reach the lock (it passes either way)
        await pipeline.drain()

    pipeline.run(scenario)
    assert pipeline.one("SELECT next_checkin FROM monitor_environments") == (datetime(2024, 4, 24, 16, 50, tzinfo=UTC),)
