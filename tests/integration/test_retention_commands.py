"""`cronpipe maintain` and the worker's maintenance task, on a real database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg

from consumers.context import build_context, close_context
from consumers.maintenance.agent import run_pass
from schemas.settings import Settings
from schemas.topics import Topics

UTC = timezone.utc


def _partition_days(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'checkins'::regclass")}


def _maintain(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRONPIPE_DATABASE_URL": url, "CRONPIPE_PARTITIONS_AHEAD_DAYS": "10"}
    return subprocess.run([sys.executable, "-m", "cronpipe.cli", "maintain", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cronpipe_maintain_prints_a_json_summary_and_its_progress(database_url: str) -> None:
    far = (datetime.now(UTC) + timedelta(days=10)).date()
    done = _maintain(database_url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert f"checkins_p{far:%Y%m%d}" in summary["created"]
    assert summary["skipped"] is None and summary["dropped"] == []
    assert "cronpipe maintain: created" in done.stderr
    assert f"checkins_p{far:%Y%m%d}" in _partition_days(database_url)
    again = json.loads(_maintain(database_url).stdout)
    assert again["created"] == []


def test_cronpipe_maintain_drops_what_expired_at_the_time_it_is_told(database_url: str) -> None:
    later = (datetime.now(UTC) + timedelta(days=200)).isoformat()
    done = _maintain(database_url, "--now", later)
    assert done.returncode == 0, done.stderr
    # The empty partitions the migration made (yesterday .. 7 days ahead) are older than
    # a default retention at that time.
    assert len(json.loads(done.stdout)["dropped"]) >= 9


def test_cronpipe_maintain_refuses_a_time_that_is_not_iso_8601(database_url: str) -> None:
    done = _maintain(database_url, "--now", "yesterday")
    assert done.returncode == 2 and "not an ISO 8601 time" in done.stderr


def test_the_workers_maintenance_pass_creates_the_partitions_ahead(
        database_url: str, kafka_bootstrap: str, make_topics: Callable[..., Topics]) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, partitions_ahead_days=12)
    ctx = build_context(settings, make_topics(ingest_partitions=1), consumer_group="maintenance-test")
    try:
        summary = asyncio.run(run_pass(ctx))
    finally:
        close_context(ctx)
    far = (datetime.now(UTC) + timedelta(days=12)).date()
    assert summary is not None and f"checkins_p{far:%Y%m%d}" in summary.created
    assert f"checkins_p{far:%Y%m%d}" in _partition_days(database_url)
