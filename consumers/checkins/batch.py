"""One batch of ``ingest-monitors`` → check-ins, rollups and offsets in PostgreSQL.

One batch = one PostgreSQL transaction, read top to bottom in :func:`handle_batch`:
skip what is already stored (offsets) → :func:`decode` → dead letters to the DLQ →
load the rows the batch names → :func:`consumers.checkins.processing.process_batch` → write,
store the offsets and advance the partition clocks → commit. The caller runs the
``after_commit`` hooks with what committed (``consumers.checkins.runner``).

A batch that fails unexpectedly (a bug one message triggers) is retried in halves down to
that message, which goes to the DLQ: :func:`handle_batch_isolating_poison`.

Redelivery is harmless: an event whose offset is below the stored next offset of its
partition changes nothing, and the partitions are locked for the transaction
(``schemas.database.load_offsets``), so two consumers of one partition (the old and the
new owner during a rebalance) apply a batch once. The reader seeks to the stored offsets
on every assignment (``consumers.batch_consumer``), so a restart resumes exactly where
PostgreSQL says; Kafka's committed offsets are never used.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from consumers import metrics
from consumers.checkins import store
from consumers.checkins.batch_state import AttachmentItem, CheckInItem, Item, RejectedItem
from consumers.checkins.dlq import DeadLetter, DlqLimiter, DlqLimitExceeded, project_of_key
from consumers.checkins.processing import process_batch
from consumers.checkins.store import BatchKeys
from consumers.context import BatchCommitted, WorkerContext
from schemas import database
from schemas.checkin_payload import PayloadError, parse_check_in_payload
from schemas.database import StoreUnavailable, wrap_exceptions
from schemas.messages import (
    CheckInAttachmentMessage,
    CheckInMessage,
    MessageDecodeError,
    MessageRejected,
    decode_ingest_message,
)
from schemas.minutes import floor_minute

log = logging.getLogger("cronpipe.checkins")
UTC = timezone.utc


@dataclass(frozen=True)
class RawEvent:
    """What the processor needs of one Kafka message."""

    partition: int
    offset: int
    timestamp: float  # seconds
    key: bytes | None
    value: bytes


@dataclass
class DecodedBatch:
    items: list[Item]
    dead: list[DeadLetter]
    keys: BatchKeys
    next_offsets: dict[int, int]
    clocks: dict[int, datetime]


# --------------------------------------------------------------------------- stages


def decode(topic: str, events: Sequence[RawEvent]) -> DecodedBatch:
    """Decode every event; undecodable ones become dead letters, bad payloads stay items
    (they become processing errors). Clock pulses only move their partition's clock."""
    items: list[Item] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {}
    clocks: dict[int, datetime] = {}
    for event in events:
        ts = datetime.fromtimestamp(event.timestamp, UTC)
        next_offsets[event.partition] = max(next_offsets.get(event.partition, 0), event.offset + 1)
        minute = floor_minute(ts)
        if event.partition not in clocks or clocks[event.partition] < minute:
            clocks[event.partition] = minute
        try:
            message = decode_ingest_message(event.value)
        except MessageRejected as exc:  # decodable, but content a client must fix
            items.append(RejectedItem(ts, exc))
            continue
        except MessageDecodeError as exc:
            dead.append(DeadLetter(topic, event.partition, event.offset, event.key, event.value, exc.reason,
                                   project_of_key(event.key)))
            continue
        if isinstance(message, CheckInMessage):
            items.append(CheckInItem(ts, message, _parse_payload(message)))
        elif isinstance(message, CheckInAttachmentMessage):
            items.append(AttachmentItem(ts, message))
    return DecodedBatch(items, dead, collect_keys(items), next_offsets, clocks)


def _parse_payload(message: CheckInMessage) -> Any:
    try:
        return parse_check_in_payload(message.payload)
    except PayloadError as exc:
        return exc


def collect_keys(items: Sequence[Item]) -> BatchKeys:
    """The projects, monitors, environments and check-in ids the batch names."""
    keys = BatchKeys(project_ids=set(), monitor_keys=set(), env_keys=set(), guids=set(), latest={},
                     upsert_keys=set(), checkins=0)
    latest: Counter[tuple[int, str, str]] = Counter()
    checkins = 0
    earliest_latest: float | None = None
    for item in items:
        if isinstance(item, RejectedItem):
            keys.project_ids.add(item.rejection.project_id)
            continue
        if isinstance(item, AttachmentItem):
            keys.project_ids.add(item.message.project_id)
            keys.monitor_keys.add((item.message.project_id, item.message.monitor_slug))
            keys.guids.add(item.message.check_in_id)  # whose check-in it names decides if it is kept
            continue
        checkins += 1
        keys.project_ids.add(item.message.project_id)
        payload = item.payload
        if isinstance(payload, PayloadError):
            continue
        monitor_key = (item.message.project_id, payload.monitor_slug)
        env_key = (*monitor_key, payload.environment)
        keys.monitor_keys.add(monitor_key)
        keys.env_keys.add(env_key)
        if payload.monitor_config is not None:
            keys.upsert_keys.add(monitor_key)
        if payload.is_latest:
            latest[env_key] += 1
            start = item.message.start_time
            earliest_latest = start if earliest_latest is None else min(earliest_latest, start)
        else:
            keys.guids.add(payload.check_in_id)
    return BatchKeys(keys.project_ids, keys.monitor_keys, keys.env_keys, keys.guids, dict(latest),
                     keys.upsert_keys, checkins,
                     None if earliest_latest is None else datetime.fromtimestamp(earliest_latest, UTC))


def handle_batch(ctx: WorkerContext, limiter: DlqLimiter, events: Sequence[RawEvent]) -> BatchCommitted | None:
    """Process and commit one batch; returns what committed (None if all were redeliveries).

    Raises StoreUnavailable (retry the batch), DlqLimitExceeded (stop), and anything a bug
    raises (StoreError included): :func:`handle_batch_isolating_poison` then isolates the
    message that triggers it.
    """
    topic = ctx.topics.ingest
    started = time.perf_counter()
    with gc_paused(), wrap_exceptions(), ctx.pool.connection() as conn, conn.transaction():
        stored = database.load_offsets(conn, ctx.consumer_group, topic, {e.partition for e in events})
        fresh = [e for e in events if e.offset >= stored.get(e.partition, 0)]
        metrics.REDELIVERED.inc(len(events) - len(fresh))
        if not fresh:
            return None
        batch = decode(topic, fresh)
        state = store.load_batch_state(conn, batch.keys)
        ids = store.allocate_ids(conn, batch.keys, state)
        result = process_batch(batch.items, state, ids, ctx.processor)
        store.write_batch(conn, state, result)
        database.save_offsets(conn, ctx.consumer_group, topic, batch.next_offsets)
        store.advance_partition_clocks(conn, topic, batch.clocks)
        # Last before the commit: a batch that fails and is retried in halves
        # (handle_batch_isolating_poison) has sent, and counted, none of them yet.
        send_dead_letters(ctx, limiter, batch.dead)
    metrics.CHECKINS_ACCEPTED.inc(result.accepted)
    metrics.PROCESSING_ERRORS.inc(len(result.errors))
    metrics.BATCH_SIZE.observe(len(events))
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    return BatchCommitted(topic, batch.next_offsets, batch.clocks, dict(Counter(d.project_id for d in batch.dead)))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch runs; it resumes after.

    A batch allocates tens of thousands of objects that live until it ends (items, rows,
    parameters), so the collector ran dozens of times per batch, and its oldest generation
    (every module, schema and cache of the process) about once: ≈ 25 % of the decode's CPU
    (BENCHMARKS.md, "The processor's batch"). Reference counting still frees everything
    as usual; only garbage in reference cycles waits, at most one batch's worth.
    """
    if not gc.isenabled():  # someone else (a test, a profiler) decides
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def handle_batch_isolating_poison(ctx: WorkerContext, limiter: DlqLimiter,
                                  events: Sequence[RawEvent]) -> BatchCommitted | None:
    """:func:`handle_batch`; if that fails unexpectedly, the same in halves, down to single
    messages: every half that works commits (its own transaction, offsets included, in
    order), and a single message that still fails goes to the DLQ with its offset committed
    (:func:`dead_letter_poison`). One bad message never stops the partition.

    Raises, for the rest of the batch, what is not the messages' fault: StoreUnavailable
    (retry; halves already committed are skipped as redeliveries) and DlqLimitExceeded.
    """
    try:
        return handle_batch(ctx, limiter, events)
    except (StoreUnavailable, DlqLimitExceeded):
        raise
    except Exception as exc:  # a bug one of these messages triggers (StoreError included)
        failure = exc
    # Outside the except block: the halves' own errors must not chain this one.
    if len(events) == 1:
        return dead_letter_poison(ctx, limiter, events[0], failure)
    log.info("batch of %d failed (%s: %s): retrying it in halves", len(events), type(failure).__name__, failure)
    middle = len(events) // 2
    first = handle_batch_isolating_poison(ctx, limiter, events[:middle])
    second = handle_batch_isolating_poison(ctx, limiter, events[middle:])
    return merge_committed(first, second)


def dead_letter_poison(ctx: WorkerContext, limiter: DlqLimiter, event: RawEvent,
                       exc: Exception) -> BatchCommitted | None:
    """Send a message whose processing raised to the DLQ and commit its offset (so a
    redelivery skips it); it counts toward the DLQ limit. None if it was already past."""
    topic = ctx.topics.ingest
    letter = DeadLetter(topic, event.partition, event.offset, event.key, event.value,
                        f"processing failed: {type(exc).__name__}: {exc}", _project_of(event))
    next_offsets = {event.partition: event.offset + 1}
    clocks = {event.partition: floor_minute(datetime.fromtimestamp(event.timestamp, UTC))}
    with wrap_exceptions(), ctx.pool.connection() as conn, conn.transaction():
        if event.offset < database.load_offsets(conn, ctx.consumer_group, topic, [event.partition]).get(event.partition, 0):
            return None  # another consumer of the partition got past it (a rebalance)
        database.save_offsets(conn, ctx.consumer_group, topic, next_offsets)
        store.advance_partition_clocks(conn, topic, clocks)
        over_budget = send_dead_letters(ctx, limiter, [letter])
    if letter.project_id not in over_budget:  # a project flooding us gets no traceback each
        log.error("message %s[%d]@%d of project %s breaks processing: sent to the DLQ and skipped",
                  topic, event.partition, event.offset, letter.project_id, exc_info=exc)
    metrics.POISON_MESSAGES.inc()
    return BatchCommitted(topic, next_offsets, clocks, {letter.project_id: 1})


def _project_of(event: RawEvent) -> int | None:
    try:
        message = decode_ingest_message(event.value)
    except MessageDecodeError:
        return project_of_key(event.key)
    if isinstance(message, (CheckInMessage, CheckInAttachmentMessage)):
        return message.project_id
    return project_of_key(event.key)


def merge_committed(first: BatchCommitted | None, second: BatchCommitted | None) -> BatchCommitted | None:
    """What two consecutive commits of one topic committed together."""
    if first is None or second is None:
        return first or second
    offsets = {p: max(o, first.next_offsets.get(p, 0)) for p, o in second.next_offsets.items()}
    clocks = {p: max(t, first.clocks.get(p, t)) for p, t in second.clocks.items()}
    dead = Counter(first.dead_letters)
    dead.update(second.dead_letters)
    return BatchCommitted(first.topic, {**first.next_offsets, **offsets}, {**first.clocks, **clocks}, dict(dead))


def send_dead_letters(ctx: WorkerContext, limiter: DlqLimiter, dead: Sequence[DeadLetter]) -> set[int | None]:
    """Produce and flush the dead letters before the batch commits (at least once); returns
    the projects over their dead-letter budget (consumers.checkins.dlq: sent, not counted, not logged
    one by one). Raises DlqLimitExceeded when many projects fail at once."""
    if not dead:
        return set()
    now = time.monotonic()
    over_budget = limiter.admit(dead, now)
    for letter in dead:
        if letter.project_id not in over_budget:
            log.warning("dead letter %s[%d]@%d: %s", letter.topic, letter.partition, letter.offset, letter.reason)
        ctx.producer.produce(ctx.topics.dlq, letter.value, key=letter.key, headers=letter.headers())
    if ctx.producer.flush(30) != 0:
        raise StoreUnavailable("the DLQ producer could not deliver within 30 s")  # retry the batch
    over = sum(1 for letter in dead if letter.project_id in over_budget)
    for project in over_budget:
        if limiter.first_report(project, now):
            log.warning("project %s is over its dead-letter budget (%d per %gs): its further dead letters are "
                        "sent without a log line each and not counted toward the DLQ limit "
                        "(metric cronpipe_dead_letters_over_budget_total)", project,
                        ctx.dlq.project_budget, ctx.dlq.window_s)  # the limiter may be a proxy (several readers)
    metrics.DEAD_LETTERS.inc(len(dead))
    metrics.DEAD_LETTERS_OVER_BUDGET.inc(over)
    return over_budget
