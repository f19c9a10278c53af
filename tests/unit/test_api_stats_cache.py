"""The stats cache on its own: the staleness bound, refresh in the second half, nothing kept
from a failure, and memory bounded by bytes and entries (api.stats_cache)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from api.resolve import MonitorPath
from api.stats_cache import StatsCache, StatsKey, stats_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(monitor: str = "nightly", organization_id: int = 1, environments: list[str] | None = None) -> StatsKey:
    return stats_key(MonitorPath(organization_id, "acme", None, monitor), environments, 3600, 0, 7200)


def counter(prefix: bytes = b"body") -> tuple[Callable[[], Awaitable[bytes]], list[int]]:
    """A compute function answering prefix-1, prefix-2, … and the list of its calls."""
    calls: list[int] = []

    async def compute() -> bytes:
        calls.append(len(calls) + 1)
        return prefix + b"-%d" % len(calls)
    return compute, calls


def body(cache: StatsCache, k: StatsKey, compute: Callable[[], Awaitable[bytes]]) -> bytes:
    return asyncio.run(cache.body(k, compute))


def test_an_answer_is_served_from_the_cache_only_while_younger_than_the_bound() -> None:
    clock = Clock()
    cache = StatsCache(seconds=2.0, clock=clock)
    compute, calls = counter()
    assert body(cache, key(), compute) == b"body-1"
    clock.now += 0.9
    assert body(cache, key(), compute) == b"body-1"
    clock.now += 1.1  # exactly the bound since the read: too old
    assert body(cache, key(), compute) == b"body-2"
    assert calls == [1, 2]


def test_the_first_request_in_the_second_half_of_the_bound_reads_again() -> None:
    clock = Clock()
    cache = StatsCache(seconds=2.0, clock=clock)
    compute, calls = counter()
    body(cache, key(), compute)
    clock.now += 1.0
    assert body(cache, key(), compute) == b"body-2"
    clock.now += 0.9  # 1.9 s after the first read, 0.9 s after the second
    assert body(cache, key(), compute) == b"body-2"
    assert calls == [1, 2]


def test_while_one_request_refreshes_the_others_get_the_current_answer() -> None:
    clock = Clock()
    cache = StatsCache(seconds=2.0, clock=clock)
    asyncio.run(cache.body(key(), lambda: _value(b"old")))
    clock.now += 1.5
    release = asyncio.Event()

    async def slow() -> bytes:
        await release.wait()
        return b"new"

    async def scenario() -> tuple[bytes, bytes, bytes]:
        refreshing = asyncio.create_task(cache.body(key(), slow))
        await asyncio.sleep(0)
        meanwhile = await cache.body(key(), lambda: _value(b"unwanted"))
        release.set()
        refreshed = await refreshing
        return meanwhile, refreshed, await cache.body(key(), lambda: _value(b"unwanted"))

    assert asyncio.run(scenario()) == (b"old", b"new", b"new")


def test_an_entry_past_the_bound_is_never_served_even_while_a_refresh_is_still_running() -> None:
    clock = Clock()
    cache = StatsCache(seconds=2.0, clock=clock)
    asyncio.run(cache.body(key(), lambda: _value(b"old")))
    clock.now += 1.5
    release = asyncio.Event()

    async def stuck() -> bytes:
        await release.wait()
        return b"late"

    async def scenario() -> bytes:
        refreshing = asyncio.create_task(cache.body(key(), stuck))
        await asyncio.sleep(0)
        clock.now += 0.5  # the old entry reaches the bound while the refresh still waits
        answer = await cache.body(key(), lambda: _value(b"fresh"))
        release.set()
        await refreshing
        return answer

    assert asyncio.run(scenario()) == b"fresh"


async def _value(value: bytes) -> bytes:
    return value


def test_a_stamp_is_taken_before_the_read_so_a_slow_read_counts_against_the_bound() -> None:
    clock = Clock()
    cache = StatsCache(seconds=2.0, clock=clock)

    async def slow_read() -> bytes:
        clock.now += 1.5  # the read itself took 1.5 s
        return b"read"

    body(cache, key(), slow_read)
    clock.now += 0.5
    compute, calls = counter()
    assert body(cache, key(), compute) == b"body-1"
    assert calls == [1]


def test_a_failed_read_is_not_kept_and_reaches_the_caller() -> None:
    cache = StatsCache(seconds=2.0, clock=Clock())

    async def failing() -> bytes:
        raise RuntimeError("database unavailable")

    with pytest.raises(RuntimeError):
        body(cache, key(), failing)
    compute, _calls = counter()
    assert body(cache, key(), compute) == b"body-1"
    assert len(cache) == 1


def test_keys_differ_by_organization_path_environments_and_buckets() -> None:
    cache = StatsCache(seconds=2.0, clock=Clock())
    compute, _calls = counter()
    keys = [key(), key(organization_id=2), key(monitor="other"), key(environments=["production"]),
            stats_key(MonitorPath(1, "acme", "backend", "nightly"), None, 3600, 0, 7200),
            stats_key(MonitorPath(1, "acme", None, "nightly"), None, 86400, 0, 7200),
            stats_key(MonitorPath(1, "acme", None, "nightly"), None, 3600, 3600, 7200)]
    assert [body(cache, k, compute) for k in keys] == [b"body-%d" % n for n in range(1, 8)]
    assert [body(cache, k, compute) for k in keys] == [b"body-%d" % n for n in range(1, 8)]


def test_environments_are_one_key_in_any_order_or_repetition() -> None:
    assert key(environments=["staging", "production", "staging"]) == key(environments=["production", "staging"])
    assert key(environments=[]) != key(environments=None)


def test_memory_stays_within_the_byte_and_entry_bounds_dropping_the_least_recently_used() -> None:
    cache = StatsCache(seconds=60.0, max_bytes=10 * (1000 + 600), max_entries=8, clock=Clock())
    bodies = {f"m{i}": b"x" * 1000 for i in range(50)}
    for name, value in bodies.items():
        body(cache, key(monitor=name), lambda v=value: _value(v))  # type: ignore[misc]
        body(cache, key(monitor="m0"), lambda: _value(b"recomputed"))  # m0 stays recently used
        assert cache.bytes <= cache.max_bytes and len(cache) <= 8
    compute, _calls = counter()
    assert body(cache, key(monitor="m0"), compute) == b"x" * 1000
    assert body(cache, key(monitor="m1"), compute) == b"body-1"  # dropped long ago
    assert body(cache, key(monitor="m49"), compute) == b"x" * 1000


def test_a_body_larger_than_the_whole_cache_is_served_but_not_kept() -> None:
    cache = StatsCache(seconds=60.0, max_bytes=4096, clock=Clock())
    assert body(cache, key(), lambda: _value(b"y" * 10_000)) == b"y" * 10_000
    assert len(cache) == 0 and cache.bytes == 0


def test_long_keys_count_against_the_byte_bound() -> None:
    cache = StatsCache(seconds=60.0, max_bytes=100_000, clock=Clock())
    for i in range(100):
        body(cache, key(environments=[f"{i}-" + "e" * 5000]), lambda: _value(b"[]"))
    assert cache.bytes <= 100_000 and len(cache) < 20


def test_a_zero_bound_keeps_nothing() -> None:
    cache = StatsCache(seconds=0.0, clock=Clock())
    compute, _calls = counter()
    assert [body(cache, key(), compute) for _ in range(3)] == [b"body-1", b"body-2", b"body-3"]
    assert len(cache) == 0
