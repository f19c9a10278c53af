"""Administrative writes behind `cronpipe org|project|token|key`: the only tables a person creates rows in.

Token and key formats are part of the contract with the gateway and the read API:
- project public keys are 32 lower-case hex characters (as Sentry DSN keys);
- API tokens are ``cpt_`` + 43 url-safe characters, stored only as ``sha256(token)``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import psycopg

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
#: Token scopes (``api_tokens.scope``): read routes only, or read and write routes.
TOKEN_SCOPES = ("read", "write")


class AdminError(ValueError):
    """A request that cannot be carried out; ``str()`` says why."""


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return "cpt_" + secrets.token_urlsafe(32)


def new_public_key() -> str:
    return secrets.token_hex(16)


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot name an organization or project, or None.

    All-digit slugs are refused as Sentry refuses them: the API takes an id or a slug in
    the same path segment, and an all-digit slug would be hidden by the object with that id.
    """
    if not SLUG_RE.match(slug):
        return "use 1-50 of a-z, 0-9, '-' or '_', starting with a letter or digit"
    if slug.isdigit():
        return "a slug cannot be only digits (it would read as an id)"
    return None


def _check_slug(slug: str, what: str) -> None:
    problem = slug_problem(slug)
    if problem is not None:
        raise AdminError(f"invalid {what} slug {slug!r}: {problem}")


@dataclass(frozen=True)
class Org:
    id: int
    slug: str


@dataclass(frozen=True)
class ProjectCreated:
    id: int
    slug: str
    org: str
    public_key: str


def create_org(conn: psycopg.Connection, slug: str, name: str | None = None) -> Org:
    _check_slug(slug, "organization")
    row = conn.execute(
        "INSERT INTO organizations (slug, name) VALUES (%(slug)s, %(name)s)"
        " ON CONFLICT (slug) DO NOTHING RETURNING id",
        {"slug": slug, "name": name or slug},
    ).fetchone()
    if row is None:
        raise AdminError(f"organization {slug!r} already exists")
    return Org(id=row[0], slug=slug)


def _org_id(conn: psycopg.Connection, org_slug: str) -> int:
    row = conn.execute("SELECT id FROM organizations WHERE slug = %s", (org_slug,)).fetchone()
    if row is None:
        raise AdminError(f"organization {org_slug!r} not found (create it with `cronpipe org create {org_slug}`)")
    return int(row[0])


def create_project(conn: psycopg.Connection, org_slug: str, slug: str, project_id: int | None = None,
                   name: str | None = None) -> ProjectCreated:
    """Create a project and its first DSN key. ``project_id`` may be chosen (Sentry's examples use 1)."""
    _check_slug(slug, "project")
    if project_id is not None and project_id <= 0:
        raise AdminError("--id must be a positive integer")
    org_id = _org_id(conn, org_slug)
    if conn.execute("SELECT 1 FROM projects WHERE organization_id = %s AND slug = %s", (org_id, slug)).fetchone():
        raise AdminError(f"project {slug!r} already exists in organization {org_slug!r}")
    if project_id is not None and conn.execute("SELECT 1 FROM projects WHERE id = %s", (project_id,)).fetchone():
        raise AdminError(f"project id {project_id} is already taken")
    if project_id is None:
        # Skip ids that were chosen by hand so the sequence never collides with them.
        project_id = conn.execute(
            "SELECT setval('projects_id_seq', GREATEST(nextval('projects_id_seq'),"
            " COALESCE((SELECT max(id) + 1 FROM projects), 1)))"
        ).fetchone()[0]  # type: ignore[index]
    conn.execute(
        "INSERT INTO projects (id, organization_id, slug, name) VALUES (%s, %s, %s, %s)",
        (project_id, org_id, slug, name or slug),
    )
    key = new_public_key()
    conn.execute("INSERT INTO project_keys (project_id, public_key) VALUES (%s, %s)", (project_id, key))
    return ProjectCreated(id=int(project_id), slug=slug, org=org_slug, public_key=key)


def create_token(conn: psycopg.Connection, org_slug: str, scope: str = "read") -> str:
    if scope not in TOKEN_SCOPES:
        raise AdminError(f"invalid token scope {scope!r}: use read or write")
    org_id = _org_id(conn, org_slug)
    token = new_token()
    conn.execute(
        "INSERT INTO api_tokens (organization_id, token_hash, token_prefix, scope)"
        " VALUES (%(org)s, %(hash)s, %(prefix)s, %(scope)s)",
        {"org": org_id, "hash": hash_token(token), "prefix": token[:8], "scope": scope},
    )
    return token


def list_tokens(conn: psycopg.Connection, org_slug: str) -> list[dict[str, object]]:
    """The organization's tokens, oldest first: id, prefix and scope (the token itself is never stored)."""
    org_id = _org_id(conn, org_slug)
    rows = conn.execute(
        "SELECT id, token_prefix, scope, date_created FROM api_tokens WHERE organization_id = %(org)s ORDER BY id",
        {"org": org_id},
    ).fetchall()
    return [{"id": r[0], "prefix": r[1], "scope": r[2], "org": org_slug, "date_created": r[3].isoformat()}
            for r in rows]


def revoke_token(conn: psycopg.Connection, token_or_id: str) -> int:
    """Delete a token named by its value or its id; return the id. The API stops accepting it
    within its token cache time (10 s)."""
    if token_or_id.isascii() and token_or_id.isdigit():
        row = conn.execute("DELETE FROM api_tokens WHERE id = %(id)s RETURNING id",
                           {"id": int(token_or_id)}).fetchone()
    else:
        row = conn.execute("DELETE FROM api_tokens WHERE token_hash = %(hash)s RETURNING id",
                           {"hash": hash_token(token_or_id)}).fetchone()
    if row is None:
        raise AdminError("no such token (give the token itself or its id from `cronpipe token list`)")
    return int(row[0])


def list_keys(conn: psycopg.Connection, org_slug: str) -> list[dict[str, object]]:
    """The DSN keys of the organization's projects, with their state and rate limit."""
    org_id = _org_id(conn, org_slug)
    rows = conn.execute(
        "SELECT k.public_key, p.id, p.slug, k.is_active, k.rate_limit_count, k.rate_limit_window, k.date_created"
        " FROM project_keys k JOIN projects p ON p.id = k.project_id"
        " WHERE p.organization_id = %(org)s ORDER BY p.id, k.id",
        {"org": org_id},
    ).fetchall()
    return [{"public_key": r[0], "project_id": r[1], "project": r[2], "is_active": r[3],
             "rate_limit": None if r[4] is None else {"count": r[4], "window": r[5]},
             "date_created": r[6].isoformat()} for r in rows]


def revoke_key(conn: psycopg.Connection, public_key: str) -> None:
    cur = conn.execute("UPDATE project_keys SET is_active = false WHERE public_key = %s", (public_key,))
    if cur.rowcount != 1:
        raise AdminError(f"no project key {public_key!r}")


def dsn(public_key: str, host: str, port: int, project_id: int) -> str:
    return f"http://{public_key}@{host}:{port}/{project_id}"
