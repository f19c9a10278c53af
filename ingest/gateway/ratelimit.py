"""Per-key token buckets: pure, time is an argument."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` requests per ``window`` seconds (bursts up to ``count``)."""

    count: int
    window: float

    @property
    def per_second(self) -> float:
        return self.count / self.window


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyRateLimiter:
    """One token bucket per public key, in this process.

    With several worker processes each keeps its own buckets, so a key may reach up to
    ``workers`` × its limit; exact global limits would cost a shared store round trip on
    every request.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def acquire(self, key: str, limit: RateLimit, now: float) -> float | None:
        """Take one token; return None when allowed, else the seconds until one is free."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # memory bound; forgetting buckets only refills them
            bucket = self._buckets[key] = _Bucket(float(limit.count), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(limit.count), bucket.tokens + elapsed * limit.per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / limit.per_second
