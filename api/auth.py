"""Bearer tokens: ``sha256(token)`` looked up in ``api_tokens``; each token reads one organization.

The lookup is one unique-index probe on the hash, so a wrong token costs the same whatever
it resembles. Failed attempts are cheap and bounded (see ``api.throttle``): a token that is
not even shaped like one is refused without a query; a wrong token is remembered for a
while, so trying it again costs no query; and a client that keeps failing is answered 429
with ``Retry-After``, without a query, until its back-off allows another attempt. A token
that is already known (cached) is served even to a client in back-off, so a guesser sharing
an address with real users does not lock them out of their dashboards.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from api import store
from api.errors import ApiError
from api.throttle import ExpiringSet, FailureThrottle

#: The OpenAPI security scheme; errors are ours (401 with our body), not FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="`cronpipe token create --org SLUG`")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: ``cronpipe.admin.new_token``: ``cpt_`` and 43 url-safe characters.
TOKEN_SHAPE = re.compile(r"^cpt_[A-Za-z0-9_-]{43}$")
#: Known tokens are remembered this long per process, saving a query on every request; a
#: revoked token stops working within this time.
TOKEN_CACHE_SECONDS = 10.0
TOKEN_CACHE_SIZE = 1024


def hash_token(token: str) -> bytes:
    """Same hash as ``cronpipe.admin.hash_token`` (the API never imports the CLI package)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: one organization, read-only or also write routes."""

    organization_id: int
    can_write: bool


class Authenticator:
    """Per-process token cache, negative cache and failure back-off (all bounded)."""

    def __init__(self, throttle: FailureThrottle | None = None, bad_tokens: ExpiringSet | None = None) -> None:
        self.throttle = throttle or FailureThrottle()
        self.bad_tokens = bad_tokens or ExpiringSet()
        self._known: OrderedDict[bytes, tuple[Grant, float]] = OrderedDict()

    def _cached(self, token_hash: bytes, now: float) -> Grant | None:
        cached = self._known.get(token_hash)
        if cached is None or cached[1] <= now:
            return None
        return cached[0]

    def _remember(self, token_hash: bytes, grant: Grant, now: float) -> None:
        self._known[token_hash] = (grant, now + TOKEN_CACHE_SECONDS)
        self._known.move_to_end(token_hash)
        while len(self._known) > TOKEN_CACHE_SIZE:
            self._known.popitem(last=False)

    def _refuse(self, client: str, token_hash: bytes | None, now: float) -> ApiError:
        self.throttle.record_failure(client, now)
        if token_hash is not None:
            self.bad_tokens.add(token_hash, now)
        return ApiError(401, "Invalid token", headers=_CHALLENGE)

    def known(self, credentials: HTTPAuthorizationCredentials | None) -> Grant | None:
        """The grant of a well-formed bearer token still in the cache, without a query; else None
        (then :meth:`authenticate` decides, with its 401s, 429s and lookup)."""
        if credentials is None or credentials.scheme.lower() != "bearer":
            return None
        if not TOKEN_SHAPE.match(credentials.credentials):
            return None
        return self._cached(hash_token(credentials.credentials), time.monotonic())

    async def authenticate(self, conn: AsyncConnection[Any], credentials: HTTPAuthorizationCredentials | None,
                           client: str) -> Grant:
        """The grant of the bearer token; ApiError 401 (no or wrong token) or 429 (back-off)."""
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(401, "Authentication credentials were not provided.", headers=_CHALLENGE)
        now = time.monotonic()
        token = credentials.credentials
        token_hash = hash_token(token) if TOKEN_SHAPE.match(token) else None
        if token_hash is not None and (grant := self._cached(token_hash, now)) is not None:
            return grant
        wait = self.throttle.retry_after(client, now)
        if wait > 0:
            raise ApiError(429, f"Too many failed authentication attempts; retry in {math.ceil(wait)} s",
                           headers={"Retry-After": str(math.ceil(wait))})
        if token_hash is None or self.bad_tokens.contains(token_hash, now):
            raise self._refuse(client, token_hash, now)
        found = await store.token_grant(conn, token_hash)
        if found is None:
            raise self._refuse(client, token_hash, now)
        grant = Grant(found[0], can_write=found[1] == "write")
        self._remember(token_hash, grant, now)
        return grant
