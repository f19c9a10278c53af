"""The volume-anomaly guard through real Kafka topics into a real PostgreSQL.

Thirty days of steady history (100 accepted check-ins a minute) and the current minutes'
volume are seeded with SQL (compressed message time, ``volume_guard_helpers``); ticks are
produced by the test and run through the real dispatch and task agents; the outbox relay
is stepped against the real ``monitors-incidents`` topic. Timeouts and jobs' own results:
test_clock_volume_guard_effects.py.
"""

from __future__ import annotations

from typing import Any

import psycopg

from schemas.enums import CheckInStatus, MonitorStatus
from tests.integration.clock_helpers import ClockRig, checkins_of
from tests.integration.volume_guard_helpers import DAY, M, T, run_of
from tests.integration.volume_guard_helpers import decisions as _decisions
from tests.integration.volume_guard_helpers import outbox_rows as _outbox
from tests.integration.volume_guard_helpers import relayed as _relayed
from tests.integration.volume_guard_helpers import rollups as _rollups
from tests.integration.volume_guard_helpers import seed_volume as _seed_volume
from tests.integration.volume_guard_helpers import silent_monitor as _silent_monitor
from tests.integration.volume_guard_helpers import ticks as _ticks

MISSED, UNKNOWN = CheckInStatus.MISSED, CheckInStatus.UNKNOWN


def test_a_half_volume_outage_turns_misses_unknown_sends_nothing_and_later_misses_alert_after_recovery(
        rig: ClockRig) -> None:
    # Minutes T+5..T+14 carry half the volume: ticks T+6..T+15 see an incident metric.
    _seed_volume(rig, 30, {i: 50 for i in range(5, 15)})
    env_id = _silent_monitor(rig, "silent", T + 8 * M)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*_ticks(0, 15))
        await rig.settle()
        states["incident"] = (checkins_of(rig, env_id), _outbox(rig), _relayed(rig), _rollups(rig, env_id),
                              rig.rows("SELECT count(*) FROM incidents")[0][0])
        rig.tick(*_ticks(16, 19))
        await rig.settle()
        states["recovering"] = (_outbox(rig), _relayed(rig))
        rig.tick(*_ticks(20, 22))
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    decisions = _decisions(rig)
    assert [decisions[t] for t in _ticks(0, 5)] == ["normal"] * 6
    assert [decisions[t] for t in _ticks(6, 15)] == ["incident"] * 10
    assert [decisions[t] for t in _ticks(16, 19)] == ["recovering"] * 4
    assert [decisions[t] for t in _ticks(20, 22)] == ["normal"] * 3

    checkins, outbox, relayed, rollups, incidents = states["incident"]
    assert [s for s, _, _ in checkins] == [UNKNOWN] * 7  # slots T+8 .. T+14, missed by ticks T+9 .. T+15
    assert outbox == [] and relayed == []
    assert rollups == (0, 7)
    assert incidents == 0

    outbox, relayed = states["recovering"]
    assert outbox == [("opened", True), ("failure", True), ("failure", True), ("failure", True)]
    assert relayed == []

    # Back to normal at T+20: the recovering ticks' misses are real after all and alert.
    assert _outbox(rig)[0] == ("opened", False)
    assert not any(held for _, held in _outbox(rig))
    assert [e for e in _relayed(rig) if b'"opened"' in e]
    statuses = [s for s, _, _ in checkins_of(rig, env_id)]
    assert statuses == [UNKNOWN] * 7 + [MISSED] * 7
    assert _rollups(rig, env_id) == (7, 7)
    # The incident's minutes no longer lower the baseline of the days to come.
    assert rig.rows("SELECT count(*) FROM checkin_volume WHERE minute >= %s AND minute < %s",
                    (T + 5 * M, T + 19 * M))[0][0] == 0


def test_a_fifteen_percent_dip_for_two_minutes_holds_the_misses_and_releases_them_when_normal(
        rig: ClockRig) -> None:
    _seed_volume(rig, 20, {5: 85, 6: 85})  # ticks T+6 and T+7 see an abnormal metric
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO checkin_volume (minute, count) VALUES (%s, 7)", (T - 40 * DAY,))
    env_id = _silent_monitor(rig, "dip", T + 5 * M)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*_ticks(0, 11))
        await rig.settle()
        states["abnormal"] = (_outbox(rig), _relayed(rig))
        rig.tick(T + 12 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    decisions = _decisions(rig)
    assert [decisions[t] for t in _ticks(6, 11)] == ["abnormal"] * 6
    assert decisions[T + 12 * M] == "normal"
    outbox, relayed = states["abnormal"]
    assert outbox[0] == ("opened", True) and all(held for _, held in outbox)
    assert relayed == []
    assert not any(held for _, held in _outbox(rig))
    assert [e for e in _relayed(rig) if b'"opened"' in e]
    assert all(s == MISSED for s, _, _ in checkins_of(rig, env_id))
    assert rig.rows("SELECT count(*) FROM clock_volume_held")[0][0] == 0
    # Kept 30 days (and one for the baseline's oldest day), in message time.
    assert rig.rows("SELECT count(*) FROM checkin_volume WHERE minute < %s", (T - 31 * DAY,))[0][0] == 0


def test_an_abnormal_run_that_becomes_an_incident_is_back_dated_and_its_misses_undone(rig: ClockRig) -> None:
    _seed_volume(rig, 12, {5: 85, 6: 85, 7: 40, 8: 40})  # abnormal at T+6, T+7; incident from T+8
    env_id = _silent_monitor(rig, "backdated", T + 4 * M)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*_ticks(0, 7))
        await rig.settle()
        states["abnormal"] = (_outbox(rig), rig.rows("SELECT count(*) FROM incidents")[0][0])
        rig.tick(T + 8 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    outbox, incidents = states["abnormal"]
    # T+5 (normal) opened the incident; the abnormal ticks' failures are held.
    assert outbox == [("opened", False), ("failure", True), ("failure", True)] and incidents == 1
    decisions = _decisions(rig)
    assert [decisions[t] for t in _ticks(6, 8)] == ["incident"] * 3
    # T+5: a normal tick's miss stays MISSED and its incident stays; so does its event.
    statuses = [s for s, _, _ in checkins_of(rig, env_id)]
    assert statuses == [MISSED, UNKNOWN, UNKNOWN, UNKNOWN]
    assert _outbox(rig) == [("opened", False)]
    assert _rollups(rig, env_id) == (1, 3)
    # The held misses came off the failure run: only the real one (T+5's) is left in it.
    first = rig.rows("SELECT id FROM checkins WHERE monitor_environment_id = %s AND status = %s",
                     (env_id, int(MISSED)))[0][0]
    assert run_of(rig, env_id) == (int(MonitorStatus.ERROR), 1, first)


def test_misses_held_while_recovering_are_undone_when_the_volume_drops_again(rig: ClockRig) -> None:
    # Incident metrics at T+2..T+5, normal at T+6..T+7, incident again at T+8.
    _seed_volume(rig, 12, {1: 50, 2: 50, 3: 50, 4: 50, 7: 50})
    env_id = _silent_monitor(rig, "relapse", T + 4 * M)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*_ticks(0, 7))
        await rig.settle()
        states["recovering"] = (_outbox(rig), [s for s, _, _ in checkins_of(rig, env_id)])
        rig.tick(T + 8 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    decisions = _decisions(rig)
    assert [decisions[t] for t in _ticks(2, 5)] == ["incident"] * 4
    assert [decisions[t] for t in _ticks(6, 8)] == ["incident"] * 3  # T+6, T+7 back-dated
    outbox, statuses = states["recovering"]
    assert statuses == [UNKNOWN, MISSED, MISSED] and outbox and all(held for _, held in outbox)
    assert [s for s, _, _ in checkins_of(rig, env_id)] == [UNKNOWN] * 4
    assert _outbox(rig) == []
    assert rig.rows("SELECT count(*) FROM incidents")[0][0] == 0
    status, failure_run = rig.rows("SELECT status, failure_run FROM monitor_environments WHERE id = %s",
                                   (env_id,))[0]
    assert MonitorStatus(status) != MonitorStatus.ERROR and failure_run == 0
    assert _rollups(rig, env_id) == (0, 4)


def test_without_history_every_tick_is_normal_and_misses_alert_as_before(rig: ClockRig) -> None:
    env_id = _silent_monitor(rig, "fresh", T)

    async def scenario() -> None:
        rig.tick(*_ticks(0, 3))
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert set(_decisions(rig).values()) == {"normal"}
    assert rig.rows("SELECT count(*) FROM clock_volume_decisions WHERE metric IS NOT NULL")[0][0] == 0
    assert [s for s, _, _ in checkins_of(rig, env_id)] == [MISSED] * 3
    assert _outbox(rig) == [("opened", False), ("failure", False), ("failure", False)]
