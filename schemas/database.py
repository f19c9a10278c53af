"""The database boundary shared by every service that consumes a topic (the worker's
consumers and the notifier): psycopg errors turned into cronpipe errors, and the consumed
offsets stored in PostgreSQL.

:func:`wrap_exceptions` is the one place that sorts psycopg's error types; callers see
:class:`StoreUnavailable` (transient: back off and retry the same work) or
:class:`StoreError` (permanent: stop loudly). The offsets are written in the transaction
of the batch that consumed them, which is what makes each consumer's effects exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import psycopg
import psycopg.errors

__all__ = [
    "Conn",
    "StoreError",
    "StoreUnavailable",
    "load_all_offsets",
    "load_offsets",
    "save_offsets",
    "wrap_exceptions",
]

Conn = psycopg.Connection[Any]


class StoreError(RuntimeError):
    """A database error that retrying the same batch will not fix (a bug or a bad schema)."""


class StoreUnavailable(StoreError):
    """A transient database error (connection lost, deadlock, serialization): retry the batch."""


@contextlib.contextmanager
def wrap_exceptions() -> Iterator[None]:
    """Turn psycopg errors into StoreUnavailable (transient) or StoreError (permanent)."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError,
            psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
        raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
    except psycopg.errors.CheckViolation as exc:
        if "no partition of relation" not in str(exc):
            raise StoreError(f"database error: {_first_line(exc)}") from exc
        # The maintenance dropped an expired day's partition after this batch made sure
        # it existed: the retry creates it again (consumers.maintenance).
        raise StoreUnavailable(f"partition gone meanwhile: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"database error: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --------------------------------------------------------------------------- offsets

# A transaction-scoped advisory lock per (group, topic, partition), taken in partition
# order: it serializes two consumers of one partition (the old and the new owner during a
# rebalance) even before the partition has a consumer_offsets row to lock.
LOCK_PARTITIONS = """
SELECT pg_advisory_xact_lock(hashtextextended(%(group)s || '/' || %(topic)s || '/' || p, 0))
  FROM unnest(%(partitions)b::integer[]) AS p ORDER BY p
"""

LOAD_OFFSETS = """
SELECT partition, next_offset FROM consumer_offsets
 WHERE consumer_group = %(group)s AND topic = %(topic)s AND partition = ANY(%(partitions)b::integer[])
"""

SAVE_OFFSETS = """
INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
SELECT %(group)s, %(topic)s, p, o FROM unnest(%(partitions)b::integer[], %(offsets)b::bigint[]) AS t (p, o)
ON CONFLICT (consumer_group, topic, partition)
DO UPDATE SET next_offset = GREATEST(consumer_offsets.next_offset, excluded.next_offset)
"""

LOAD_ALL_OFFSETS = """
SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %(group)s AND topic = %(topic)s
"""


def load_offsets(conn: Conn, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Next offset to process per partition; the partitions stay locked until the
    transaction ends, so that two consumers of one partition apply a batch once."""
    params = {"group": group, "topic": topic, "partitions": sorted(set(partitions))}
    conn.execute(LOCK_PARTITIONS, params)
    return {partition: offset for partition, offset in conn.execute(LOAD_OFFSETS, params)}


def load_all_offsets(conn: Conn, group: str, topic: str) -> dict[int, int]:
    return {p: o for p, o in conn.execute(LOAD_ALL_OFFSETS, {"group": group, "topic": topic})}


def save_offsets(conn: Conn, group: str, topic: str, next_offsets: Mapping[int, int]) -> None:
    partitions = sorted(next_offsets)
    conn.execute(SAVE_OFFSETS, {"group": group, "topic": topic, "partitions": partitions,
                                "offsets": [next_offsets[p] for p in partitions]})
