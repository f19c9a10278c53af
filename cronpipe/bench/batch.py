"""`cronpipe bench batch`: what one processor batch costs, stage by stage and statement by statement.

Produces ``--checkins`` messages with the pipeline bench's producer (10,000 monitors × 3
environments, 30 % in_progress→ok pairs: the data of ``cronpipe bench pipeline`` and
``ceilings``), reads them all into memory with confluent-kafka (in the batches ``consume``
returns, as ``ceilings`` does), then runs the real :func:`consumers.checkins.batch.handle_batch`
on each batch with its stages wrapped (the functions it calls, looked up at call time) and
every statement's cursor timed. Per stage and per statement, divided by the messages:

* ``py_us``: this thread's CPU (decoding, decisions, building parameters, psycopg);
* ``pg_us``: CPU of the PostgreSQL backend serving the batch (``/proc/PID/schedstat``; the
  server runs on this machine), so "PostgreSQL per statement" is measured, not inferred;
* ``wall_us``: elapsed time (includes waiting: the commit's WAL flush, other work on the box).

``commit`` is what ``handle_batch`` spends outside its stages (the transaction's end and
the pool). The decode stage is also split by re-running its parts over the same bytes
(msgpack, message model, payload JSON, hostile-input bounds, payload model). Also the whole
cluster's CPU (every PostgreSQL process: autovacuum, WAL writer, checkpointer) per message.
Prints one JSON object on stdout and a table on stderr; ``--profile FILE`` writes py-spy's
collapsed stacks of the run (needs ``py-spy`` and ptrace rights).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from consumers.checkins import batch as checkin_batch
from consumers.checkins import store
from consumers.checkins.batch_state import ProcessorConfig
from consumers.checkins.dlq import DlqLimiter
from consumers.clock import volume_store
from consumers.context import WorkerContext, build_context, close_context
from consumers.incidents import outbox
from consumers.incidents import store as incident_store
from cronpipe.bench import pipeline
from cronpipe.bench.ceilings import raw_event
from schemas import checkin_payload, database, messages
from schemas.argtypes import positive_int, ratio
from schemas.json_object import load_object
from schemas.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkins", type=positive_int, default=100_000, help="check-ins to produce (default 100000)")
    parser.add_argument("--monitors", type=positive_int, default=10_000, help="monitors (default 10000)")
    parser.add_argument("--environments", type=positive_int, default=3, help="environments per monitor (default 3)")
    parser.add_argument("--pair-ratio", type=ratio, default=0.3, help="share of in_progress→ok pairs (default 0.3)")
    parser.add_argument("--batch-size", type=positive_int, default=2000, help="events per batch (default 2000)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also sample the batches with py-spy and write its collapsed stacks here")
    parser.add_argument("--keep", action="store_true", help="keep the bench's topics and rows")


def log(message: str) -> None:
    print(f"bench batch: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- meters


def backend_cpu_ns(pid: int) -> int:
    """CPU time a (local) process has run, in ns: the first field of /proc/PID/schedstat."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def cluster_cpu_ns(postmaster: int) -> int:
    """CPU of the postmaster and every child of it (backends and background workers)."""
    total = backend_cpu_ns(postmaster)
    try:
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(backend_cpu_ns(int(c)) for c in children)


Reading = tuple[float, int, float]  # thread CPU s, backend CPU ns, wall s


class Meter:
    """Accumulates (py, pg, wall, calls) per label; nested labels are charged to the innermost."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
        self.backend = 0
        self._stack: list[tuple[str, Reading]] = []

    def _now(self) -> Reading:
        return time.thread_time(), backend_cpu_ns(self.backend) if self.backend else 0, time.perf_counter()

    @contextmanager
    def measure(self, label: str) -> Iterator[None]:
        """Charge the time spent inside to ``label``, minus that of labels nested in it."""
        now = self._now()
        if self._stack:  # the enclosing label stops counting until this one ends
            outer, since = self._stack.pop()
            self._charge(outer, since, now, count=False)
            self._stack.append((outer, now))
        self._stack.append((label, now))
        try:
            yield
        finally:
            end = self._now()
            _, since = self._stack.pop()
            self._charge(label, since, end, count=True)
            if self._stack:
                self._stack.append((self._stack.pop()[0], end))

    def _charge(self, label: str, since: Reading, now: Reading, *, count: bool) -> None:
        row = self.totals[label]
        row[0] += now[0] - since[0]
        row[1] += (now[1] - since[1]) / 1e9
        row[2] += now[2] - since[2]
        row[3] += int(count)


def statement_labels() -> dict[str, str]:
    """Each SQL constant of the modules a batch runs, by its text: ``store.COPY_CHECKINS``."""
    labels = {}
    for module, prefix in ((store, "store"), (database, "database"), (incident_store, "incidents"),
                           (outbox, "outbox"), (volume_store, "volume")):
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and len(value) > 20:
                labels[value] = f"{prefix}.{name}"
    return labels


def timing_cursor(meter: Meter, labels: dict[str, str]) -> type[psycopg.Cursor[Any]]:
    def label_of(query: Any) -> str:
        text = query if isinstance(query, str) else str(query)
        if text in labels:
            return "sql " + labels[text]
        for known, name in labels.items():  # a constant with a suffix (FOR UPDATE)
            if text.startswith(known):
                return "sql " + name
        return "sql " + " ".join(text.split())[:60]

    class TimingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            with meter.measure(label_of(query)):
                return super().execute(query, params, **kwargs)

        @contextmanager
        def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
            with meter.measure(label_of(statement)), super().copy(statement, params, **kwargs) as copy:
                yield copy

    return TimingCursor


@contextmanager
def wrapped(meter: Meter, targets: Sequence[tuple[Any, str, str]]) -> Iterator[None]:
    """Replace ``module.name`` by a measured wrapper for the duration (the code under
    test looks them up at call time)."""
    saved = []
    for module, name, label in targets:
        original = getattr(module, name)
        saved.append((module, name, original))

        def wrapper(*args: Any, _original: Callable[..., Any] = original, _label: str = label,
                    **kwargs: Any) -> Any:
            with meter.measure(_label):
                return _original(*args, **kwargs)

        setattr(module, name, wrapper)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


STAGES = [
    (database, "load_offsets", "load offsets (lock partitions)"),
    (checkin_batch, "decode", "decode"),
    (checkin_batch, "collect_keys", "collect keys"),
    (store, "load_batch_state", "load batch state"),
    (store, "allocate_ids", "allocate ids"),
    (checkin_batch, "process_batch", "decisions (process_batch)"),
    (store, "write_batch", "write batch"),
    (store, "rollup_deltas", "rollup deltas"),
    (database, "save_offsets", "save offsets"),
    (store, "advance_partition_clocks", "partition clocks"),
]


class TimedPool:
    """The context's pool, handing out connections whose cursors are timed (and telling
    the meter which backend serves them)."""

    def __init__(self, pool: Any, meter: Meter, cursor: type[psycopg.Cursor[Any]]) -> None:
        self.pool, self.meter, self.cursor = pool, meter, cursor

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            conn.cursor_factory = self.cursor
            self.meter.backend = conn.info.backend_pid
            try:
                yield conn
            finally:
                conn.cursor_factory = psycopg.Cursor


# --------------------------------------------------------------------------- decode parts


def decode_parts(batches: Sequence[Sequence[checkin_batch.RawEvent]]) -> dict[str, float]:
    """Seconds of CPU for each part of decoding, re-run over the same values."""
    values = [e.value for batch in batches for e in batch]
    parts: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        started = time.thread_time()
        out = fn()
        parts[name] = time.thread_time() - started
        return out

    maps = clock("msgpack.unpackb", lambda: [msgpack.unpackb(v, raw=False) for v in values])
    models = clock("message model (pydantic)", lambda: [messages._validate_message(m) for m in maps])
    check_ins = [m for m in models if isinstance(m, messages.CheckInMessage)]
    docs = clock("payload JSON (orjson)", lambda: [load_object(m.payload, "payload") for m in check_ins])
    def bounds() -> None:
        for doc, message in zip(docs, check_ins, strict=True):
            checkin_payload.check_payload_limits(doc, message.payload)

    clock("payload bounds (limits)", bounds)
    clock("payload model (pydantic)", lambda: [checkin_payload.CheckInPayload.model_validate(d) for d in docs])
    clock("decode() in all", lambda: [checkin_batch.decode("t", b) for b in batches])
    return parts


# --------------------------------------------------------------------------- the bench


def read_all(ctx: WorkerContext, total: int, batch_size: int) -> list[list[checkin_batch.RawEvent]]:
    consumer = Consumer({"bootstrap.servers": ctx.settings.kafka_bootstrap, "group.id": f"{ctx.consumer_group}-read",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(ctx.topics.ingest, p, OFFSET_BEGINNING)
                     for p in range(ctx.topics.ingest_partitions)])
    batches: list[list[checkin_batch.RawEvent]] = []
    count, deadline = 0, time.monotonic() + 120
    try:
        while count < total and time.monotonic() < deadline:
            batch = [raw_event(m) for m in consumer.consume(batch_size, timeout=0.2) if m.error() is None]
            if batch:
                batches.append(batch)
                count += len(batch)
    finally:
        consumer.close()
    return batches


def postmaster_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_postmaster_start_time(), current_setting('data_directory')").fetchone()
    assert row is not None
    try:
        return int(Path(row[1], "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError):
        return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    bench = pipeline.setup(settings)
    ctx = build_context(bench.settings, bench.topics, consumer_group=f"{bench.topics.prefix}batch",
                        processor=ProcessorConfig(rate_limit=0))
    ctx.batch_size = args.batch_size
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": pipeline.machine(),
                              "load_average_before": round(os.getloadavg()[0], 2)}
    meter = Meter()
    spy: subprocess.Popen[bytes] | None = None
    try:
        total = pipeline.produce(bench, args, count=args.checkins, rate=0, duration=0)
        # Held as plain tuples (what the batch process receives), which the garbage collector
        # stops tracking: the ≈ 100,000 events are this bench's, not a worker's, and every full
        # collection would otherwise scan them and overstate what collection costs a batch.
        batches = [[(e.partition, e.offset, e.timestamp, e.key, e.value) for e in batch]
                   for batch in read_all(ctx, total, args.batch_size)]
        gc.collect()
        messages_read = sum(len(b) for b in batches)
        log(f"{messages_read} messages in {len(batches)} batches; processing")
        labels = statement_labels()
        limiter = DlqLimiter(ctx.dlq)
        with ctx.pool.connection() as conn:
            postmaster = postmaster_pid(conn)
        if args.profile is not None:
            spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "250", "--output",
                                    str(args.profile), "--pid", str(os.getpid())],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cluster_before = cluster_cpu_ns(postmaster) if postmaster else 0
        started_cpu, started_wall = time.thread_time(), time.perf_counter()
        pool = ctx.pool
        ctx.pool = TimedPool(pool, meter, timing_cursor(meter, labels))  # type: ignore[assignment]
        try:
            with wrapped(meter, STAGES):
                for rows in batches:
                    events = [checkin_batch.RawEvent(*row) for row in rows]
                    with meter.measure("commit and the rest"):
                        checkin_batch.handle_batch(ctx, limiter, events)
        finally:
            ctx.pool = pool
        wall = time.perf_counter() - started_wall
        py_total = time.thread_time() - started_cpu
        pg_cluster = (cluster_cpu_ns(postmaster) - cluster_before) / 1e9 if postmaster else float("nan")
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        per = 1e6 / messages_read
        stages = {label: {"py_us": round(py * per, 1), "pg_us": round(pg * per, 1), "wall_us": round(w * per, 1),
                          "calls": n}
                  for label, (py, pg, w, n) in sorted(meter.totals.items(), key=lambda kv: -kv[1][2])}
        result |= {"messages": messages_read, "batches": len(batches),
                   "messages_per_s": round(messages_read / wall),
                   "py_us_per_message": round(py_total * per, 1),
                   "pg_backend_us_per_message": round(sum(v[1] for v in meter.totals.values()) * per, 1),
                   "pg_cluster_us_per_message": round(pg_cluster * per, 1),
                   "wall_us_per_message": round(wall * per, 1),
                   "stages": stages,
                   "decode_parts_us": {k: round(v * per, 1) for k, v in decode_parts(
                       [[checkin_batch.RawEvent(*row) for row in rows] for rows in batches]).items()},
                   "load_average_after": round(os.getloadavg()[0], 2)}
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        close_context(ctx)
        if not args.keep:
            pipeline.clean_up(bench)
    print(json.dumps(result), flush=True)
    log(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['messages']:,} messages, {result['batches']} batches, {result['messages_per_s']:,}/s; "
             f"µs per message: Python {result['py_us_per_message']}, PostgreSQL backend "
             f"{result['pg_backend_us_per_message']} (cluster {result['pg_cluster_us_per_message']}), "
             f"wall {result['wall_us_per_message']}",
             f"{'stage / statement':58} {'py_us':>7} {'pg_us':>7} {'wall_us':>8}"]
    for label, row in result["stages"].items():
        lines.append(f"{label[:58]:58} {row['py_us']:7} {row['pg_us']:7} {row['wall_us']:8}")
    lines.append("decode, part by part (py µs/message): " + ", ".join(
        f"{k} {v}" for k, v in result["decode_parts_us"].items()))
    return "\n".join(lines)
