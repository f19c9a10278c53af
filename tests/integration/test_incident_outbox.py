"""Incident events: written to the outbox in the consumers' transactions, relayed to
``monitors-incidents`` (real Kafka, real PostgreSQL, the real agents in-process)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from consumers.incidents.relay import OUTBOX_CHANNEL, RELAY_LOCK, OutboxRelay
from schemas.incident_events import IncidentEvent, complete_event, decode_incident_event
from schemas.topics import Topics
from tests.integration.checkins_pipeline import T0, Pipeline
from tests.integration.clock_helpers import ClockRig, crontab_config, read_all, seed_monitor

T = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _outbox(database_url: str) -> list[IncidentEvent]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT payload FROM incident_outbox ORDER BY id").fetchall()
    return [complete_event(r[0]) for r in rows]


def _count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _error_checkin(conn: psycopg.Connection[Any], monitor_id: int, env_id: int) -> int:
    """An ERROR check-in at T (its day partition created if needed); returns its id."""
    conn.execute("SELECT cronpipe_ensure_checkins_partitions(ARRAY[(%s::timestamptz AT TIME ZONE 'UTC')::date])", (T,))
    row = conn.execute(
        "INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status, date_added,"
        " date_updated) VALUES (gen_random_uuid(), 1, %s, %s, 2, %s, %s) RETURNING id",
        (monitor_id, env_id, T, T)).fetchone()
    assert row is not None
    return int(row[0])


async def _until_sent(database_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(database_url) as conn:
            unsent = _count(conn, "SELECT count(*) FROM incident_outbox WHERE sent_at IS NULL")
        if unsent == 0:
            return
        assert time.monotonic() < deadline, f"{unsent} outbox rows still unsent"
        await asyncio.sleep(0.1)


def test_two_misses_with_threshold_two_write_one_opened_event_then_a_failure_and_relay_them(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        seed_monitor(conn, 1, "nightly", crontab_config("* * * * *", failure=2),
                     next_checkin=T, next_checkin_latest=T + M)
    seen: list[list[str]] = []

    async def scenario() -> None:
        rig.tick(T + M, T + 2 * M)
        await rig.settle()
        seen.append([e.type for e in _outbox(rig.database_url)])
        rig.tick(T + 3 * M)
        await rig.settle()
        await _until_sent(rig.database_url)

    rig.run(["clock_tasks", "relay"], scenario)
    assert seen == [["opened"]]
    opened, failure = _outbox(rig.database_url)
    assert (opened.type, opened.reason, opened.monitor.slug, opened.environment) == \
        ("opened", "2 missed check-ins detected", "nightly", "production")
    assert [c.status for c in opened.failing_checkins] == ["missed", "missed"]
    assert opened.starting_timestamp == T and opened.clock_tick_ts is not None
    assert opened.previous_checkin_ids == [opened.failing_checkins[0].id]
    assert (failure.type, failure.reason, failure.incident_id) == \
        ("failure", "A missed check-in was detected", opened.incident_id)
    published = read_all(rig.bootstrap, rig.topics.incidents)
    assert [decode_incident_event(v) for v in published] == [opened, failure]


def test_the_processor_writes_opened_failure_and_resolved_with_the_check_ins_batch(
        kafka_bootstrap: str, topics: Topics, database_url: str) -> None:
    pipe = Pipeline(kafka_bootstrap, topics, database_url)
    config = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "recovery_threshold": 2}
    for i, status in enumerate(["error", "error", "ok", "ok", "ok"]):
        pipe.check_in("job", status, at=T0 + i * M, monitor_config=config)

    async def scenario() -> None:
        await pipe.drain()

    try:
        pipe.run(scenario)
    finally:
        pipe.close()
    events = _outbox(database_url)
    assert [(e.type, e.reason) for e in events] == [
        ("opened", "An error check-in was detected"),
        ("failure", "An error check-in was detected"),
        ("resolved", "Resolved by 2 consecutive OK check-ins")]
    assert len({e.incident_id for e in events}) == 1
    assert events[2].resolving_timestamp is not None and events[2].last_ok_checkin is not None


def test_an_incident_across_midnight_lists_both_days_check_ins_from_one_batch(
        kafka_bootstrap: str, topics: Topics, database_url: str) -> None:
    # The insert bounds its check-in lookups by the batch's own range of days (partition
    # pruning): an event whose failures and last OK lie in other day partitions than its
    # own check-in must still find them all.
    pipe = Pipeline(kafka_bootstrap, topics, database_url)
    config = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "failure_issue_threshold": 2}
    midnight = datetime(2024, 4, 25, tzinfo=UTC)
    for i, status in enumerate(["ok", "error", "error", "ok"]):
        pipe.check_in("late", status, at=midnight + (i - 2) * M, monitor_config=config)

    async def scenario() -> None:
        await pipe.drain()

    try:
        pipe.run(scenario)
    finally:
        pipe.close()
    opened, resolved = _outbox(database_url)
    assert (opened.type, resolved.type) == ("opened", "resolved")
    assert [c.date_added for c in opened.failing_checkins] == [midnight - M, midnight]
    assert opened.last_ok_checkin is not None and opened.last_ok_checkin.date_added == midnight - 2 * M
    assert resolved.last_ok_checkin is not None and resolved.last_ok_checkin.date_added == midnight + M


def test_a_rolled_back_transaction_leaves_nothing_for_the_relay(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        monitor_id, env_id = seed_monitor(conn, 1, "job", crontab_config("* * * * *"))
        checkin_id = _error_checkin(conn, monitor_id, env_id)
        with pytest.raises(RuntimeError), conn.transaction():
            incident_store.open_incidents(conn, [(monitor_id, env_id, checkin_id, T)])
            assert outbox.write_events(conn, [outbox.OutboxEvent(env_id, "opened", checkin_id, T)]) == 1
            raise RuntimeError("the batch failed after its writes")
    relay = OutboxRelay(rig.database_url, rig.bootstrap, rig.topics.incidents)
    try:
        assert relay.run_once() is False
    finally:
        relay.close()
    assert _outbox(rig.database_url) == []
    # A marker of our own, so the read below waits for the fresh topic's leader.
    rig.producer.produce(rig.topics.incidents, value=b"marker", partition=0)
    assert rig.producer.flush(15) == 0
    assert read_all(rig.bootstrap, rig.topics.incidents) == [b"marker"]


def _seed_event(database_url: str, slug: str = "job") -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        monitor_id, env_id = seed_monitor(conn, 1, slug, crontab_config("* * * * *"))
        checkin_id = _error_checkin(conn, monitor_id, env_id)
        with conn.transaction():
            incident_store.open_incidents(conn, [(monitor_id, env_id, checkin_id, T)])
            outbox.write_events(conn, [outbox.OutboxEvent(env_id, "opened", checkin_id, T)])


def test_a_second_relay_publishes_nothing_while_the_first_holds_the_lock(rig: ClockRig) -> None:
    _seed_event(rig.database_url)
    relay = OutboxRelay(rig.database_url, rig.bootstrap, rig.topics.incidents)
    try:
        with psycopg.connect(rig.database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (RELAY_LOCK,))
            assert relay.run_once() is False
        relay.run_once()
        assert relay.run_once() is False
    finally:
        relay.close()
    published = read_all(rig.bootstrap, rig.topics.incidents)
    assert len(published) == 1
    assert orjson.loads(published[0])["type"] == "opened"


def test_a_committed_outbox_write_or_release_notifies_the_relay_and_a_rolled_back_one_never(
        rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        with psycopg.connect(rig.database_url, autocommit=True) as conn:
            monitor_id, env_id = seed_monitor(conn, 1, "job", crontab_config("* * * * *"))
            checkin_id = _error_checkin(conn, monitor_id, env_id)
            with pytest.raises(RuntimeError), conn.transaction():
                outbox.write_events(conn, [outbox.OutboxEvent(env_id, "opened", checkin_id, T)])
                raise RuntimeError("rolled back")
            with conn.transaction():
                incident_store.open_incidents(conn, [(monitor_id, env_id, checkin_id, T)])
                outbox.write_events(conn, [outbox.OutboxEvent(env_id, "opened", checkin_id, T, tick=T, held=True)])
            conn.execute("UPDATE incident_outbox SET held = false WHERE held")  # the volume guard's release
            conn.execute("UPDATE incident_outbox SET sent_at = now()")  # the relay's own mark: no notification
        received = list(listener.notifies(timeout=2.0))
    assert [n.channel for n in received] == [OUTBOX_CHANNEL, OUTBOX_CHANNEL]


def test_a_waiting_relay_wakes_when_an_event_commits(rig: ClockRig) -> None:
    relay = OutboxRelay(rig.database_url, rig.bootstrap, rig.topics.incidents)
    try:
        assert relay.run_once() is False  # connected and listening, nothing to publish
        waiter = threading.Thread(target=relay.wait_for_rows, kwargs={"timeout_s": 120.0})
        waiter.start()
        _seed_event(rig.database_url)
        waiter.join(60)
        assert not waiter.is_alive(), "the relay was not woken by the commit"
        relay.run_once()
    finally:
        relay.close()
    assert [orjson.loads(v)["type"] for v in read_all(rig.bootstrap, rig.topics.incidents)] == ["opened"]


def test_an_unsent_row_is_published_again_with_the_same_event_id(rig: ClockRig) -> None:
    _seed_event(rig.database_url)
    relay = OutboxRelay(rig.database_url, rig.bootstrap, rig.topics.incidents)
    try:
        relay.run_once()
        # What a crash between Kafka's acknowledgement and the commit leaves behind.
        with psycopg.connect(rig.database_url, autocommit=True) as conn:
            conn.execute("UPDATE incident_outbox SET sent_at = NULL")
        relay.run_once()
    finally:
        relay.close()
    ids: list[Any] = [orjson.loads(v)["event_id"] for v in read_all(rig.bootstrap, rig.topics.incidents)]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_disabled_monitors_write_no_events(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        monitor_id, env_id = seed_monitor(conn, 1, "off", crontab_config("* * * * *"))
        conn.execute("UPDATE monitors SET status = 1 WHERE id = %s", (monitor_id,))
        checkin_id = _error_checkin(conn, monitor_id, env_id)
        incident_store.open_incidents(conn, [(monitor_id, env_id, checkin_id, T)])
        assert outbox.write_events(conn, [outbox.OutboxEvent(env_id, "opened", checkin_id, T)]) == 0


def test_a_muted_environment_still_writes_its_event_marked_muted(rig: ClockRig) -> None:
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        _, env_id = seed_monitor(conn, 1, "quiet", crontab_config("* * * * *"), next_checkin=T,
                                 next_checkin_latest=T + M)
        conn.execute("UPDATE monitor_environments SET is_muted = true WHERE id = %s", (env_id,))

    async def scenario() -> None:
        rig.tick(T + M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    (event,) = _outbox(rig.database_url)
    assert (event.type, event.is_muted, event.reason) == ("opened", True, "A missed check-in was detected")
