"""`cronpipe bench NAME`: rerunnable benchmarks against the local stack.

Each benchmark is a module here exposing ``add_arguments(parser)`` and
``run(settings, args) -> int``; it prints its figures as JSON on stdout (and a
human-readable summary on stderr) so results can be pasted into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from schemas.settings import Settings

BENCHMARKS = {
    "pipeline": "end-to-end check-in throughput and produce→commit latency (issue: check-in processing)",
    "clock": "tick dispatch and MISSED/TIMEOUT marking for many monitors",
    "gateway": "HTTP ingest throughput and latency vs a do-nothing endpoint",
    "api": "read API stats (cached and not) and monitor list: requests/s, p50/p99 and CPU per request under 8 clients",
    "ceilings": "faust no-op agent vs confluent-kafka + handle_batch vs bare consumer on one topic",
    "batch": "the processor's batch stage by stage and statement by statement: Python and PostgreSQL CPU per message",
    "notify": "incidents → outbox → relay → notifier → webhook: mass-outage delivery time, commit→delivery at a steady rate",
    "delete": "ingestion-shaped writes while a monitor with 200,000 check-ins is deleted and purged",
    "retention": "partitioning: migration time, partition drop vs DELETE of a day, size of 10 M check-ins",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, help_ in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            module = importlib.import_module(f"cronpipe.bench.{name}")
        except ImportError:
            continue
        module.add_arguments(p)


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Apply pending migrations (idempotent), then run the benchmark: on a fresh database a
    benchmark would otherwise fail on its first INSERT with "relation ... does not exist"."""
    from schemas.migrate import apply_migrations

    applied = apply_migrations(settings.effective_database_url())
    if applied:
        print(f"bench: applied migrations {', '.join(applied)}", file=sys.stderr, flush=True)
    return int(load(args.bench).run(settings, args))


def load(name: str) -> ModuleType:
    """The benchmark module ``name`` (``add_arguments`` and ``run``)."""
    return importlib.import_module(f"cronpipe.bench.{name}")
