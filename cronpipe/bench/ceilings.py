"""`cronpipe bench ceilings`: how fast each half of the check-in pipeline can go on its own.

Produces ``--checkins`` messages with the pipeline bench's producer (a fresh
organization/project, unique topics), then reads the same ingest topic three times,
in this process, one reader after the other:

1. **faust_noop**: a faust app (its own app id, the worker's app settings from
   :func:`consumers.app.create_app`) whose only agent does
   ``stream.take_events(batch, within=0.2)`` and counts events: faust's own ceiling;
2. **processor**: a confluent-kafka consumer feeding batches of ``--batch-size`` to
   :func:`consumers.checkins.batch.handle_batch`: the processor's real work (decode, decisions,
   PostgreSQL writes and stored offsets), starting from a project with no monitors;
3. **kafka_noop**: the same consumer doing nothing: the broker/client ceiling.

Each rate counts from the first batch read to the last one (start-up and partition
assignment are excluded; ``elapsed_s`` includes them), with this process's CPU time per
event over the same span (less noisy than the rate on a shared machine). The rate limit is off, as in
``cronpipe bench pipeline``. Prints one JSON object on stdout, a summary on stderr;
deletes its topics, rows and consumer groups at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from faust.app import BootStrategy

from consumers.app import create_app
from consumers.checkins.batch import RawEvent, handle_batch
from consumers.checkins.batch_state import ProcessorConfig
from consumers.checkins.dlq import DlqLimiter
from consumers.context import WorkerContext, build_context, close_context
from cronpipe.bench import pipeline
from schemas.argtypes import positive_float, positive_int, ratio
from schemas.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkins", type=positive_int, default=100_000, help="check-ins to produce (default 100000)")
    parser.add_argument("--monitors", type=positive_int, default=10_000, help="monitors (default 10000)")
    parser.add_argument("--environments", type=positive_int, default=3, help="environments per monitor (default 3)")
    parser.add_argument("--pair-ratio", type=ratio, default=0.3, help="share of in_progress→ok pairs (default 0.3)")
    parser.add_argument("--batch-size", type=positive_int, default=2000, help="events per batch for every reader (default 2000)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, help="give up on a reader after this many seconds"
                                                                    " (default 60)")
    parser.add_argument("--skip-kafka", action="store_true", help="skip the do-nothing confluent-kafka consumer")
    parser.add_argument("--keep", action="store_true",
                        help="keep the bench's topics, rows and consumer groups (default: delete them at the end)")


@dataclass
class Meter:
    """Counts events; the rate runs from the first batch to the last (start-up excluded).

    Also this process's CPU time over the same span (all threads: faust's event loop,
    librdkafka's, psycopg's; not the broker's nor PostgreSQL's): µs of CPU per event.
    """

    total: int
    started: float = field(default_factory=time.monotonic)
    count: int = 0
    first: tuple[float, float, int] | None = None  # (wall, cpu, events) at the first batch
    last: tuple[float, float] = (0.0, 0.0)

    def add(self, n: int) -> None:
        self.count += n
        self.last = (time.monotonic(), time.process_time())
        if self.first is None:
            self.first = (*self.last, n)

    def done(self) -> bool:
        return self.count >= self.total

    def result(self) -> dict[str, Any]:
        first_wall, first_cpu, first_n = self.first or (*self.last, 0)
        seconds = max(self.last[0] - first_wall, 1e-6)
        events = max(self.count - first_n, 1)
        return {"events": self.count, "seconds": round(seconds, 2), "events_per_s": round(events / seconds),
                "cpu_us_per_event": round((self.last[1] - first_cpu) / events * 1e6, 1),
                "elapsed_s": round(self.last[0] - self.started, 2), "complete": self.done()}


def log(message: str) -> None:
    print(f"bench ceilings: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- readers


def measure_faust_noop(ctx: WorkerContext, app_id: str, total: int, timeout_s: float) -> dict[str, Any]:
    """A faust agent that only takes batches of events and counts them."""
    return asyncio.run(_faust_noop(ctx, app_id, total, timeout_s))


async def _faust_noop(ctx: WorkerContext, app_id: str, total: int, timeout_s: float) -> dict[str, Any]:
    app = create_app(ctx, [], app_id=app_id)
    app.boot_strategy = BootStrategy(app)  # create_app saw no agent and left faust's consumer out
    topic = app.topic(ctx.topics.ingest, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    meter = Meter(total)
    finished = asyncio.Event()

    @app.agent(topic, concurrency=1, name=f"{app_id}-noop")
    async def noop(stream: faust.StreamT[bytes]) -> None:
        # Stream.take_events: the StreamT protocol an agent is typed with lacks it.
        async for events in cast("faust.Stream[bytes]", stream).take_events(ctx.batch_size, ctx.batch_within_s):
            meter.add(len(events))
            if meter.done():
                finished.set()

    await app.start()
    try:
        await asyncio.wait_for(finished.wait(), timeout_s)
    except TimeoutError:
        log(f"faust read {meter.count} of {total} events before the timeout")
    finally:
        await app.stop()
    return meter.result()


def measure_processor(ctx: WorkerContext, total: int, timeout_s: float) -> dict[str, Any]:
    """confluent-kafka batches → :func:`handle_batch` (one transaction per batch)."""
    limiter = DlqLimiter(ctx.dlq)

    def process(messages: Sequence[Message]) -> None:
        handle_batch(ctx, limiter, [raw_event(m) for m in messages])

    return consume_all(ctx, f"{ctx.consumer_group}-processor", total, timeout_s, process)


def measure_kafka_noop(ctx: WorkerContext, total: int, timeout_s: float) -> dict[str, Any]:
    return consume_all(ctx, f"{ctx.consumer_group}-kafka", total, timeout_s, lambda messages: None)


def consume_all(ctx: WorkerContext, group: str, total: int, timeout_s: float,
                handle: Callable[[Sequence[Message]], None]) -> dict[str, Any]:
    """Read every ingest partition from the beginning in batches of ``ctx.batch_size``.

    ``assign``, not ``subscribe``: no group join, no rebalance, nothing committed.
    """
    consumer = Consumer({"bootstrap.servers": ctx.settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(ctx.topics.ingest, p, OFFSET_BEGINNING)
                     for p in range(ctx.topics.ingest_partitions)])
    meter = Meter(total)
    deadline = time.monotonic() + timeout_s
    try:
        while not meter.done() and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(ctx.batch_size, timeout=ctx.batch_within_s) if m.error() is None]
            if messages:
                handle(messages)
                meter.add(len(messages))
    finally:
        consumer.close()
    return meter.result()


def raw_event(message: Message) -> RawEvent:
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "a consumed message has a partition and an offset"
    return RawEvent(partition, offset, message.timestamp()[1] / 1000, message.key(), message.value() or b"")


# --------------------------------------------------------------------------- the bench


def run(settings: Settings, args: argparse.Namespace) -> int:
    for name in ("faust", "mode", "aiokafka"):  # their INFO lines would drown the summary
        logging.getLogger(name).setLevel(logging.WARNING)
    started = time.monotonic()
    bench = pipeline.setup(settings)
    ctx = build_context(bench.settings, bench.topics, consumer_group=f"{bench.topics.prefix}ceilings",
                        processor=ProcessorConfig(rate_limit=0))
    ctx.batch_size = args.batch_size
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": pipeline.machine(), "load_average": os.getloadavg()[0]}
    try:
        log(f"topic prefix {bench.topics.prefix}, project {bench.project_id}; producing {args.checkins} check-ins")
        produced_at = time.monotonic()
        total = pipeline.produce(bench, args, count=args.checkins, rate=0, duration=0)
        result |= {"checkins": args.checkins, "messages": total,
                   "produce_messages_per_s": round(total / (time.monotonic() - produced_at))}
        log(f"produced {total} messages (in_progress→ok pairs are two)")
        result["faust_noop"] = measure_faust_noop(ctx, f"{ctx.consumer_group}-faust", total, args.timeout)
        log(f"faust no-op agent: {result['faust_noop']}")
        result["processor"] = measure_processor(ctx, total, args.timeout)
        log(f"confluent-kafka + handle_batch: {result['processor']}")
        if not args.skip_kafka:
            result["kafka_noop"] = measure_kafka_noop(ctx, total, args.timeout)
            log(f"confluent-kafka, no work: {result['kafka_noop']}")
    finally:
        close_context(ctx)
        if not args.keep:
            pipeline.clean_up(bench)
            delete_groups(ctx)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result), flush=True)
    log(summary(result))
    return 0 if all(result[k]["complete"] for k in ("faust_noop", "processor", "kafka_noop") if k in result) else 1


def summary(result: dict[str, Any]) -> str:
    rates = {"faust no-op agent": "faust_noop", "processor (handle_batch)": "processor", "kafka no-op": "kafka_noop"}
    parts = [f"{label} {result[key]['events_per_s']:,}/s" for label, key in rates.items() if key in result]
    return f"{result['messages']:,} messages: " + ", ".join(parts)


def delete_groups(ctx: WorkerContext) -> None:
    """The faust app's group holds committed offsets; the assign-only consumers leave none."""
    admin = AdminClient({"bootstrap.servers": ctx.settings.kafka_bootstrap})
    for future in admin.delete_consumer_groups([f"{ctx.consumer_group}-faust"], request_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:  # never created (the run failed early)
            log(f"could not delete a consumer group: {exc}")
