"""The incident-outbox insert's PostgreSQL cost per event, on a database kept by
``cronpipe bench clock --monitors 20000 --keep`` (its 20,000 ``opened`` events and their
check-ins, incidents and environments).

In one transaction, rolled back at the end: the kept outbox rows are deleted, then
``write_events`` is run again for the first N of their events, ``--rounds`` times per
variant (alternating, each in a savepoint). Reports the PostgreSQL backend's CPU (user +
system from /proc: the figure a loaded machine disturbs least) and the wall time, and
checks that every re-written payload equals the kept one (``date_created`` aside).
``--old FILE`` (repeatable) adds the outbox module of another commit as a variant
(``git show COMMIT:consumers/incidents/outbox.py > FILE``); ``--explain`` prints
EXPLAIN (ANALYZE, BUFFERS) of the current statement instead. PostgreSQL must run on this
machine (the backend's /proc entry is read).

Usage: ``python scripts/measure_outbox.py DATABASE_URL [--events 5000] [--rounds 6]
[--old FILE] [--explain]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from types import ModuleType
from typing import Any

import psycopg

from consumers.incidents import outbox

KEPT_EVENTS = """
SELECT i.monitor_environment_id, c.id, c.date_added, c.date_clock
  FROM incident_outbox o
  JOIN incidents i ON i.guid = (o.payload ->> 'incident_id')::uuid
  JOIN checkin_guids g ON g.guid = (o.payload ->> 'failed_checkin_id')::uuid
  JOIN checkins c ON c.id = g.checkin_id AND c.date_added = g.date_added
 WHERE o.payload ->> 'type' = 'opened'
 ORDER BY o.id LIMIT %s
"""
PAYLOADS = "SELECT event_id, payload - 'date_created' FROM incident_outbox"


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(path: str, n: int) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"outbox_other{n}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--old", action="append", default=[],
                        help="another commit's consumers/incidents/outbox.py (repeatable)")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    variants: dict[str, Any] = {os.path.basename(path): _load(path, n) for n, path in enumerate(args.old)}
    variants["current"] = outbox
    with psycopg.connect(args.url) as conn:
        conn.execute("SET jit = off")  # as on the worker's and the clock tasks' connections
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        rows = conn.execute(KEPT_EVENTS, (args.events,)).fetchall()
        kept = dict(conn.execute(PAYLOADS).fetchall())
        conn.execute("DELETE FROM incident_outbox")
        events = [outbox.OutboxEvent(env_id=r[0], type="opened", checkin_id=r[1], ts=r[2], tick=r[3]) for r in rows]
        if args.explain:  # the statement write_events sends, with the same parameters
            params = {"env_ids": [e.env_id for e in events], "types": [e.type for e in events],
                      "checkin_ids": [e.checkin_id for e in events], "ts": [e.ts for e in events],
                      "ticks": [e.tick for e in events], "ords": list(range(len(events))),
                      "held": [e.held for e in events],
                      "ts_min": min(e.ts for e in events), "ts_max": max(e.ts for e in events)}
            for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + outbox.WRITE_EVENTS, params):
                print(line)
            conn.rollback()
            return 0
        wall: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        identical = True
        for _ in range(args.rounds):
            for name, module in variants.items():
                conn.execute("SAVEPOINT s")
                c0, t0 = _cpu_s(pid), time.perf_counter()
                module.write_events(conn, events)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(_cpu_s(pid) - c0)
                identical &= all(kept[k] == p for k, p in conn.execute(PAYLOADS))
                conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.rollback()
    print(json.dumps({
        "events": len(events), "rounds": args.rounds, "identical_payloads": identical,
        "load_avg": round(os.getloadavg()[0], 2),
        **{name: {"pg_cpu_us_per_event": round(statistics.median(cpu[name]) * 1e6 / len(events), 1),
                  "wall_min_ms": round(min(wall[name]) * 1000, 1),
                  "wall_median_ms": round(statistics.median(wall[name]) * 1000, 1)} for name in variants}}))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
