"""Tick production (consumers.clock.ticks.advance_clock) against real PostgreSQL and Kafka."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from consumers.checkins import store
from consumers.clock.ticks import KafkaTickSink, TickSendError, advance_clock
from schemas.topics import Topics
from tests.integration.clock_helpers import tick_times

T = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)


def _advance(database_url: str, sink: KafkaTickSink | object, topics: Topics, partitions: int,
             **kwargs: object) -> list[datetime]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return advance_clock(conn, sink, topic=topics.ingest, partitions=partitions, **kwargs)  # type: ignore[arg-type]


def _record(database_url: str, topics: Topics, positions: dict[int, datetime]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        store.advance_partition_clocks(conn, topics.ingest, positions)


def test_positions_at_t_5s_1m_1m_3m5s_tick_t_1m_2m_3m_once_each(
        kafka_bootstrap: str, make_topics: object, database_url: str) -> None:
    topics = make_topics(ingest_partitions=1)  # type: ignore[operator]
    sink = KafkaTickSink(kafka_bootstrap, topics.clock_tick)
    for offset in (timedelta(0), timedelta(seconds=5), M, M, 3 * M + timedelta(seconds=5)):
        _record(database_url, topics, {0: T + offset})
        _advance(database_url, sink, topics, 1)
    assert tick_times(kafka_bootstrap, topics.clock_tick) == [T, T + M, T + 2 * M, T + 3 * M]


def test_no_tick_until_the_slowest_of_four_partitions_passes_the_minute(
        kafka_bootstrap: str, make_topics: object, database_url: str) -> None:
    topics = make_topics(ingest_partitions=4)  # type: ignore[operator]
    sink = KafkaTickSink(kafka_bootstrap, topics.clock_tick)
    _record(database_url, topics, {0: T, 1: T, 2: T, 3: T})
    assert _advance(database_url, sink, topics, 4) == [T]
    _record(database_url, topics, {0: T + 5 * M, 1: T + 5 * M, 2: T + 5 * M})
    assert _advance(database_url, sink, topics, 4) == []
    _record(database_url, topics, {3: T + M + timedelta(seconds=59)})
    assert _advance(database_url, sink, topics, 4) == [T + M]
    _record(database_url, topics, {3: T + 9 * M})
    assert _advance(database_url, sink, topics, 4) == [T + 2 * M, T + 3 * M, T + 4 * M, T + 5 * M]
    assert tick_times(kafka_bootstrap, topics.clock_tick) == [T + i * M for i in range(6)]


def test_a_partition_never_seen_holds_the_clock_back(
        kafka_bootstrap: str, make_topics: object, database_url: str) -> None:
    topics = make_topics(ingest_partitions=2)  # type: ignore[operator]
    _record(database_url, topics, {0: T + 10 * M})
    assert _advance(database_url, KafkaTickSink(kafka_bootstrap, topics.clock_tick), topics, 2) == []


def test_racing_instances_produce_every_tick_exactly_once(
        kafka_bootstrap: str, make_topics: object, database_url: str) -> None:
    topics = make_topics(ingest_partitions=2)  # type: ignore[operator]
    _record(database_url, topics, {0: T, 1: T})
    _advance(database_url, KafkaTickSink(kafka_bootstrap, topics.clock_tick), topics, 2)
    minutes = 40
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def instance(partition: int | None) -> None:
        sink = KafkaTickSink(kafka_bootstrap, topics.clock_tick)
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                start.wait()
                for minute in range(1, minutes + 1):
                    if partition is not None:  # this instance "processes" one partition
                        store.advance_partition_clocks(conn, topics.ingest, {partition: T + minute * M})
                    advance_clock(conn, sink, topic=topics.ingest, partitions=2)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=instance, args=(p,)) for p in (0, 1, None, None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _advance(database_url, KafkaTickSink(kafka_bootstrap, topics.clock_tick), topics, 2)
    assert failures == []
    assert sorted(tick_times(kafka_bootstrap, topics.clock_tick)) == [T + i * M for i in range(minutes + 1)]


class _CrashingSink:
    """Stands in for a producer that dies between the compare-and-set and the produce."""

    def send_ticks(self, ticks: Sequence[datetime]) -> None:
        raise TickSendError("process died before producing")


def test_ticks_won_but_not_produced_are_produced_by_a_later_advance(
        kafka_bootstrap: str, make_topics: object, database_url: str) -> None:
    topics = make_topics(ingest_partitions=1)  # type: ignore[operator]
    sink = KafkaTickSink(kafka_bootstrap, topics.clock_tick)
    _record(database_url, topics, {0: T})
    _advance(database_url, sink, topics, 1)
    _record(database_url, topics, {0: T + 2 * M})
    with pytest.raises(TickSendError):
        _advance(database_url, _CrashingSink(), topics, 1)
    # Within the lease the orphaned ticks are presumed in flight elsewhere...
    assert _advance(database_url, sink, topics, 1) == []
    # ...after it, they are reclaimed and produced, in order.
    assert _advance(database_url, sink, topics, 1, lease=timedelta(0)) == [T + M, T + 2 * M]
    assert tick_times(kafka_bootstrap, topics.clock_tick) == [T, T + M, T + 2 * M]
