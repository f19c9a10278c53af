"""The volume guard's effects on TIMEOUTs and on jobs' own results, and the exact undo of
what a back-dated tick held, through real Kafka and PostgreSQL.

History is seeded as in test_clock_volume_guard.py (100 check-ins a minute on the 30
previous days; ``seed_volume`` sets today's minutes). Ticks are produced by the test; the
jobs' OK and ERROR check-ins go through the real check-in processor (``checkins`` agent),
so their minute counts one more (101, or 86 in a dip of 85: the metric does not change).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas.enums import CheckInStatus, MonitorStatus
from tests.integration.clock_helpers import PipelineRig, checkins_of
from tests.integration.volume_guard_helpers import (
    M,
    T,
    decisions,
    outbox_rows,
    relayed_events,
    rollups,
    run_of,
    running_job,
    seed_volume,
    silent_monitor,
    status_of,
    ticks,
    timeout_rollups,
)

MISSED, UNKNOWN, OK, ERROR = CheckInStatus.MISSED, CheckInStatus.UNKNOWN, CheckInStatus.OK, CheckInStatus.ERROR
TIMEOUT = CheckInStatus.TIMEOUT
S = timedelta(seconds=1)
#: Abnormal metrics at ticks T+6 and T+7, normal from T+8: T+12 is normal again (releases).
DIP = {5: 85, 6: 85}
#: Abnormal at T+6, T+7, then an incident metric at T+8 (back-dates T+6, T+7).
DIP_THEN_DROP = {5: 85, 6: 85, 7: 40, 8: 40}
#: Incident at T+2..T+5, recovering at T+6, T+7, incident again at T+8 (back-dates T+6, T+7).
RELAPSE = {1: 50, 2: 50, 3: 50, 4: 50, 7: 50}
CLOCK_AND_PROCESSOR = ["checkins", "clock_tasks"]
#: A monitor that runs once a day, at 10:05 (T+5): due (margin 1) at tick T+6.
DAILY_AT_T5 = "5 10 * * *"


def count(rig: PipelineRig, sql: str, params: Any = None) -> int:
    return int(rig.rows(sql, params)[0][0])


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# --------------------------------------------------------------------------- TIMEOUT


def test_an_in_progress_check_in_whose_timeout_falls_in_an_incident_becomes_unknown_not_timeout(
        rig: PipelineRig) -> None:
    seed_volume(rig, 12, {i: 50 for i in range(3, 9)})  # incident metrics at ticks T+4 .. T+9
    env_id, before = running_job(rig, "nightly", T + 2 * M)  # times out in a normal tick
    _, during = running_job(rig, "nightly-2", T + 6 * M)

    async def scenario() -> None:
        rig.tick(*ticks(0, 8))
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert decisions(rig)[T + 2 * M] == "normal" and decisions(rig)[T + 6 * M] == "incident"
    assert status_of(rig, before) == TIMEOUT
    assert status_of(rig, during) == UNKNOWN  # Sentry's mark_unknown
    other_env = rig.rows("SELECT monitor_environment_id FROM checkins WHERE id = %s", (during,))[0][0]
    assert timeout_rollups(rig, env_id) == (1, 0)
    assert timeout_rollups(rig, other_env) == (0, 1)
    # No incident effect: its environment fails nothing and nothing is sent for it.
    assert run_of(rig, other_env)[1:] == (0, None)
    assert count(rig, "SELECT count(*) FROM incidents WHERE monitor_environment_id = %s", (other_env,)) == 0
    assert [e["monitor_environment_id"] for e in relayed_events(rig)] == [env_id]


def two_timeouts(rig: PipelineRig) -> tuple[int, int, int, int]:
    """A job that times out at tick T+6 and fails its environment, and one at T+7 whose
    newer run finished (it fails nothing): (env, check-in) of each."""
    env_id, failing = running_job(rig, "nightly", T + 6 * M)
    other_env, overlapped = running_job(rig, "overlapped", T + 7 * M, newer_ok=True)
    return env_id, failing, other_env, overlapped


def test_timeouts_of_an_abnormal_tick_are_held_and_delivered_when_it_returns_to_normal(rig: PipelineRig) -> None:
    seed_volume(rig, 14, DIP)
    env_id, failing, other_env, overlapped = two_timeouts(rig)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 11))
        await rig.settle()
        states["abnormal"] = (outbox_rows(rig), relayed_events(rig),
                              count(rig, "SELECT count(*) FROM clock_volume_held"))
        rig.tick(T + 12 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert [decisions(rig)[t] for t in ticks(6, 11)] == ["abnormal"] * 6 and decisions(rig)[T + 12 * M] == "normal"
    outbox, sent, held = states["abnormal"]
    assert outbox == [("opened", True)] and sent == [] and held == 2
    assert types(relayed_events(rig)) == ["opened"]
    assert status_of(rig, failing) == TIMEOUT and status_of(rig, overlapped) == TIMEOUT
    assert timeout_rollups(rig, env_id) == (1, 0) and timeout_rollups(rig, other_env) == (1, 0)
    assert run_of(rig, env_id) == (int(MonitorStatus.ERROR), 1, failing)
    assert count(rig, "SELECT count(*) FROM clock_volume_held") == 0


@pytest.mark.parametrize("volume", [DIP_THEN_DROP, RELAPSE], ids=["abnormal", "recovering"])
def test_timeouts_held_in_a_pending_tick_become_unknown_when_it_is_back_dated_and_nothing_is_sent(
        rig: PipelineRig, volume: dict[int, int]) -> None:
    seed_volume(rig, 12, volume)
    env_id, failing, other_env, overlapped = two_timeouts(rig)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 7))
        await rig.settle()
        states["pending"] = (status_of(rig, failing), status_of(rig, overlapped), outbox_rows(rig))
        rig.tick(T + 8 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert states["pending"] == (TIMEOUT, TIMEOUT, [("opened", True)])
    assert [decisions(rig)[t] for t in ticks(6, 8)] == ["incident"] * 3
    # Both become UNKNOWN, the one that failed nothing too; their counts move to unknown.
    assert status_of(rig, failing) == UNKNOWN and status_of(rig, overlapped) == UNKNOWN
    assert timeout_rollups(rig, env_id) == (0, 1) and timeout_rollups(rig, other_env) == (0, 1)
    assert outbox_rows(rig) == [] and relayed_events(rig) == []
    assert count(rig, "SELECT count(*) FROM incidents") == 0
    assert run_of(rig, env_id) == (int(MonitorStatus.OK), 0, None)


# --------------------------------------------------------------------------- jobs' own results


def test_a_job_s_error_during_an_abnormal_tick_is_never_held(rig: PipelineRig) -> None:
    seed_volume(rig, 14, DIP)
    with_job = silent_monitor(rig, "reporting", T + 100 * M, failure=1)  # not due in this test
    silent = silent_monitor(rig, "silent", T + 5 * M, schedule=DAILY_AT_T5)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 7))
        await rig.settle()
        rig.check_in("reporting", "error", T + 7 * M + 30 * S)
        await rig.wait_ingested()
        states["abnormal"] = (decisions(rig)[T + 7 * M], relayed_events(rig))

    rig.run(CLOCK_AND_PROCESSOR, scenario)
    decision, sent = states["abnormal"]
    assert decision == "abnormal"
    # The job's own ERROR opened its incident and was sent at once; the silent monitor's
    # MISSED of the same minutes waits for the volume to settle.
    assert [(e["type"], e["monitor_environment_id"]) for e in sent] == [("opened", with_job)]
    assert [(p["type"], h) for p, h in rig.rows(
        "SELECT payload, held FROM incident_outbox WHERE monitor_environment_id = %s", (silent,))] == [("opened", True)]
    assert [s for s, _, _ in checkins_of(rig, with_job)] == [ERROR]


@pytest.mark.parametrize("resolved_as", ["normal", "incident"])
def test_an_ok_that_resolves_an_incident_opened_by_a_held_miss_is_held_with_it(
        rig: PipelineRig, resolved_as: str) -> None:
    seed_volume(rig, 14, DIP if resolved_as == "normal" else DIP_THEN_DROP)
    env_id = silent_monitor(rig, "daily", T + 5 * M, schedule=DAILY_AT_T5)  # missed at tick T+6 (held)
    last = 12 if resolved_as == "normal" else 8
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 6))
        await rig.settle()
        rig.check_in("daily", "ok", T + 6 * M + 30 * S)  # late, but it ran: resolves
        await rig.wait_ingested()
        states["pending"] = (outbox_rows(rig), relayed_events(rig))
        rig.tick(*ticks(7, last))
        await rig.settle()

    rig.run(CLOCK_AND_PROCESSOR, scenario)
    outbox, sent = states["pending"]
    assert outbox == [("opened", True), ("resolved", True)] and sent == []  # never "resolved" alone
    if resolved_as == "normal":
        assert types(relayed_events(rig)) == ["opened", "resolved"]
        assert [s for s, _, _ in checkins_of(rig, env_id)] == [MISSED, OK]
        return
    assert [decisions(rig)[t] for t in ticks(6, 8)] == ["incident"] * 3
    assert relayed_events(rig) == [] and outbox_rows(rig) == []
    assert count(rig, "SELECT count(*) FROM incidents") == 0
    assert [s for s, _, _ in checkins_of(rig, env_id)] == [UNKNOWN, OK]
    assert run_of(rig, env_id) == (int(MonitorStatus.OK), 0, None)


def test_a_job_s_error_in_an_incident_opened_by_a_held_miss_opens_it_again_alone_when_the_miss_is_undone(
        rig: PipelineRig) -> None:
    seed_volume(rig, 12, DIP_THEN_DROP)
    env_id = silent_monitor(rig, "daily", T + 5 * M, schedule=DAILY_AT_T5, failure=1)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 6))
        await rig.settle()
        rig.check_in("daily", "error", T + 6 * M + 30 * S)
        await rig.wait_ingested()
        states["pending"] = (outbox_rows(rig), relayed_events(rig))
        rig.tick(*ticks(7, 8))
        await rig.settle()

    rig.run(CLOCK_AND_PROCESSOR, scenario)
    outbox, sent = states["pending"]
    # The ERROR joined an incident that a held MISSED opened: its event waits with it.
    assert outbox == [("opened", True), ("failure", True)] and sent == []
    error_id, error_guid = rig.rows("SELECT id, guid::text FROM checkins WHERE monitor_environment_id = %s"
                                    " AND status = %s", (env_id, int(ERROR)))[0]
    assert [s for s, _, _ in checkins_of(rig, env_id)] == [UNKNOWN, ERROR]
    # Back-dated: the MISSED's incident is gone; the job's ERROR alone still fails the
    # environment (threshold 1), so its incident opens from it and that is what is sent.
    events = relayed_events(rig)
    assert types(events) == ["opened"]
    assert events[0]["failed_checkin_id"] == error_guid
    assert [c["id"] for c in events[0]["failing_checkins"]] == [error_guid]
    assert rig.rows("SELECT starting_checkin_id FROM incidents WHERE resolving_timestamp IS NULL") == [(error_id,)]
    assert count(rig, "SELECT count(*) FROM incidents") == 1
    assert run_of(rig, env_id) == (int(MonitorStatus.ERROR), 1, error_id)


# --------------------------------------------------------------------------- recounting the run


def test_a_back_dated_miss_comes_off_the_failure_run_and_an_incident_it_completed_is_removed(
        rig: PipelineRig) -> None:
    seed_volume(rig, 12, DIP_THEN_DROP)
    # Threshold 3: T+5's real MISSED starts the run, the held ones of T+6 and T+7 complete it.
    env_id = silent_monitor(rig, "three-strikes", T + 4 * M, failure=3)
    states: dict[str, Any] = {}

    async def scenario() -> None:
        rig.tick(*ticks(0, 7))
        await rig.settle()
        states["pending"] = (outbox_rows(rig), run_of(rig, env_id)[1],
                             count(rig, "SELECT count(*) FROM incidents"))
        rig.tick(T + 8 * M)
        await rig.settle()

    rig.run(["clock_tasks"], scenario)
    assert states["pending"] == ([("opened", True)], 3, 1)
    statuses = checkins_of(rig, env_id)
    assert [s for s, _, _ in statuses] == [MISSED, UNKNOWN, UNKNOWN, UNKNOWN]
    first = rig.rows("SELECT id FROM checkins WHERE monitor_environment_id = %s AND status = %s",
                     (env_id, int(MISSED)))[0][0]
    # One real failure is left: the run is 1 long, from it, and the incident never was.
    assert run_of(rig, env_id) == (int(MonitorStatus.OK), 1, first)
    assert count(rig, "SELECT count(*) FROM incidents") == 0
    assert outbox_rows(rig) == [] and relayed_events(rig) == []
    assert rollups(rig, env_id) == (1, 3)
