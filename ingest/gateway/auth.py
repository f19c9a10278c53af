"""DSN public keys: looked up in PostgreSQL, cached for a short TTL.

A revoked key (``cronpipe key revoke``) stops working once its cache entry expires,
i.e. within ``ttl`` seconds. Negative answers are cached too, so a flood with a bad key
costs one query per TTL, and concurrent requests for one uncached key share one query.
When PostgreSQL is down, an expired entry is reused rather than failing every request:
availability wins over a revocation that could not be read anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingest.gateway.errors import GatewayError
from ingest.gateway.ratelimit import RateLimit
from ingest.gateway.store import KeyRecord, StoreUnavailable

log = logging.getLogger("cronpipe.gateway.auth")

Lookup = Callable[[int, str], Awaitable[KeyRecord]]


@dataclass(frozen=True)
class Grant:
    """The outcome for one (project, key): an error to raise, or the key's rate limit."""

    error: GatewayError | None
    rate_limit: RateLimit | None


def judge(record: KeyRecord, project_id: int, default_limit: RateLimit | None) -> Grant:
    """Decide what a lookup result means (pure)."""
    if not record.project_exists:
        return Grant(GatewayError(404, "unknown_project", f"unknown project {project_id}"), None)
    if record.key_project_id is None:
        return Grant(GatewayError(401, "unknown_key", "unknown public key"), None)
    if record.key_project_id != project_id:
        return Grant(GatewayError(403, "wrong_project", f"public key does not belong to project {project_id}"), None)
    if not record.key_active:
        return Grant(GatewayError(403, "revoked_key", "public key has been revoked"), None)
    if record.rate_limit_count is not None and record.rate_limit_window is not None:
        return Grant(None, RateLimit(record.rate_limit_count, float(record.rate_limit_window)))
    return Grant(None, default_limit)


def missing_key() -> GatewayError:
    return GatewayError(401, "missing_key", "missing public key: use X-Sentry-Auth: Sentry sentry_key=<key> or ?sentry_key=")


class KeyAuthenticator:
    """``await authenticate(project_id, key)`` → the key's rate limit, or raises GatewayError."""

    def __init__(self, lookup: Lookup, *, ttl: float, default_limit: RateLimit | None = None,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._default_limit = default_limit
        self._clock = clock
        self._max_entries = max_entries
        self._cache: dict[tuple[int, str], tuple[float, Grant]] = {}
        self._inflight: dict[tuple[int, str], asyncio.Future[Grant]] = {}

    async def authenticate(self, project_id: int, public_key: str) -> RateLimit | None:
        """Raises GatewayError: 404 unknown project, 401 unknown key, 403 revoked or foreign key,
        503 when PostgreSQL cannot answer and nothing is cached."""
        entry = self._cache.get((project_id, public_key))
        grant = entry[1] if entry is not None and entry[0] > self._clock() else await self._refresh(project_id, public_key)
        if grant.error is not None:
            raise grant.error
        return grant.rate_limit

    async def _refresh(self, project_id: int, public_key: str) -> Grant:
        cache_key = (project_id, public_key)
        pending = self._inflight.get(cache_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._inflight[cache_key] = future
        try:
            grant = await self._fetch(cache_key)
            future.set_result(grant)
            return grant
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[cache_key]

    async def _fetch(self, cache_key: tuple[int, str]) -> Grant:
        try:
            record = await self._lookup(*cache_key)
        except StoreUnavailable as exc:
            stale = self._cache.get(cache_key)
            if stale is not None:
                log.warning("%s; reusing the cached answer", exc)
                return stale[1]
            raise GatewayError(503, "database_unavailable", "cannot verify the public key right now",
                               {"Retry-After": "5"}) from None
        grant = judge(record, cache_key[0], self._default_limit)
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # memory bound against floods of random keys
        self._cache[cache_key] = (self._clock() + self._ttl, grant)
        return grant
