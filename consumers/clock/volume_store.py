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

from consumers.clock.volume import Decision, Metric, Transition, classify, next_decision, pct_deviation
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
INSERT INTO clock_volume_held (tick, checkin_id, monitor_environment_id)
SELECT * FROM unnest(%(ticks)b::timestamptz[], %(ids)b::bigint[], %(env_ids)b::bigint[])
ON CONFLICT DO NOTHING
"""

RELEASE_OUTBOX = "UPDATE incident_outbox SET held = false WHERE held AND tick = ANY(%(ticks)b::timestamptz[])"
DELETE_HELD_OUTBOX = "DELETE FROM incident_outbox WHERE held AND tick = ANY(%(ticks)b::timestamptz[])"
FORGET_HELD = "DELETE FROM clock_volume_held WHERE tick = ANY(%(ticks)b::timestamptz[]) RETURNING checkin_id"

# The held failures become UNKNOWN; the old status comes back for the rollups.
UNKNOWN_HELD = f"""
UPDATE checkins c SET status = {int(CheckInStatus.UNKNOWN)}
  FROM (SELECT id, status FROM checkins WHERE id = ANY(%(ids)b::bigint[])
           AND status IN ({int(CheckInStatus.MISSED)}, {int(CheckInStatus.TIMEOUT)})
         ORDER BY id FOR UPDATE) o
 WHERE c.id = o.id
RETURNING c.id, c.monitor_environment_id, o.status, c.date_added
"""

# Moving a count between columns is the clock's own signed rollup upsert (clock/store.py).
MOVE_ROLLUPS = ADD_ROLLUPS

# Incidents the held failures opened never happened: delete the open ones they started,
# and put their environments back to OK with no failure run.
UNDO_INCIDENTS = """
DELETE FROM incidents WHERE resolving_timestamp IS NULL AND starting_checkin_id = ANY(%(ids)b::bigint[])
RETURNING monitor_environment_id
"""
RESET_RUNS = f"""
UPDATE monitor_environments SET failure_run = 0, failure_run_start_id = NULL, failure_run_start_at = NULL,
       status = CASE WHEN id = ANY(%(reopened)b::bigint[]) THEN {int(MonitorStatus.OK)} ELSE status END
 WHERE id = ANY(%(env_ids)b::bigint[]) AND (failure_run_start_id = ANY(%(ids)b::bigint[])
       OR id = ANY(%(reopened)b::bigint[]))
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
    if ticks:
        conn.execute(RELEASE_OUTBOX, {"ticks": list(ticks)})
        conn.execute(FORGET_HELD, {"ticks": list(ticks)})


def undo_held(conn: Conn, ticks: Sequence[datetime]) -> None:
    """The held failures of ``ticks`` were the system's, not the jobs': nothing is sent,
    they become UNKNOWN (rollups moved), and the incidents they opened are removed."""
    if not ticks:
        return
    conn.execute(DELETE_HELD_OUTBOX, {"ticks": list(ticks)})
    ids = [int(r[0]) for r in conn.execute(FORGET_HELD, {"ticks": list(ticks)})]
    if not ids:
        return
    changed = conn.execute(UNKNOWN_HELD, {"ids": ids}).fetchall()
    move_rollups(conn, [(int(env), CheckInStatus(old), added) for _id, env, old, added in changed])
    reopened = sorted({int(r[0]) for r in conn.execute(UNDO_INCIDENTS, {"ids": ids})})
    env_ids = sorted({int(r[1]) for r in changed} | set(reopened))
    conn.execute(RESET_RUNS, {"ids": ids, "env_ids": env_ids, "reopened": reopened})


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


def hold(conn: Conn, held: Sequence[tuple[datetime, int, int]]) -> None:
    """Remember (tick, check-in id, env id) of synthetic failures written in a pending tick."""
    if held:
        conn.execute(HOLD, {"ticks": [h[0] for h in held], "ids": [h[1] for h in held],
                            "env_ids": [h[2] for h in held]})


def prune(conn: Conn, tick: datetime) -> None:
    """Forget volume and decisions older than the baseline needs (message time)."""
    conn.execute(PRUNE, {"before": tick - DAY * (HISTORY_DAYS + 1)})


def recent_decisions(conn: Conn, since: datetime) -> list[dict[str, Any]]:
    return [{"tick": t.isoformat(), "decision": d, "metric": m, "pct_deviation": p, "resolved": r}
            for t, d, m, p, r in conn.execute(RECENT_DECISIONS, {"since": since})]
