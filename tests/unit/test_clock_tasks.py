"""Clock task decisions (consumers.clock.decisions): missed slots, timeouts, incidents. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count

import orjson
import pytest

from consumers.clock.decisions import (
    UNSCHEDULABLE_RETRY,
    DueMissed,
    TimedOut,
    Unschedulable,
    decide,
    missed_slots,
    plan_writes,
)
from consumers.clock.store import TaskEnvironment, TimeoutCheckIn
from consumers.incidents.rules import INITIAL_STATE
from schemas.clock import MarkMissing, MarkTimeout
from schemas.enums import CheckInStatus, MonitorStatus
from schemas.monitor_config import config_from_json

UTC = timezone.utc
T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _config(expr: str, **extra: object) -> str:
    return orjson.dumps({"schedule_type": "crontab", "schedule": expr, **extra}).decode()


def _env(config_json: str, next_checkin: datetime | None, margin: int = 1, disabled: bool = False,
         env_id: int = 1) -> TaskEnvironment:
    latest = None if next_checkin is None else next_checkin + margin * M
    return TaskEnvironment(id=env_id, monitor_id=10, project_id=1, disabled=disabled, status=MonitorStatus.OK,
                           config_json=config_json, next_checkin=next_checkin, next_checkin_latest=latest,
                           incident=INITIAL_STATE)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def test_a_silent_every_minute_monitor_misses_exactly_the_minutes_past_their_margin() -> None:
    config = config_from_json(orjson.loads(_config("* * * * *")))
    plan = missed_slots(config, T, T + M, T + 4 * M)
    assert plan is not None
    assert plan.slots == (T, T + M, T + 2 * M, T + 3 * M)
    assert (plan.next_checkin, plan.next_checkin_latest) == (T + 4 * M, T + 5 * M)


def test_nothing_is_missed_before_the_deadline() -> None:
    config = config_from_json(orjson.loads(_config("* * * * *")))
    assert missed_slots(config, T, T + M, T) is None


def test_slots_inside_a_wide_margin_are_not_missed_yet() -> None:
    config = config_from_json(orjson.loads(_config("* * * * *", checkin_margin=5)))
    plan = missed_slots(config, T, T + 5 * M, T + 5 * M)
    assert plan is not None and plan.slots == (T,)
    assert (plan.next_checkin, plan.next_checkin_latest) == (T + M, T + 6 * M)


def test_a_ten_minute_deadline_seen_by_two_ticks_is_missed_once() -> None:
    env = _env(_config("*/10 * * * *"), T + 10 * M)
    tasks = [MarkMissing(ts=_ts(T + 11 * M), monitor_environment_id=1),
             MarkMissing(ts=_ts(T + 12 * M), monitor_environment_id=1)]
    decisions, deadlines = decide(tasks, {1: env}, {})
    assert decisions == [DueMissed(1, T + 10 * M, T + 11 * M)]
    assert deadlines == {1: (T + 20 * M, T + 21 * M)}


@pytest.mark.parametrize("zone, day, midnight_utc, next_midnight_utc", [
    # Spring forward on 2026-03-08 at 02:00 local: midnight moves from UTC-5 to UTC-4.
    ("America/New_York", "2026-03-08", "2026-03-08T05:00", "2026-03-09T04:00"),
    # Fall back on 2026-10-25 at 03:00 local: midnight moves from UTC+2 to UTC+1.
    ("Europe/Berlin", "2026-10-25", "2026-10-24T22:00", "2026-10-25T23:00"),
    # Spring forward at local midnight on 2026-09-06: that midnight does not exist, the job
    # fires at the first instant after the gap (01:00 local, still 04:00 UTC).
    ("America/Santiago", "2026-09-06", "2026-09-05T04:00", "2026-09-06T04:00"),
])
def test_a_daily_monitor_is_missed_at_local_midnight_plus_margin_across_dst(
        zone: str, day: str, midnight_utc: str, next_midnight_utc: str) -> None:
    config = config_from_json(orjson.loads(_config("0 0 * * *", timezone=zone, checkin_margin=5)))
    midnight = datetime.fromisoformat(midnight_utc).replace(tzinfo=UTC)
    following = datetime.fromisoformat(next_midnight_utc).replace(tzinfo=UTC)
    assert missed_slots(config, midnight, midnight + 5 * M, midnight + 4 * M) is None
    plan = missed_slots(config, midnight, midnight + 5 * M, midnight + 5 * M)
    assert plan is not None and plan.slots == (midnight,)
    assert (plan.next_checkin, plan.next_checkin_latest) == (following, following + 5 * M)


def test_a_disabled_monitor_gets_nothing() -> None:
    env = _env(_config("* * * * *"), T, disabled=True)
    assert decide([MarkMissing(ts=_ts(T + 5 * M), monitor_environment_id=1)], {1: env}, {}) == ([], {})


def _in_progress(checkin_id: int, started: datetime, has_newer: bool = False,
                 status: CheckInStatus = CheckInStatus.IN_PROGRESS) -> TimeoutCheckIn:
    return TimeoutCheckIn(id=checkin_id, env_id=1, status=status, date_added=started,
                          timeout_at=started + 30 * M, has_newer_result=has_newer)


def test_an_in_progress_check_in_times_out_at_its_timeout_not_a_minute_earlier() -> None:
    env = _env(_config("0 * * * *", max_runtime=30), None)
    checkin = _in_progress(5, T)
    early = decide([MarkTimeout(ts=_ts(T + 29 * M), monitor_environment_id=1, checkin_id=5)], {1: env}, {5: checkin})
    on_time = decide([MarkTimeout(ts=_ts(T + 30 * M), monitor_environment_id=1, checkin_id=5)], {1: env}, {5: checkin})
    assert early == ([], {})
    assert on_time[0] == [TimedOut(5, 1, T, T + 30 * M, True)]


def test_a_finished_check_in_never_times_out() -> None:
    env = _env(_config("0 * * * *"), None)
    checkin = _in_progress(5, T, status=CheckInStatus.OK)
    assert decide([MarkTimeout(ts=_ts(T + 31 * M), monitor_environment_id=1, checkin_id=5)],
                  {1: env}, {5: checkin}) == ([], {})


def test_an_older_run_times_out_without_failing_when_a_newer_run_finished() -> None:
    env = _env(_config("0 * * * *"), None)
    decisions, _ = decide([MarkTimeout(ts=_ts(T + 30 * M), monitor_environment_id=1, checkin_id=5)],
                          {1: env}, {5: _in_progress(5, T, has_newer=True)})
    writes = plan_writes(decisions, {1: env}, count(100))
    assert writes.timeouts == {5: T + 30 * M}
    assert writes.states == {} and writes.opened == []
    assert writes.rollups[(1, 3600, T)] == (0, 1)


def test_missed_check_ins_get_ids_rollups_and_open_an_incident_at_the_threshold() -> None:
    env = _env(_config("* * * * *", failure_issue_threshold=3), T)
    decisions, _ = decide([MarkMissing(ts=_ts(T + 4 * M), monitor_environment_id=1)], {1: env}, {})
    writes = plan_writes(decisions, {1: env}, count(100))
    assert [(m.id, m.expected_time, m.clock) for m in writes.missed] == [(100 + i, T + i * M, T + 4 * M)
                                                                         for i in range(4)]
    assert writes.rollups == {(1, 3600, T): (4, 0), (1, 86400, T.replace(hour=0)): (4, 0)}
    assert writes.opened == [(10, 1, 100, T)]
    state, status = writes.states[1]
    assert status == MonitorStatus.ERROR and state.failure_run == 4


def test_two_missed_below_threshold_three_leave_the_environment_ok() -> None:
    env = _env(_config("* * * * *", failure_issue_threshold=3), T)
    decisions, _ = decide([MarkMissing(ts=_ts(T + 2 * M), monitor_environment_id=1)], {1: env}, {})
    writes = plan_writes(decisions, {1: env}, count(100))
    assert writes.opened == [] and writes.states[1][1] == MonitorStatus.OK


def test_a_broken_config_pushes_the_deadline_forward_instead_of_stopping_the_batch() -> None:
    # Until issue 11.5 this test asserted deadlines[1] == (None, None): the deadline was
    # cleared and the monitor never marked missed again. It now moves an hour past the tick.
    broken = _env('{"schedule_type": "crontab", "schedule": "not a crontab"}', T, env_id=1)
    healthy = _env(_config("* * * * *"), T, env_id=2)
    tasks = [MarkMissing(ts=_ts(T + M), monitor_environment_id=1), MarkMissing(ts=_ts(T + M), monitor_environment_id=2)]
    decisions, deadlines = decide(tasks, {1: broken, 2: healthy}, {})
    assert decisions == [DueMissed(2, T, T + M)]
    assert deadlines[1] == (T, T + M + UNSCHEDULABLE_RETRY)


def test_a_monitor_whose_schedule_cannot_be_computed_is_reported_once_per_due_deadline() -> None:
    broken = _env('{"schedule_type": "crontab", "schedule": "not a crontab"}', T)
    failures: list[Unschedulable] = []
    tasks = [MarkMissing(ts=_ts(T + M), monitor_environment_id=1), MarkMissing(ts=_ts(T + 2 * M), monitor_environment_id=1)]
    decisions, deadlines = decide(tasks, {1: broken}, {}, failures)
    assert decisions == [] and deadlines == {1: (T, T + M + UNSCHEDULABLE_RETRY)}
    assert [(f.env_id, f.tick, f.error_type) for f in failures] == [(1, T + M, "ConfigError")]
    assert "cannot be computed (schedule: crontab has 3 fields" in failures[0].reason
    pushed = _env('{"schedule_type": "crontab", "schedule": "not a crontab"}', T,
                  margin=int((M + UNSCHEDULABLE_RETRY) / M))
    later: list[Unschedulable] = []
    assert decide([MarkMissing(ts=_ts(T + 30 * M), monitor_environment_id=1)], {1: pushed}, {}, later) == ([], {})
    assert later == []  # not due again before the pushed deadline: no repeated error


def test_once_the_schedule_works_again_every_slot_since_the_kept_expected_time_is_missed() -> None:
    fixed = _env(_config("*/30 * * * *"), T, margin=int((M + UNSCHEDULABLE_RETRY) / M))
    tick = T + M + UNSCHEDULABLE_RETRY
    decisions, deadlines = decide([MarkMissing(ts=_ts(tick), monitor_environment_id=1)], {1: fixed}, {})
    assert decisions == [DueMissed(1, T + i * 30 * M, tick) for i in range(3)]  # 12:00, 12:30, 13:00
    assert deadlines[1] == (T + 90 * M, T + 91 * M)


def test_a_timeout_of_a_monitor_with_a_broken_config_counts_with_thresholds_of_one() -> None:
    env = _env('{"schedule_type": "crontab", "schedule": "not a crontab"}', None)
    decisions, _ = decide([MarkTimeout(ts=_ts(T + 30 * M), monitor_environment_id=1, checkin_id=5)],
                          {1: env}, {5: _in_progress(5, T)})
    writes = plan_writes(decisions, {1: env}, count(100))
    assert writes.timeouts == {5: T + 30 * M}
    assert writes.opened == [(10, 1, 5, T)]


def test_a_long_silence_is_caught_up_in_bounded_steps_without_skipping_a_slot() -> None:
    config = config_from_json(orjson.loads(_config("* * * * *")))
    first = missed_slots(config, T, T + M, T + 10 * M, limit=3)
    assert first is not None and first.slots == (T, T + M, T + 2 * M)
    second = missed_slots(config, first.next_checkin, first.next_checkin_latest, T + 10 * M, limit=3)
    assert second is not None and second.slots == (T + 3 * M, T + 4 * M, T + 5 * M)


def test_an_interval_monitor_misses_every_interval_since_its_deadline() -> None:
    config = config_from_json({"schedule_type": "interval", "schedule": [2, "hour"], "checkin_margin": 10})
    plan = missed_slots(config, T, T + 10 * M, T + 4 * 60 * M + 10 * M)
    assert plan is not None and plan.slots == (T, T + 120 * M, T + 240 * M)
    assert (plan.next_checkin, plan.next_checkin_latest) == (T + 360 * M, T + 370 * M)
