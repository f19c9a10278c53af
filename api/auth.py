"""Bearer tokens: ``sha256(token)`` looked up in ``api_tokens``; each token reads one organization.

Tokens are read-only by construction (the API has no write routes). The lookup is one
unique-index probe on the hash, so a wrong token costs the same whatever it resembles.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from api import store
from api.errors import ApiError

#: The OpenAPI security scheme; errors are ours (401 with our body), not FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="`cronpipe token create --org SLUG`")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def hash_token(token: str) -> bytes:
    """Same hash as ``cronpipe.admin.hash_token`` (the API never imports the CLI package)."""
    return hashlib.sha256(token.encode()).digest()


async def authenticate(conn: AsyncConnection[Any], credentials: HTTPAuthorizationCredentials | None) -> int:
    """Return the organization id the bearer token may read; raise ApiError(401) otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "Authentication credentials were not provided.", headers=_CHALLENGE)
    organization_id = await store.token_organization(conn, hash_token(credentials.credentials))
    if organization_id is None:
        raise ApiError(401, "Invalid token", headers=_CHALLENGE)
    return organization_id
