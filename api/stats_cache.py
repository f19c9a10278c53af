"""Rendered stats bodies, kept per API process for at most ``seconds`` (the staleness bound).

A stats request of 90 days at 1 h costs ≈ 7 ms of CPU uncached (the monitor lookup, the
aggregation of 2,160 rollup rows, 2,161 bucket objects, JSON); a dashboard asks the same
ranges again and again. The rules that keep a cached answer correct:

* **Bound.** An entry is stamped with the moment *before* its queries were sent, so it
  reflects the database as of a later snapshot, and it is served only while less than
  ``seconds`` have passed since that stamp: a stats response is never older than the
  bound. That covers the monitor lookup too (a monitor deleted, renamed or moved a moment
  ago may still answer from its old path until the bound passes). The first request in
  the second half of the bound reads again itself while the others keep getting the
  current entry, so a steady stream of requests never waits on a refresh.
* **Tenants.** The key starts with the organization of the caller's token (checked before
  the cache is consulted, by the authenticator) and holds the path exactly as requested;
  an entry is stored only after the monitor was resolved for that organization and path.
  Another organization's token has another key, so it can never reach the entry: it gets
  the same lookup (and 404) as without a cache.
* **Only successes.** Errors (404, 400, 503) are never stored: a monitor created a moment
  ago answers at once.
* **Memory.** At most ``max_bytes`` (bodies plus key text) and ``max_entries`` entries,
  least recently used dropped first; a body larger than that is served without being kept.

Time is injected (``clock``), so tests move it instead of sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from api.resolve import MonitorPath

#: Staleness bound of a stats response from `cronpipe api`, in seconds (docs/api.md, "Stats").
STATS_CACHE_SECONDS = 1.0
#: Per API worker process: 90 days at 1 h is 215 KB, so ≈ 150 such ranges.
STATS_CACHE_BYTES = 32 * 1024 * 1024
STATS_CACHE_ENTRIES = 4096
#: Bytes counted per entry besides its body and key text (the objects around them).
_ENTRY_OVERHEAD = 512


@dataclass(frozen=True)
class StatsKey:
    """Everything a stats answer depends on: who asks, for which path, which buckets."""

    path: MonitorPath
    #: Sorted and deduplicated: the queries match ``environment = ANY(...)``.
    environments: tuple[str, ...] | None
    resolution: int
    first: int
    last: int

    def size(self) -> int:
        text = (self.path.organization_key, self.path.project_key or "", self.path.monitor_key,
                *(self.environments or ()))
        return sum(len(t) for t in text) + _ENTRY_OVERHEAD


def stats_key(path: MonitorPath, environments: list[str] | None, resolution: int, first: int, last: int) -> StatsKey:
    return StatsKey(path, None if environments is None else tuple(sorted(set(environments))), resolution, first, last)


@dataclass(frozen=True)
class _Entry:
    body: bytes
    #: ``clock()`` just before the queries were sent.
    read_at: float
    size: int


class StatsCache:
    """A bounded, time-limited map of :class:`StatsKey` to rendered JSON bodies (0 seconds: off)."""

    def __init__(self, seconds: float = STATS_CACHE_SECONDS, max_bytes: int = STATS_CACHE_BYTES,
                 max_entries: int = STATS_CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[StatsKey, _Entry] = OrderedDict()
        self._refreshing: set[StatsKey] = set()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def body(self, key: StatsKey, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached body of ``key`` while within the bound, else ``compute()``'s (then kept).

        ``compute`` resolves the monitor for ``key.path`` and reads the stats; whatever it
        raises reaches the caller and nothing is stored.
        """
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.read_at < self.seconds:
            self._entries.move_to_end(key)
            if now - entry.read_at < self.seconds / 2 or key in self._refreshing:
                return entry.body
            self._refreshing.add(key)
            try:
                return await self._compute(key, compute, now)
            finally:
                self._refreshing.discard(key)
        return await self._compute(key, compute, now)

    async def _compute(self, key: StatsKey, compute: Callable[[], Awaitable[bytes]], read_at: float) -> bytes:
        body = await compute()
        if self.seconds > 0:
            self._store(key, _Entry(body, read_at, len(body) + key.size()))
        return body

    def _store(self, key: StatsKey, entry: _Entry) -> None:
        current = self._entries.get(key)
        if current is not None and current.read_at > entry.read_at:
            return  # a later read of the same key finished first
        if current is not None:
            self.bytes -= current.size
            del self._entries[key]
        if entry.size > self.max_bytes:
            return
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.size
