"""`cronpipe loadgen`: synthetic check-in producers writing to ``ingest-monitors``.

N monitors × E environments report check-ins at a target rate (or as fast as the
producer goes): single-shot ``ok``/``error`` check-ins and ``in_progress`` → ``ok``
pairs, the closing half sent ``--pair-delay`` seconds later. The first check-in of each
monitor carries its ``monitor_config`` (so the processor creates it). A progress line
goes to stderr every second; a JSON summary to stdout at the end.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.producer import CheckInProducer, ProducerQueueFull
from schemas.argtypes import non_negative_float, non_negative_int, positive_int, ratio
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

MONITOR_CONFIG = {"schedule": {"type": "crontab", "value": "*/5 * * * *"}, "checkin_margin": 5,
                  "max_runtime": 30}
#: Throughput-oriented producer settings (the defaults favour latency).
PRODUCER_CONFIG = {"linger.ms": 20, "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project-id", type=positive_int, required=True, help="project the check-ins belong to")
    parser.add_argument("--monitors", type=positive_int, default=10_000, help="distinct monitors (default 10000)")
    parser.add_argument("--environments", type=positive_int, default=3, help="environments per monitor (default 3)")
    parser.add_argument("--rate", type=non_negative_float, default=0.0,
                        help="target messages per second; 0 = as fast as possible (default 0)")
    parser.add_argument("--count", type=non_negative_int, default=0, help="stop after this many messages (default: no limit)")
    parser.add_argument("--duration", type=non_negative_float, default=0.0,
                        help="stop after this many seconds (default: no limit; with neither, 10 s)")
    parser.add_argument("--pair-ratio", type=ratio, default=0.3,
                        help="share of check-ins sent as in_progress → ok pairs (default 0.3)")
    parser.add_argument("--error-ratio", type=ratio, default=0.1, help="share of single-shot errors (default 0.1)")
    parser.add_argument("--pair-delay", type=non_negative_float, default=0.5,
                        help="seconds between the two halves of a pair (default 0.5)")
    parser.add_argument("--slug-prefix", default="load", help="monitor slugs are PREFIX-N (default load)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")


@dataclass
class LoadStats:
    sent: int = 0
    pairs: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)


@dataclass
class LoadGenerator:
    """Builds and sends the synthetic workload; ``step()`` sends one check-in (and any
    pair halves that are due)."""

    producer: CheckInProducer
    project_id: int
    monitors: int = 10_000
    environments: int = 3
    pair_ratio: float = 0.3
    error_ratio: float = 0.1
    pair_delay: float = 0.5
    slug_prefix: str = "load"
    rng: random.Random = field(default_factory=random.Random)
    stats: LoadStats = field(default_factory=LoadStats)
    _configured: set[int] = field(default_factory=set)
    _next: int = 0
    _pending: list[tuple[float, int, str, str, str]] = field(default_factory=list)

    def step(self, now: float) -> None:
        self.close_due_pairs(now)
        index = self._next
        self._next += 1
        monitor = index % self.monitors
        env = f"env-{(index // self.monitors) % self.environments}"
        slug = f"{self.slug_prefix}-{monitor}"
        guid = uuid.uuid4().hex
        roll = self.rng.random()
        if roll < self.pair_ratio:
            self.send(monitor, slug, env, guid, "in_progress", None)
            heapq.heappush(self._pending, (now + self.pair_delay, index, slug, env, guid))
            self.stats.pairs += 1
        else:
            status = "error" if roll < self.pair_ratio + self.error_ratio else "ok"
            self.send(monitor, slug, env, guid, status, round(self.rng.uniform(0.1, 30.0), 3))
            self.stats.errors += status == "error"

    def close_due_pairs(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, _, slug, env, guid = heapq.heappop(self._pending)
            self.send(-1, slug, env, guid, "ok", None)

    def close_all_pairs(self) -> None:
        self.close_due_pairs(float("inf"))

    def send(self, monitor: int, slug: str, env: str, guid: str, status: str, duration: float | None) -> None:
        payload: dict[str, Any] = {"check_in_id": guid, "monitor_slug": slug, "status": status, "environment": env}
        if duration is not None:
            payload["duration"] = duration
        if monitor >= 0 and monitor not in self._configured:
            payload["monitor_config"] = MONITOR_CONFIG
            self._configured.add(monitor)
        while True:
            try:
                self.producer.send_check_in(self.project_id, payload)
                break
            except ProducerQueueFull:
                self.producer.poll(0.05)  # back-pressure: let librdkafka drain its queue
        self.stats.sent += 1
        if self.stats.sent % 1000 == 0:
            self.producer.poll(0)


def drive(gen: LoadGenerator, *, rate: float, count: int, duration: float,
          progress: Callable[[LoadStats], None] | None = None) -> LoadStats:
    """Send at ``rate`` messages/s (0: flat out) until ``count`` messages or ``duration``
    seconds, then send the open pairs' closing halves and flush."""
    stats = gen.stats
    stats.started = time.monotonic()
    last_report = stats.started
    while (count <= 0 or stats.sent < count) and (duration <= 0 or stats.elapsed() < duration):
        now = time.monotonic()
        if rate > 0 and stats.sent >= rate * (now - stats.started):
            time.sleep(0.001)
        else:
            gen.step(now)
        if progress is not None and now - last_report >= 1.0:
            last_report = now
            progress(stats)
    gen.close_all_pairs()
    gen.producer.flush(60)
    return stats


def progress_line(producer: CheckInProducer) -> Callable[[LoadStats], None]:
    def report(stats: LoadStats) -> None:
        print(f"loadgen: sent {stats.sent} ({stats.sent / stats.elapsed():,.0f}/s) delivered {producer.delivered}"
              f" failed {producer.failed} queued {len(producer)}", file=sys.stderr, flush=True)
    return report


def run_loadgen(settings: Settings, args: argparse.Namespace) -> int:
    topics = Topics(prefix=settings.topic_prefix)
    ensure_topics(settings.kafka_bootstrap, topics.specs())
    producer = CheckInProducer(settings.kafka_bootstrap, topics.ingest, config=PRODUCER_CONFIG)
    gen = LoadGenerator(producer, args.project_id, monitors=args.monitors, environments=args.environments,
                        pair_ratio=args.pair_ratio, error_ratio=args.error_ratio, pair_delay=args.pair_delay,
                        slug_prefix=args.slug_prefix, rng=random.Random(args.seed))
    duration = args.duration if (args.duration or args.count) else 10.0
    try:
        stats = drive(gen, rate=args.rate, count=args.count, duration=duration, progress=progress_line(producer))
    except KeyboardInterrupt:
        stats = gen.stats
        producer.flush(30)
    summary = {"topic": topics.ingest, "sent": stats.sent, "delivered": producer.delivered,
               "failed": producer.failed, "pairs": stats.pairs, "errors": stats.errors,
               "seconds": round(stats.elapsed(), 3), "rate": round(stats.sent / stats.elapsed(), 1)}
    print(json.dumps(summary), flush=True)
    return 0 if producer.failed == 0 else 1
