"""Per-key token buckets: pure, time is an argument.

A token is one check-in (or one attachment), not one request: an envelope of N check-ins
takes N tokens, all or none (as Relay's quotas, which refuse a whole quantity that does
not fit rather than part of it), so a 2-per-minute key cannot publish 16,000 check-ins
in two envelopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` check-ins per ``window`` seconds (bursts up to ``count``)."""

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

    def acquire(self, key: str, limit: RateLimit, now: float, count: int = 1, *, take: bool = True) -> float | None:
        """Take ``count`` tokens, all or none; return None when allowed, else the seconds
        until ``count`` are free (``math.inf`` when ``count`` exceeds the bucket).
        With ``take=False`` only ask (a cheap refusal before a body is read)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # memory bound; forgetting buckets only refills them
            bucket = self._buckets[key] = _Bucket(float(limit.count), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(limit.count), bucket.tokens + elapsed * limit.per_second)
        bucket.updated = now
        if count > limit.count:
            return math.inf
        if bucket.tokens >= count:
            if take:
                bucket.tokens -= count
            return None
        return (count - bucket.tokens) / limit.per_second
