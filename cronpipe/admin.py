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


class AdminError(ValueError):
    """A request that cannot be carried out; ``str()`` says why."""


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return "cpt_" + secrets.token_urlsafe(32)


def new_public_key() -> str:
    return secrets.token_hex(16)


def _check_slug(slug: str, what: str) -> None:
    if not SLUG_RE.match(slug):
        raise AdminError(f"invalid {what} slug {slug!r}: use 1-50 of a-z, 0-9, '-' or '_', starting with a letter or digit")


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


def create_token(conn: psycopg.Connection, org_slug: str) -> str:
    org_id = _org_id(conn, org_slug)
    token = new_token()
    conn.execute(
        "INSERT INTO api_tokens (organization_id, token_hash, token_prefix) VALUES (%s, %s, %s)",
        (org_id, hash_token(token), token[:8]),
    )
    return token


def revoke_key(conn: psycopg.Connection, public_key: str) -> None:
    cur = conn.execute("UPDATE project_keys SET is_active = false WHERE public_key = %s", (public_key,))
    if cur.rowcount != 1:
        raise AdminError(f"no project key {public_key!r}")


def dsn(public_key: str, host: str, port: int, project_id: int) -> str:
    return f"http://{public_key}@{host}:{port}/{project_id}"
