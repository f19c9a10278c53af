"""The gateway's key cache around a database outage (stale-while-error) and its memory
bounds; the lookup is a plain function here, PostgreSQL itself is in tests/e2e."""

from __future__ import annotations

import asyncio

import pytest

from ingest.gateway.auth import KeyAuthenticator
from ingest.gateway.errors import GatewayError
from ingest.gateway.store import KeyRecord, StoreUnavailable

ACTIVE = KeyRecord(True, 1, True, None, None)
REVOKED = KeyRecord(True, 1, False, None, None)
UNKNOWN = KeyRecord(True, None, False, None, None)


class Database:
    """Answers from ``keys``; ``up = False`` makes every call raise StoreUnavailable."""

    def __init__(self, keys: dict[str, KeyRecord]) -> None:
        self.keys = keys
        self.up = True
        self.lookups = 0
        self.probes = 0

    async def lookup(self, project_id: int, public_key: str) -> KeyRecord:
        self.lookups += 1
        if not self.up:
            raise StoreUnavailable("down")
        return self.keys.get(public_key, UNKNOWN)

    async def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise StoreUnavailable("down")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def authenticator(db: Database, clock: Clock, max_entries: int = 100) -> KeyAuthenticator:
    return KeyAuthenticator(db.lookup, ttl=10, clock=clock, max_entries=max_entries, probe=db.probe,
                            probe_interval=0.01)


async def status(auth: KeyAuthenticator, key: str) -> int:
    try:
        await auth.authenticate(1, key)
    except GatewayError as exc:
        return exc.status
    return 202


def test_while_the_database_is_down_known_keys_keep_their_last_answer_and_unseen_keys_get_503() -> None:
    async def scenario() -> None:
        db, clock = Database({"good": ACTIVE, "gone": REVOKED, "later": ACTIVE}), Clock()
        auth = authenticator(db, clock)
        assert [await status(auth, k) for k in ("good", "gone")] == [202, 403]
        db.up, clock.now = False, 60.0  # both answers expired
        assert [await status(auth, k) for k in ("good", "gone", "later")] == [202, 403, 503]
        assert not auth.database_up
        await auth.close()

    asyncio.run(scenario())


def test_while_the_database_is_down_requests_make_no_lookups_and_one_probe_notices_its_return() -> None:
    async def scenario() -> None:
        db, clock = Database({"good": ACTIVE}), Clock()
        auth = authenticator(db, clock)
        await status(auth, "good")
        db.up, clock.now = False, 60.0
        for _ in range(100):
            assert await status(auth, "good") == 202
            assert await status(auth, f"never-seen-{_}") == 503
        assert db.lookups == 2  # the first one, and the one that met the outage
        db.up = True
        for _ in range(200):
            if auth.database_up:
                break
            await asyncio.sleep(0.01)
        assert auth.database_up
        assert await status(auth, "never-seen-0") == 401  # looked up again
        await auth.close()

    asyncio.run(scenario())


def test_a_flood_of_unknown_keys_cannot_push_known_keys_out_of_the_cache() -> None:
    async def scenario() -> None:
        db, clock = Database({"good": ACTIVE}), Clock()
        auth = authenticator(db, clock, max_entries=10)
        await status(auth, "good")
        for i in range(1000):
            assert await status(auth, f"random-{i}") == 401
        db.up, clock.now = False, 60.0
        assert await status(auth, "good") == 202
        await auth.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("variable", ["HTTP_MAX_HEADER_BYTES", "HTTP_HEADER_TIMEOUT", "HTTP_MAX_CONNECTIONS"])
def test_an_http_limit_of_zero_is_refused_naming_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    from schemas.http_limits import HttpLimits
    from schemas.settings import Settings

    monkeypatch.setenv(f"CRONPIPE_{variable}", "0")
    with pytest.raises(ValueError, match=f"CRONPIPE_{variable}="):
        HttpLimits.from_settings(Settings())
