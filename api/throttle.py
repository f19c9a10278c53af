"""Bounded bookkeeping for failed authentication: a per-client back-off and a negative cache.

Pure logic, time is an argument. Both structures hold at most a fixed number of entries
(oldest evicted first), so no sequence of requests grows the process without bound.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

#: Failed attempts a client may make at once before it is slowed down.
FAILURE_BURST = 10
#: Failed attempts per second a client earns back after the burst (the sustained rate).
FAILURES_PER_SECOND = 1.0
#: Clients remembered; the oldest is forgotten first (memory stays bounded under any spread).
MAX_CLIENTS = 10_000
#: Token hashes known to be wrong, and how long that is remembered.
MAX_BAD_TOKENS = 4_096
BAD_TOKEN_SECONDS = 30.0


def client_key(host: str | None) -> str:
    """The unit of back-off: an IPv4 address, or an IPv6 /64 (one host's usual allocation)."""
    if not host:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Bucket:
    allowance: float
    updated: float


class FailureThrottle:
    """A token bucket of failed attempts per client: ``burst`` at once, ``rate`` per second after."""

    def __init__(self, burst: int = FAILURE_BURST, rate: float = FAILURES_PER_SECOND,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def _refilled(self, client: str, now: float) -> _Bucket | None:
        bucket = self._clients.get(client)
        if bucket is not None:
            bucket.allowance = min(self.burst, bucket.allowance + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try an unknown token again; 0 when it may now."""
        bucket = self._refilled(client, now)
        if bucket is None or bucket.allowance >= 1.0:
            return 0.0
        return (1.0 - bucket.allowance) / self.rate

    def record_failure(self, client: str, now: float) -> None:
        bucket = self._refilled(client, now)
        if bucket is None:
            bucket = self._clients[client] = _Bucket(self.burst, now)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        bucket.allowance = max(bucket.allowance - 1.0, 0.0)


class ExpiringSet:
    """Keys remembered for ``seconds``, at most ``max_size`` of them (oldest evicted first)."""

    def __init__(self, max_size: int = MAX_BAD_TOKENS, seconds: float = BAD_TOKEN_SECONDS) -> None:
        self.max_size = max_size
        self.seconds = seconds
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def contains(self, key: bytes, now: float) -> bool:
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if expiry <= now:
            del self._expiry[key]
            return False
        return True

    def add(self, key: bytes, now: float) -> None:
        self._expiry[key] = now + self.seconds
        self._expiry.move_to_end(key)
        while len(self._expiry) > self.max_size:
            self._expiry.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self._expiry.pop(key, None)
