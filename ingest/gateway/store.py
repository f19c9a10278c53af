"""The gateway's only SQL: what PostgreSQL says about a (project, public key) pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

# One round trip answers every question the gateway asks: does the project exist, and
# whose key is this, active or not, with which rate limit.
LOOKUP_KEY: Final = """
SELECT EXISTS (SELECT 1 FROM projects WHERE id = %(project_id)s::bigint) AS project_exists,
       k.project_id AS key_project_id,
       coalesce(k.is_active, false) AS key_active,
       k.rate_limit_count,
       k.rate_limit_window
FROM (SELECT 1) AS one
LEFT JOIN project_keys AS k ON k.public_key = %(public_key)s::text
"""


@dataclass(frozen=True)
class KeyRecord:
    project_exists: bool
    key_project_id: int | None
    """None when no key has this public key."""
    key_active: bool
    rate_limit_count: int | None
    rate_limit_window: int | None


class StoreUnavailable(RuntimeError):
    """PostgreSQL could not answer (down, overloaded); the request gets a 503."""


#: psycopg_pool's reconnect delay doubles from 1 s up to ``reconnect_timeout`` (default
#: 300 s), so the gap between attempts — and the recovery after PostgreSQL returns — grew
#: with the outage. Giving up an attempt chain after 4 s keeps the gaps ≤ 2 s; the next
#: checkout (a lookup or the outage probe) starts a new chain.
RECONNECT_TIMEOUT_S = 4.0


class KeyStore:
    """A small async connection pool and the key lookup; open it before use.

    Connections are checked on checkout, so one broken by a PostgreSQL restart is replaced
    rather than failing a lookup.
    """

    def __init__(self, database_url: str, *, max_size: int = 4, timeout_s: float = 2.0) -> None:
        self._pool = AsyncConnectionPool(database_url, min_size=1, max_size=max_size, open=False,
                                         timeout=timeout_s, kwargs={"autocommit": True, "connect_timeout": 3},
                                         check=AsyncConnectionPool.check_connection,
                                         reconnect_timeout=RECONNECT_TIMEOUT_S)

    async def open(self) -> None:
        # wait=False: the gateway starts (and serves cached keys) even if PostgreSQL is late.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def lookup(self, project_id: int, public_key: str) -> KeyRecord:
        """Raises StoreUnavailable when PostgreSQL does not answer."""
        try:
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=class_row(KeyRecord))
                await cur.execute(LOOKUP_KEY, {"project_id": project_id, "public_key": public_key})
                row = await cur.fetchone()
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreUnavailable(f"key lookup failed: {type(exc).__name__}: {exc}") from None
        assert row is not None  # the query always returns one row
        return row

    async def ping(self) -> None:
        """Raises StoreUnavailable unless PostgreSQL answers a trivial query."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreUnavailable(f"PostgreSQL ping failed: {type(exc).__name__}") from None
