"""PostgreSQL for the volume-anomaly guard: volume per minute, decisions per tick, and the
release or undo of what a pending tick held (see ``consumers.clock.volume`` and
docs/clock.md "The volume-anomaly guard").

Every function runs in the caller's transaction. Locks: the tick dispatch writes (and
resolves) decision rows; a task batch reads the decision of its ticks ``FOR SHARE``, so
a resolution that updates those rows waits for the batch to commit, and its following
statements then see the batch's held rows (nothing held is left behind a resolution).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from consumers.clock.volume import (
    Decision,
    Metric,
    Transition,
    UndoneFailure,
    classify,
    next_decision,
    pct_deviation,
    recount_run,
)
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from consumers.incidents.outbox import OutboxEvent
from consumers.rollups import ADD_ROLLUPS, ROLLUP_RESOLUTIONS, bucket_start
from schemas.enums import CheckInStatus, MonitorStatus

Conn = psycopg.Connection[Any]

MINUTE: Final = timedelta(minutes=1)
DAY: Final = timedelta(days=1)
#: Baseline days, and how long volume and decisions are kept.
HISTORY_DAYS: Final = 30

RECORD_VOLUME = """
INSERT INTO checkin_volume AS v (minute, count)
SELECT * FROM unnest(%(minutes)b::timestamptz[], %(counts)b::bigint[])
ON CONFLICT (minute) DO UPDATE SET count = v.count + EXCLUDED.count
"""

LOAD_VOLUMES = "SELECT minute, count FROM checkin_volume WHERE minute = ANY(%(minutes)b::timestamptz[])"

LOAD_DECISION = "SELECT decision FROM clock_volume_decisions WHERE tick = %(tick)s::timestamptz"

LOAD_RECENT = """
SELECT tick, metric, decision FROM clock_volume_decisions
 WHERE tick < %(tick)s::timestamptz ORDER BY tick DESC LIMIT %(n)s
"""

INSERT_DECISION = """
INSERT INTO clock_volume_decisions (tick, metric, pct_deviation, decision)
VALUES (%(tick)s::timestamptz, %(metric)s::text, %(pct)s::float8, %(decision)s::text)
ON CONFLICT (tick) DO NOTHING
"""

# The pending run before a tick: the unresolved abnormal/recovering ticks after the
# newest settled (normal or incident) one.
RESOLVE_RUN = """
UPDATE clock_volume_decisions d
   SET resolved = %(resolved)s::text,
       decision = CASE WHEN %(resolved)s::text = 'incident' THEN 'incident' ELSE d.decision END
 WHERE d.tick < %(tick)s::timestamptz AND d.resolved IS NULL AND d.decision IN ('abnormal', 'recovering')
   AND d.tick > coalesce((SELECT max(s.tick) FROM clock_volume_decisions s
                           WHERE s.tick < %(tick)s::timestamptz AND s.decision IN ('normal', 'incident')),
                         '-infinity'::timestamptz)
RETURNING d.tick
"""

# The incident window that ends at a recovery: every tick since the newest normal one.
INCIDENT_WINDOW = """
SELECT tick FROM clock_volume_decisions
 WHERE tick < %(tick)s::timestamptz
   AND tick > coalesce((SELECT max(tick) FROM clock_volume_decisions
                         WHERE tick < %(tick)s::timestamptz
                           AND (decision = 'normal' OR resolved = 'normal')), '-infinity'::timestamptz)
"""

DROP_VOLUMES = "DELETE FROM checkin_volume WHERE minute = ANY(%(minutes)b::timestamptz[])"

LOCK_DECISIONS = """
SELECT tick, decision, resolved FROM clock_volume_decisions
 WHERE tick = ANY(%(ticks)b::timestamptz[]) ORDER BY tick FOR SHARE
"""

HOLD = """
INSERT INTO clock_volume_held (tick, checkin_id, monitor_environment_id, run_start_id)
SELECT * FROM unnest(%(ticks)b::timestamptz[], %(ids)b::bigint[], %(env_ids)b::bigint[], %(run_starts)b::bigint[])
ON CONFLICT DO NOTHING
"""

# A resolution locks the environments of its held rows (id order, as every writer does)
# before it reads or changes anything of theirs: a processor batch on one of them has
# then committed (its events, held because of these rows, are visible to the statements
# that follow), or starts after the commit and finds the rows gone.
LOCK_HELD_ENVIRONMENTS = """
SELECT me.id FROM monitor_environments me
 WHERE me.id IN (SELECT h.monitor_environment_id FROM clock_volume_held h
                  WHERE h.tick = ANY(%(ticks)b::timestamptz[]))
 ORDER BY me.id
   FOR UPDATE OF me
"""

RELEASE_OUTBOX = "UPDATE incident_outbox SET held = false WHERE held AND tick = ANY(%(ticks)b::timestamptz[])"
FORGET_HELD = """
DELETE FROM clock_volume_held WHERE tick = ANY(%(ticks)b::timestamptz[])
RETURNING checkin_id, monitor_environment_id, run_start_id
"""

# The held failures become UNKNOWN; the old status comes back for the rollups.
UNKNOWN_HELD = f"""
UPDATE checkins c SET status = {int(CheckInStatus.UNKNOWN)}
  FROM (SELECT h.id, h.status FROM unnest(%(ids)b::bigint[]) AS u (id) JOIN checkins h ON h.id = u.id
         WHERE h.status IN ({int(CheckInStatus.MISSED)}, {int(CheckInStatus.TIMEOUT)})
         ORDER BY h.id FOR UPDATE OF h) o
 WHERE c.id = o.id
RETURNING c.id, c.monitor_environment_id, o.status, c.date_added, c.guid
"""

# Moving a count between columns is the signed rollup upsert the clock tasks use (consumers/rollups.py).
MOVE_ROLLUPS = ADD_ROLLUPS

# Incidents that only existed because of the held failures: started by a held failure, or
# opened in a back-dated tick (their "opened" event is held there; for one opened by a
# job's result while the environment had held failures, too). Open or resolved since:
# none of their events has been sent, and none will be. Joins, not "= ANY(array)": a mass
# back-dating names every silent monitor.
UNDO_INCIDENTS = """
WITH gone AS (
    SELECT i.id FROM incidents i JOIN unnest(%(ids)b::bigint[]) AS u (id) ON i.starting_checkin_id = u.id
    UNION
    SELECT i.id FROM incident_outbox o JOIN incidents i ON i.guid = (o.payload ->> 'incident_id')::uuid
     WHERE o.held AND o.tick = ANY(%(ticks)b::timestamptz[]) AND o.payload ->> 'type' = 'opened'
)
DELETE FROM incidents i USING gone WHERE i.id = gone.id
RETURNING i.guid
"""

# Events of the removed incidents and events caused by the held failures are dropped;
# what is left in the ticks (events of jobs' own results that waited for the
# environment's held failures) is released by RELEASE_OUTBOX afterwards.
DROP_EVENTS_OF_INCIDENTS = """
DELETE FROM incident_outbox o USING unnest(%(guids)s::text[]) AS r (guid)
 WHERE o.held AND o.tick = ANY(%(ticks)b::timestamptz[]) AND o.payload ->> 'incident_id' = r.guid
"""
DROP_EVENTS_OF_CHECKINS = """
DELETE FROM incident_outbox o USING unnest(%(guids)s::text[]) AS r (guid)
 WHERE o.held AND o.tick = ANY(%(ticks)b::timestamptz[]) AND o.payload ->> 'failed_checkin_id' = r.guid
"""

LOAD_RUNS = """
SELECT me.id, me.monitor_id, me.failure_run, me.failure_run_start_id, me.failure_run_start_at,
       greatest(coalesce((m.config ->> 'failure_issue_threshold')::integer, 1), 1),
       EXISTS (SELECT 1 FROM incidents i WHERE i.monitor_environment_id = me.id AND i.resolving_timestamp IS NULL)
  FROM unnest(%(env_ids)b::bigint[]) AS u (id)
  JOIN monitor_environments me ON me.id = u.id JOIN monitors m ON m.id = me.monitor_id
 ORDER BY me.id
"""

_FAILED = f"{int(CheckInStatus.ERROR)}, {int(CheckInStatus.MISSED)}, {int(CheckInStatus.TIMEOUT)}"

# The new first check-in of a run whose first one was undone: the oldest failure left
# since it; else (a failure dated before it, as a TIMEOUT of a long job is) the newest.
NEW_RUN_STARTS = f"""
SELECT u.env_id, coalesce(f.id, n.id), coalesce(f.date_added, n.date_added)
  FROM unnest(%(env_ids)b::bigint[], %(after)b::timestamptz[]) AS u (env_id, after)
  LEFT JOIN LATERAL (
       SELECT c.id, c.date_added FROM checkins c
        WHERE c.monitor_environment_id = u.env_id AND c.status IN ({_FAILED}) AND c.date_added >= u.after
        ORDER BY c.date_added, c.id LIMIT 1) f ON true
  LEFT JOIN LATERAL (
       SELECT c.id, c.date_added FROM checkins c
        WHERE c.monitor_environment_id = u.env_id AND c.status IN ({_FAILED})
        ORDER BY c.date_added DESC, c.id DESC LIMIT 1) n ON true
"""

NEWEST_FAILURES = f"""
SELECT u.env_id, f.id, f.date_added
  FROM unnest(%(env_ids)b::bigint[]) AS u (env_id)
 CROSS JOIN LATERAL (
       SELECT c.id, c.date_added FROM checkins c
        WHERE c.monitor_environment_id = u.env_id AND c.status IN ({_FAILED})
        ORDER BY c.date_added DESC, c.id DESC LIMIT 1) f
"""

# Runs and status (ERROR while an incident is open, OK otherwise, as
# consumers.incidents.rules has it) in one pass, joined on the ids (not "= ANY(array)").
SAVE_RUNS = f"""
UPDATE monitor_environments me
   SET failure_run = u.run, failure_run_start_id = u.start_id, failure_run_start_at = u.start_at,
       status = CASE WHEN u.open THEN {int(MonitorStatus.ERROR)}
                     WHEN me.status = {int(MonitorStatus.ERROR)} THEN {int(MonitorStatus.OK)}
                     ELSE me.status END
  FROM unnest(%(env_ids)b::bigint[], %(runs)b::integer[], %(start_ids)b::bigint[], %(start_ats)b::timestamptz[],
              %(opens)b::boolean[])
       AS u (id, run, start_id, start_at, open)
 WHERE me.id = u.id
"""

PRUNE = """
WITH v AS (DELETE FROM checkin_volume WHERE minute < %(before)s::timestamptz)
DELETE FROM clock_volume_decisions WHERE tick < %(before)s::timestamptz
"""

RECENT_DECISIONS = """
SELECT tick, decision, metric, pct_deviation, resolved FROM clock_volume_decisions
 WHERE tick >= %(since)s::timestamptz ORDER BY tick
"""


def record_volume(conn: Conn, counts: Mapping[datetime, int]) -> None:
    """Add accepted check-ins per message minute (one statement for the whole batch)."""
    minutes = sorted(m for m, n in counts.items() if n)
    if minutes:
        conn.execute(RECORD_VOLUME, {"minutes": minutes, "counts": [counts[m] for m in minutes]})


@dataclass(frozen=True)
class TickDecision:
    tick: datetime
    decision: Decision
    pct_deviation: float | None
    metric: Metric


def _evaluate(conn: Conn, tick: datetime, abnormal_pct: float, incident_pct: float) -> tuple[Metric, float | None]:
    minute = tick - MINUTE
    baseline = [minute - DAY * k for k in range(1, HISTORY_DAYS + 1)]
    volumes = {m: int(n) for m, n in conn.execute(LOAD_VOLUMES, {"minutes": [minute, *baseline]})}
    history = [volumes[m] for m in baseline if m in volumes]
    pct = pct_deviation(volumes.get(minute, 0), history)
    return classify(pct, abnormal_pct, incident_pct), pct


def decide_tick(conn: Conn, tick: datetime, *, abnormal_pct: float, incident_pct: float) -> Decision:
    """The decision of ``tick``: the stored one (a redelivered tick), else evaluated,
    stored, and its transition applied (back-dating, releasing, dropping volume)."""
    row = conn.execute(LOAD_DECISION, {"tick": tick}).fetchone()
    if row is not None:
        return Decision(row[0])
    metric, pct = _evaluate(conn, tick, abnormal_pct, incident_pct)
    recent = conn.execute(LOAD_RECENT, {"tick": tick, "n": 4}).fetchall()
    previous = Decision(recent[0][2]) if recent else Decision.NORMAL
    window = [Metric(r[1] or "normal") for r in reversed(recent)] + [metric]
    transition = next_decision(previous, window)
    conn.execute(INSERT_DECISION, {"tick": tick, "metric": metric.value if pct is not None else None,
                                   "pct": pct, "decision": transition.decision.value})
    apply_transition(conn, tick, transition)
    prune(conn, tick)  # an index range delete of about one row per table and tick
    return transition.decision


def apply_transition(conn: Conn, tick: datetime, transition: Transition) -> None:
    if transition.recovered:  # before the run is marked resolved: the window ends at the last normal tick
        window = [r[0] for r in conn.execute(INCIDENT_WINDOW, {"tick": tick})]
        conn.execute(DROP_VOLUMES, {"minutes": [t - MINUTE for t in window]})
    if transition.backdate:
        ticks = [r[0] for r in conn.execute(RESOLVE_RUN, {"tick": tick, "resolved": "incident"})]
        undo_held(conn, ticks)
    elif transition.release:
        ticks = [r[0] for r in conn.execute(RESOLVE_RUN, {"tick": tick, "resolved": "normal"})]
        release_held(conn, ticks)


def release_held(conn: Conn, ticks: Sequence[datetime]) -> None:
    """The held failures of ``ticks`` were real: their events (and those of jobs' results
    that waited for them) go to the relay, in the order they were written."""
    if ticks:
        conn.execute(LOCK_HELD_ENVIRONMENTS, {"ticks": list(ticks)})
        conn.execute(FORGET_HELD, {"ticks": list(ticks)})
        conn.execute(RELEASE_OUTBOX, {"ticks": list(ticks)})


def undo_held(conn: Conn, ticks: Sequence[datetime]) -> None:
    """The held failures of ``ticks`` were the system's, not the jobs': they become
    UNKNOWN (rollups moved), the incidents that existed only because of them are removed
    with their events, the failure runs they were counted in are recounted, and an
    environment whose remaining failures still reach its threshold opens its incident
    from them (with an ``opened`` event). Nothing they caused is ever sent."""
    if not ticks:
        return
    params = {"ticks": list(ticks)}
    env_ids = [int(r[0]) for r in conn.execute(LOCK_HELD_ENVIRONMENTS, params)]
    undone: dict[int, list[UndoneFailure]] = {}
    for checkin_id, env_id, run_start_id in conn.execute(FORGET_HELD, params):
        undone.setdefault(int(env_id), []).append(UndoneFailure(int(checkin_id), run_start_id))
    ids = [u.checkin_id for failures in undone.values() for u in failures]
    changed = conn.execute(UNKNOWN_HELD, {"ids": ids}).fetchall() if ids else []
    move_rollups(conn, [(int(env), CheckInStatus(old), added) for _id, env, old, added, _guid in changed])
    removed = [str(r[0]) for r in conn.execute(UNDO_INCIDENTS, {**params, "ids": ids})]
    conn.execute(DROP_EVENTS_OF_INCIDENTS, {**params, "guids": removed})
    conn.execute(DROP_EVENTS_OF_CHECKINS, {**params, "guids": [str(r[4]) for r in changed]})
    conn.execute(RELEASE_OUTBOX, params)
    recount_runs(conn, env_ids, undone)


@dataclass(frozen=True)
class _Run:
    """An environment's failure run as stored, with what deciding an incident needs."""

    env_id: int
    monitor_id: int
    failure_run: int
    start_id: int | None
    start_at: datetime | None
    threshold: int
    open_incident: bool


def recount_runs(conn: Conn, env_ids: Sequence[int], undone: Mapping[int, Sequence[UndoneFailure]]) -> None:
    """Take each environment's undone failures off the run they were counted in
    (``volume.recount_run``), open the incidents the remaining failures call for, and
    save runs and status."""
    runs = [_Run(*r) for r in conn.execute(LOAD_RUNS, {"env_ids": list(env_ids)})]
    recounted = {r.env_id: recount_run(r.failure_run, r.start_id, undone.get(r.env_id, ())) for r in runs}
    moved = [r for r in runs if recounted[r.env_id][1]]
    starts = {int(e): (i, at) for e, i, at in conn.execute(NEW_RUN_STARTS, {
        "env_ids": [r.env_id for r in moved], "after": [r.start_at for r in moved]})} if moved else {}
    saved: list[_Run] = []
    for r in runs:
        length, new_start = recounted[r.env_id]
        start_id, start_at = starts.get(r.env_id, (None, None)) if new_start else (r.start_id, r.start_at)
        if length == 0 or start_id is None:
            length, start_id, start_at = 0, None, None
        saved.append(_Run(r.env_id, r.monitor_id, length, start_id, start_at, r.threshold,
                          r.open_incident or length >= r.threshold))
    reopen_incidents(conn, [s for s, r in zip(saved, runs, strict=True) if s.open_incident and not r.open_incident])
    conn.execute(SAVE_RUNS, {"env_ids": [r.env_id for r in saved], "runs": [r.failure_run for r in saved],
                             "start_ids": [r.start_id for r in saved], "start_ats": [r.start_at for r in saved],
                             "opens": [r.open_incident for r in saved]})


def reopen_incidents(conn: Conn, runs: Sequence[_Run]) -> None:
    """Incidents that the failures left after an undo still reach: opened from the run's
    first failure; the ``opened`` event is caused by the newest one (and lists them all)."""
    if not runs:
        return
    incident_store.open_incidents(conn, [(r.monitor_id, r.env_id, r.start_id, r.start_at) for r in runs
                                         if r.start_at is not None])
    causes = conn.execute(NEWEST_FAILURES, {"env_ids": [r.env_id for r in runs]}).fetchall()
    outbox.write_events(conn, [OutboxEvent(int(env), "opened", int(i), at) for env, i, at in causes])


def move_rollups(conn: Conn, moved: Iterable[tuple[int, CheckInStatus, datetime]]) -> None:
    """Each (env, old status, date_added): one count from missed/timeout to unknown."""
    counts: dict[tuple[int, int, datetime], list[int]] = {}
    for env_id, old, added in moved:
        for resolution in ROLLUP_RESOLUTIONS:
            row = counts.setdefault((env_id, resolution, bucket_start(added, resolution)), [0, 0, 0])
            row[0 if old == CheckInStatus.MISSED else 1] -= 1
            row[2] += 1
    if not counts:
        return
    keys = sorted(counts)
    conn.execute(MOVE_ROLLUPS, {
        "env_ids": [k[0] for k in keys], "resolutions": [k[1] for k in keys], "buckets": [k[2] for k in keys],
        "missed": [counts[k][0] for k in keys], "timeout": [counts[k][1] for k in keys],
        "unknown": [counts[k][2] for k in keys]})


def lock_decisions(conn: Conn, ticks: Iterable[datetime]) -> dict[datetime, Decision]:
    """The effective decision of each tick a task batch handles, locked against its
    resolution until the batch commits: a resolved pending tick counts as what it
    resolved to. Ticks without a row (guard off, or older than the guard) are NORMAL."""
    wanted = sorted(set(ticks))
    if not wanted:
        return {}
    found = {t: Decision(resolved or decision)
             for t, decision, resolved in conn.execute(LOCK_DECISIONS, {"ticks": wanted})}
    return {t: found.get(t, Decision.NORMAL) for t in wanted}


def hold(conn: Conn, held: Sequence[tuple[datetime, int, int, int | None]]) -> None:
    """Remember (tick, check-in id, env id, first check-in of the failure run it was
    counted in) of synthetic failures written in a pending tick."""
    if held:
        conn.execute(HOLD, {"ticks": [h[0] for h in held], "ids": [h[1] for h in held],
                            "env_ids": [h[2] for h in held], "run_starts": [h[3] for h in held]})


def prune(conn: Conn, tick: datetime) -> None:
    """Forget volume and decisions older than the baseline needs (message time)."""
    conn.execute(PRUNE, {"before": tick - DAY * (HISTORY_DAYS + 1)})


def recent_decisions(conn: Conn, since: datetime) -> list[dict[str, Any]]:
    return [{"tick": t.isoformat(), "decision": d, "metric": m, "pct_deviation": p, "resolved": r}
            for t, d, m, p, r in conn.execute(RECENT_DECISIONS, {"since": since})]
