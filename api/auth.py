"""Bearer tokens: ``sha256(token)`` looked up in ``api_tokens``; each token reads one organization.

Tokens are read-only by construction (the API has no write routes). The lookup is one
unique-index probe on the hash, so a wrong token costs the same whatever it resembles.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from api import store
from api.errors import ApiError

#: The OpenAPI security scheme; errors are ours (401 with our body), not FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="`cronpipe token create --org SLUG`")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: Known tokens are remembered this long per process, saving a query on every request.
#: Tokens are never reassigned to another organization, so a hit is always still right.
TOKEN_CACHE_SECONDS = 30.0
_TOKEN_CACHE_SIZE = 1024
_known_tokens: dict[bytes, tuple[int, float]] = {}


def hash_token(token: str) -> bytes:
    """Same hash as ``cronpipe.admin.hash_token`` (the API never imports the CLI package)."""
    return hashlib.sha256(token.encode()).digest()


async def authenticate(conn: AsyncConnection[Any], credentials: HTTPAuthorizationCredentials | None) -> int:
    """Return the organization id the bearer token may read; raise ApiError(401) otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "Authentication credentials were not provided.", headers=_CHALLENGE)
    token_hash = hash_token(credentials.credentials)
    now = time.monotonic()
    cached = _known_tokens.get(token_hash)
    if cached is not None and cached[1] > now:
        return cached[0]
    organization_id = await store.token_organization(conn, token_hash)
    if organization_id is None:
        raise ApiError(401, "Invalid token", headers=_CHALLENGE)
    if len(_known_tokens) >= _TOKEN_CACHE_SIZE:
        _known_tokens.clear()
    _known_tokens[token_hash] = (organization_id, now + TOKEN_CACHE_SECONDS)
    return organization_id
