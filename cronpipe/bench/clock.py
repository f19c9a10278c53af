"""`cronpipe bench clock`: one tick whose deadline covers N monitors, timed to the last task.

Seeds N ``* * * * *`` monitors with COPY into a database of its own (all due at the same
minute), runs the clock's dispatch and task agents in-process on topics of its own, waits
until a warm-up tick is dispatched (so partition assignment is not timed), then produces
the tick and measures:

* ``dispatch_s``: tick produced → every task produced (dispatch offset stored);
* ``total_s``: tick produced → every task applied (N MISSED check-ins, rollups, incidents
  and offsets committed).

With ``--guard-ab`` it runs that measurement with the volume-anomaly guard off and on
(``CRONPIPE_VOLUME_GUARD`` 0/1, set per run), back to back at the same scale, each on a
fresh database with 31 days of steady volume history (so the guard's decision reads real
rows and the tick is NORMAL), and prints both figures and the ratio (issue 14's "≤ 10 %").

With ``--under-load`` it measures instead how late MISSED is written while the pipeline
carries a steady check-in load (see :func:`run_under_load`).

Waiting has no fixed deadline: a run fails only when no task was applied for
``--stall-timeout`` seconds (a loaded machine is slow, not stuck); progress goes to stderr.

The database and topics are dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from cronpipe.bench.clock_database import create_database, drop, scalar
from cronpipe.bench.clock_under_load import run_under_load
from cronpipe.probes import high_watermarks
from cronpipe.seeding import seed_monitors
from schemas.argtypes import positive_float, positive_int
from schemas.enums import CheckInStatus
from schemas.settings import Settings

UTC = timezone.utc
MISSED = int(CheckInStatus.MISSED)
#: An arbitrary minute in the past: the benchmark drives the clock itself.
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--monitors", type=positive_int, default=100_000, help="monitors due at the tick (default 100000)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and topics")
    parser.add_argument("--guard-ab", action="store_true",
                        help="run with the volume guard off, then on (CRONPIPE_VOLUME_GUARD=0/1), same scale, "
                             "and print both and the ratio (issue 14)")
    parser.add_argument("--rounds", type=positive_int, default=1,
                        help="--guard-ab: off/on pairs, alternating, medians reported (default 1)")
    parser.add_argument("--stall-timeout", type=positive_float, default=120.0,
                        help="give up when no tick or task progressed for this many seconds (default 120)")
    parser.add_argument("--under-load", action="store_true",
                        help="instead: ticks from next_checkin_latest to MISSED under a check-in load (issue 4)")
    parser.add_argument("--load-monitors", type=positive_int, default=10_000,
                        help="--under-load: '* * * * *' monitors checking in every message minute (default 10000)")
    parser.add_argument("--rate", type=positive_float, default=3_000.0,
                        help="--under-load: check-ins/s offered (wall); sets the time compression (default 3000)")
    parser.add_argument("--minutes", type=positive_int, default=24,
                        help="--under-load: message minutes of load after the warm-up (default 24)")
    parser.add_argument("--silent", type=positive_int, default=4,
                        help="--under-load: monitors that stop checking in after the warm-up (default 4)")


def _seed(url: str, monitors: int) -> float:
    from cronpipe.admin import create_org, create_project

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        create_org(conn, "bench")
        create_project(conn, "bench", "clock", project_id=1)
        with conn.transaction():
            seed_monitors(conn, monitors, next_checkin=T0)
        # The MISSED rows' day partition exists before the tick, as in production, where the
        # maintenance creates the days ahead: created by the first task batch instead, it made
        # the other task consumer's first batch wait for that whole transaction (its advisory
        # lock and the new partition's lock are held until commit).
        conn.execute("SELECT cronpipe_ensure_checkins_partitions(%(days)s::date[])", {"days": [T0.date()]})
        conn.execute("ANALYZE monitors")
        conn.execute("ANALYZE monitor_environments")
    return time.perf_counter() - started


STORED = "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %s AND topic = %s"


def _stored(url: str, group: str, topic: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return {int(p): int(o) for p, o in conn.execute(STORED, (group, topic))}


class _Progress:
    """How far a wait got: fails after ``stall_s`` seconds without a change, reports every 5 s."""

    def __init__(self, stall_s: float, report: Any) -> None:
        self.stall_s = stall_s
        self.report = report
        self.started = self.moved = self.reported = time.monotonic()
        self.done = -1

    def check(self, done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if done != self.done:
            self.done, self.moved = done, now
        elif now - self.moved > self.stall_s:
            raise TimeoutError(f"{what}: {done} of {total} consumed, no progress for {self.stall_s:.0f} s")
        if self.report is not None and now - self.reported >= 5.0:
            self.report(done, total, now - self.started)
            self.reported = now


async def _until_stored(url: str, group: str, topic: str, wanted: dict[int, int], stall_s: float,
                        report: Any = None) -> None:
    """Wait until the stored offsets reach ``wanted``; raise TimeoutError only when they
    did not move for ``stall_s`` seconds. ``report(done, total, elapsed)`` every 5 s."""
    total = sum(wanted.values())
    progress = _Progress(stall_s, report)
    with psycopg.connect(url, autocommit=True) as conn:  # one connection: polling must not load the box
        while True:
            stored = {int(p): int(o) for p, o in conn.execute(STORED, (group, topic))}
            done = sum(min(stored.get(p, 0), o) for p, o in wanted.items())
            if done >= total:
                return
            progress.check(done, total, topic)
            await asyncio.sleep(0.05)


async def _measure(settings: Settings, topics: Any, url: str, *, guard: bool | None = None,
                   stall_s: float = 120.0, label: str = "") -> dict[str, float]:
    from confluent_kafka import Producer

    from consumers.context import build_context, close_context
    from consumers.worker import running_app
    from schemas.clock import encode_clock_tick, encode_mark_missing

    bench_settings = Settings(kafka_bootstrap=settings.kafka_bootstrap, database_url=url,
                              topic_prefix=topics.prefix)
    if guard is not None:
        bench_settings = dataclasses.replace(bench_settings, volume_guard=guard)
    ctx = build_context(bench_settings, topics, consumer_group=f"{topics.prefix}cronpipe")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    group = ctx.consumer_group
    try:
        async with running_app(ctx, ["clock_tasks"]):
            # Warm-up, so group assignment and connections are not timed: a tick with nothing
            # due, and a task for an environment that does not exist on every task partition.
            producer.produce(topics.clock_tick, value=encode_clock_tick(int(T0.timestamp())))
            for partition in range(8):
                producer.produce(topics.clock_tasks, partition=partition,
                                 value=encode_mark_missing(int(T0.timestamp()), 10**12 + partition))
            producer.flush(10)
            await _until_stored(url, group, topics.clock_tick, {0: 1}, stall_s)
            await _until_stored(url, group, topics.clock_tasks, {p: 1 for p in range(8)}, stall_s)
            producer.produce(topics.clock_tick, value=encode_clock_tick(int((T0 + timedelta(minutes=1)).timestamp())))
            producer.flush(10)
            started = time.perf_counter()
            await _until_stored(url, group, topics.clock_tick, {0: 2}, stall_s)
            dispatched = time.perf_counter() - started
            await _until_stored(url, group, topics.clock_tasks,
                                high_watermarks(settings.kafka_bootstrap, topics.clock_tasks), stall_s,
                                functools.partial(_report, label))
            total = time.perf_counter() - started
    finally:
        close_context(ctx)
    return {"dispatch_s": round(dispatched, 2), "total_s": round(total, 2)}


def _report(label: str, done: int, total: int, elapsed: float) -> None:
    print(f"bench clock{label}: {done:,} of {total:,} tasks applied after {elapsed:.0f} s", file=sys.stderr)


def _seed_volume_history(url: str) -> None:
    """31 days of 1,000 check-ins a minute up to the measured tick's minute: the guard's
    decision then reads a full baseline and finds the tick NORMAL (same writes either way)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO checkin_volume (minute, count) SELECT g, 1000 FROM generate_series("
                     "%s::timestamptz, %s::timestamptz, '1 minute') g", (T0 - timedelta(days=31), T0 + timedelta(minutes=1)))
        conn.execute("ANALYZE checkin_volume")


def _run_once(settings: Settings, args: argparse.Namespace, guard: bool | None = None) -> dict[str, Any]:
    """One measured tick on a database and topics of its own (dropped unless ``--keep``)."""
    from schemas.topics import Topics, ensure_topics

    topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}-", ingest_partitions=8)
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    url = create_database(settings)
    label = "" if guard is None else f" [guard {'on' if guard else 'off'}]"
    load_before = round(os.getloadavg()[0], 2)
    try:
        seed_s = _seed(url, args.monitors)
        if guard is not None:
            _seed_volume_history(url)
        figures = asyncio.run(_measure(settings, topics, url, guard=guard, stall_s=args.stall_timeout, label=label))
        with psycopg.connect(url) as conn:
            missed = scalar(conn.execute(f"SELECT count(*) FROM checkins WHERE status = {MISSED}"))
            rolled = scalar(conn.execute("SELECT coalesce(sum(missed), 0) FROM checkin_rollups WHERE resolution = 3600"))
            decisions = scalar(conn.execute("SELECT count(*) FROM clock_volume_decisions"))
    finally:
        if not args.keep:
            drop(settings, url, [t.name for t in topics.specs()])
    print(f"clock{label}: {args.monitors} monitors due at one tick: dispatched in {figures['dispatch_s']} s, "
          f"all tasks applied in {figures['total_s']} s ({missed} MISSED written)", file=sys.stderr)
    return {"seed_s": round(seed_s, 2), **figures, "missed_written": int(missed), "rollup_missed": int(rolled),
            "tasks_per_s": round(args.monitors / figures["total_s"], 0) if figures["total_s"] else None,
            "volume_decisions": int(decisions), "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2)}


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.under_load:
        return run_under_load(settings, args)
    if args.guard_ab:
        return run_guard_ab(settings, args)
    result = {"benchmark": "clock", "monitors": args.monitors, **_run_once(settings, args),
              "date": datetime.now(UTC).isoformat(timespec="seconds")}
    print(json.dumps(result))
    return 0 if result["missed_written"] == args.monitors else 1


def _ratio(on: float, off: float) -> float | None:
    return round(on / off, 3) if off else None


def run_guard_ab(settings: Settings, args: argparse.Namespace) -> int:
    """``--guard-ab``: off, on (× ``--rounds``, alternating), same scale; medians and ratios."""
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        for guard in (False, True):
            print(f"bench clock --guard-ab: round {round_no + 1}/{args.rounds}, guard {'on' if guard else 'off'}"
                  f" (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
            runs.append({"guard": guard, **_run_once(settings, args, guard)})
    off = [r for r in runs if not r["guard"]]
    on = [r for r in runs if r["guard"]]
    summary = {kind: {key: statistics.median(r[key] for r in side) for key in ("dispatch_s", "total_s")}
               for kind, side in (("guard_off", off), ("guard_on", on))}
    ratio = _ratio(summary["guard_on"]["total_s"], summary["guard_off"]["total_s"])
    result = {"benchmark": "clock --guard-ab", "monitors": args.monitors, "rounds": args.rounds, **summary,
              "ratio_total": ratio,
              "ratio_dispatch": _ratio(summary["guard_on"]["dispatch_s"], summary["guard_off"]["dispatch_s"]),
              "added_pct": None if ratio is None else round((ratio - 1) * 100, 1), "runs": runs,
              "date": datetime.now(UTC).isoformat(timespec="seconds")}
    print(json.dumps(result))
    print(f"clock --guard-ab, {args.monitors} monitors, {args.rounds} round(s): all tasks applied in "
          f"{summary['guard_off']['total_s']} s with the guard off, {summary['guard_on']['total_s']} s on "
          f"(ratio {ratio}, {result['added_pct']} %; target ≤ 10 %); dispatch "
          f"{summary['guard_off']['dispatch_s']} s vs {summary['guard_on']['dispatch_s']} s", file=sys.stderr)
    complete = all(r["missed_written"] == args.monitors for r in runs)
    decided = all((r["volume_decisions"] > 0) == r["guard"] for r in runs)
    return 0 if complete and decided else 1
