"""DSN public keys: looked up in PostgreSQL, cached for a short TTL.

A revoked key (``cronpipe key revoke``) stops working once its cache entry expires,
i.e. within ``ttl`` seconds. Negative answers are cached too, so a flood with a bad key
costs one query per TTL, and concurrent requests for one uncached key share one query.
When PostgreSQL is down, the last good answer is used rather than failing every request
or waiting for the pool's timeout (see KeyAuthenticator): availability wins over a
revocation that could not be read anyway. Kafka, not PostgreSQL, is the critical path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingest.gateway.errors import GatewayError
from ingest.gateway.metrics import Metrics
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
    """``await authenticate(project_id, key)`` → the key's rate limit, or raises GatewayError.

    Stale-while-error: once a lookup fails (PostgreSQL unreachable) the authenticator
    knows the database is down and stops asking it on requests. Until a single background
    probe sees PostgreSQL answer again, every key is judged by its last good answer,
    however old (a key revoked during the outage keeps working until then; one revoked
    before it stays refused), and a key never seen gets a 503 at once.

    Memory is bounded: keys that exist (active, revoked, foreign) and unknown keys are
    kept apart, each up to ``max_entries``, oldest dropped first, so a flood of random
    keys cannot push the real ones out.
    """

    def __init__(self, lookup: Lookup, *, probe: Callable[[], Awaitable[None]], ttl: float,
                 default_limit: RateLimit | None = None, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 100_000, probe_interval: float = 1.0, metrics: Metrics | None = None) -> None:
        """``probe`` raises StoreUnavailable until PostgreSQL answers again."""
        self._lookup = lookup
        self._ttl = ttl
        self._default_limit = default_limit
        self._clock = clock
        self._max_entries = max_entries
        self._known: dict[tuple[int, str], tuple[float, Grant]] = {}
        self._unknown: dict[tuple[int, str], tuple[float, Grant]] = {}
        self._inflight: dict[tuple[int, str], asyncio.Future[Grant]] = {}
        self._probe = probe
        self._probe_interval = probe_interval
        self._down_since: float | None = None
        self._prober: asyncio.Task[None] | None = None
        self._metrics = metrics

    @property
    def database_up(self) -> bool:
        """False from a failed lookup until the probe reaches PostgreSQL again."""
        return self._down_since is None

    async def authenticate(self, project_id: int, public_key: str) -> RateLimit | None:
        """Raises GatewayError: 404 unknown project, 401 unknown key, 403 revoked or foreign key,
        503 when PostgreSQL cannot answer and the key was never seen."""
        cache_key = (project_id, public_key)
        entry = self._known.get(cache_key) or self._unknown.get(cache_key)
        if entry is not None and (entry[0] > self._clock() or self._down_since is not None):
            if entry[0] <= self._clock() and self._metrics is not None:
                self._metrics.stale_keys.inc()
            grant = entry[1]
        elif self._down_since is not None:
            raise _database_unavailable()
        else:
            grant = await self._refresh(cache_key)
        if grant.error is not None:
            raise grant.error
        return grant.rate_limit

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober

    async def _refresh(self, cache_key: tuple[int, str]) -> Grant:
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
            self._mark_down(exc)
            stale = self._known.get(cache_key) or self._unknown.get(cache_key)
            if stale is not None:
                if self._metrics is not None:
                    self._metrics.stale_keys.inc()
                return stale[1]
            raise _database_unavailable() from None
        grant = judge(record, cache_key[0], self._default_limit)
        self._remember(self._known if record.key_project_id is not None else self._unknown, cache_key, grant)
        return grant

    def _remember(self, cache: dict[tuple[int, str], tuple[float, Grant]], cache_key: tuple[int, str],
                  grant: Grant) -> None:
        self._known.pop(cache_key, None)
        self._unknown.pop(cache_key, None)
        if len(cache) >= self._max_entries:
            del cache[next(iter(cache))]  # the oldest answer: dicts keep insertion order
        cache[cache_key] = (self._clock() + self._ttl, grant)

    # ------------------------------------------------------------------ outage

    def _mark_down(self, exc: StoreUnavailable) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            if self._metrics is not None:
                self._metrics.database_up.set(0)
            log.warning("%s; PostgreSQL is unreachable: judging %d known and %d unknown keys by their last "
                        "answer, 503 for keys never seen, until it answers again", exc, len(self._known),
                        len(self._unknown))
        if self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        """The one place that asks PostgreSQL while it is down."""
        try:
            while True:
                await asyncio.sleep(self._probe_interval)
                try:
                    await self._probe()
                except StoreUnavailable:
                    continue
                down_for = self._clock() - (self._down_since or self._clock())
                self._down_since = None
                if self._metrics is not None:
                    self._metrics.database_up.set(1)
                log.warning("PostgreSQL answers again after %.1f s; keys are looked up again", down_for)
                return
        finally:
            self._prober = None


def _database_unavailable() -> GatewayError:
    return GatewayError(503, "database_unavailable", "cannot verify the public key right now", {"Retry-After": "5"})
