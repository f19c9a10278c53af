"""One resolution layer for every read route: path segments to rows, or a 404 naming which.

Organization by id or slug (only the token's own), project by id or slug within it,
monitor by guid or slug within the organization (or within the project on project
routes), environment by name, check-in by guid or ``latest``. A foreign object is looked
up with the same single query as a missing one, scoped by the caller's organization, so
the answer and the work done are the same for both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from psycopg import AsyncConnection, errors

from api import store
from api.auth import Authenticator, Grant, bearer_scheme
from api.errors import ApiError, NotFound
from api.store import CheckInRow, EnvironmentRow, MonitorRow, OrgRow, ProjectRow
from api.throttle import client_key

LATEST = "latest"
_MAX_ID_DIGITS = 18  # fits a bigint; longer digit strings can only be slugs


@dataclass(frozen=True)
class MonitorScope:
    """A monitor the caller may read, and the project it was looked up under (if any)."""

    organization: OrgRow
    project: ProjectRow | None
    monitor: MonitorRow


def as_number(key: str) -> int | None:
    """The id a path segment names, if it is one (ASCII digits that fit a bigint)."""
    return int(key) if key.isascii() and key.isdigit() and len(key) <= _MAX_ID_DIGITS else None


def as_guid(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key)
    except ValueError:
        return None


async def find_organization(conn: AsyncConnection[Any], token_org_id: int, key: str) -> OrgRow:
    row = await store.fetch_one(conn, OrgRow, store.ORGANIZATION,
                                {"token_org_id": token_org_id, "number": as_number(key), "key": key})
    if row is None:
        raise NotFound("Organization not found")
    return row


async def find_project(conn: AsyncConnection[Any], organization: OrgRow, key: str) -> ProjectRow:
    row = await store.fetch_one(conn, ProjectRow, store.PROJECT,
                                {"organization_id": organization.id, "number": as_number(key), "key": key})
    if row is None:
        raise NotFound("Project not found")
    return row


async def find_monitor_scope(conn: AsyncConnection[Any], token_org_id: int, organization_key: str,
                             project_key: str | None, monitor_key: str) -> MonitorScope:
    """Organization, project (when ``project_key`` is given) and monitor in one query.

    A 404 names the first one missing, as `organization` and `project` would.
    """
    row = await store.fetch_dict(conn, store.MONITOR_SCOPE, {
        "token_org_id": token_org_id, "organization_number": as_number(organization_key),
        "organization_key": organization_key, "project_number": None if project_key is None else as_number(project_key),
        "project_key": project_key, "guid": as_guid(monitor_key), "key": monitor_key})
    if row is None:
        raise NotFound("Organization not found")
    organization = OrgRow(row.pop("scope_organization_id"), row.pop("scope_organization_slug"))
    project_id, project_slug = row.pop("scope_project_id"), row.pop("scope_project_slug")
    if project_key is not None and project_id is None:
        raise NotFound("Project not found")
    if row["id"] is None:
        raise NotFound("Monitor not found")
    return MonitorScope(organization, None if project_key is None else ProjectRow(project_id, project_slug),
                        MonitorRow(**row))


async def find_environment(conn: AsyncConnection[Any], monitor: MonitorRow, name: str) -> EnvironmentRow:
    rows = await store.fetch_all(conn, EnvironmentRow, store.ENVIRONMENTS,
                                 {"monitor_ids": [monitor.id], "environments": [name]})
    if not rows:
        raise NotFound("Environment not found")
    return rows[0]


async def find_checkin(conn: AsyncConnection[Any], monitor: MonitorRow, key: str,
                       environment: str | None) -> CheckInRow:
    """A check-in by guid, or the newest one (of ``environment`` when given) for ``latest``."""
    if key == LATEST:
        environment_id = (await find_environment(conn, monitor, environment)).id if environment else None
        row = await store.fetch_one(conn, CheckInRow, store.CHECKIN_LATEST,
                                    {"monitor_id": monitor.id, "environment_id": environment_id})
    else:
        guid = as_guid(key)
        row = None if guid is None else await store.fetch_one(
            conn, CheckInRow, store.CHECKIN_BY_GUID, {"monitor_id": monitor.id, "guid": guid})
    if row is None:
        raise NotFound("Check-in not found")
    return row


# --- FastAPI dependencies ---------------------------------------------------------------


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    async with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


async def caller_grant(
    conn: Conn, request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Grant:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(conn, credentials, client_key(request.client and request.client.host))


async def known_or_looked_up_grant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Grant:
    """:func:`caller_grant` for routes that may answer without PostgreSQL (a cached stats body):
    a connection is taken only when the token is not in the authenticator's cache."""
    authenticator: Authenticator = request.app.state.authenticator
    grant = authenticator.known(credentials)
    if grant is not None:
        return grant
    async with request.app.state.pool.connection() as conn:
        return await authenticator.authenticate(conn, credentials,
                                                client_key(request.client and request.client.host))


async def caller_organization_id(grant: Annotated[Grant, Depends(caller_grant)]) -> int:
    return grant.organization_id


async def write_grant(grant: Annotated[Grant, Depends(caller_grant)]) -> Grant:
    """Write routes: 403 for a read token (before anything is looked up)."""
    if not grant.can_write:
        raise ApiError(403, "This token can only read; write routes need a token made with"
                            " `cronpipe token create --org SLUG --scope write`")
    return grant


@asynccontextmanager
async def writing(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A writable connection in one transaction (committed when the block ends without error)."""
    try:
        async with request.app.state.write_pool.connection() as conn, conn.transaction():
            yield conn
    except (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure):
        raise ApiError(503, "The monitor is busy (being written by the pipeline); retry",
                       headers={"Retry-After": "1"}) from None


OrganizationKey = Annotated[str, Path(description="Organization id or slug")]
ProjectKey = Annotated[str, Path(description="Project id or slug")]
MonitorKey = Annotated[str, Path(description="Monitor guid or slug")]


async def organization(
    conn: Conn,
    token_org_id: Annotated[int, Depends(caller_organization_id)],
    organization_id_or_slug: OrganizationKey,
) -> OrgRow:
    return await find_organization(conn, token_org_id, organization_id_or_slug)


Organization = Annotated[OrgRow, Depends(organization)]


async def project(
    conn: Conn, org: Organization, project_id_or_slug: ProjectKey,
) -> ProjectRow:
    return await find_project(conn, org, project_id_or_slug)


# The monitor routes resolve organization, project and monitor in one query (they run on
# every monitor request); the answers are those of `organization` and `project` above.


async def organization_monitor(
    conn: Conn, token_org_id: Annotated[int, Depends(caller_organization_id)],
    organization_id_or_slug: OrganizationKey, monitor_id_or_slug: MonitorKey,
) -> MonitorScope:
    return await find_monitor_scope(conn, token_org_id, organization_id_or_slug, None, monitor_id_or_slug)


async def project_monitor(
    conn: Conn, token_org_id: Annotated[int, Depends(caller_organization_id)],
    organization_id_or_slug: OrganizationKey, project_id_or_slug: ProjectKey, monitor_id_or_slug: MonitorKey,
) -> MonitorScope:
    return await find_monitor_scope(conn, token_org_id, organization_id_or_slug, project_id_or_slug,
                                    monitor_id_or_slug)


@dataclass(frozen=True)
class MonitorPath:
    """A monitor route's path as requested, and the caller's organization, before any query:
    what the stats cache is keyed by (api.stats_cache). :meth:`scope` resolves it as
    ``organization_monitor`` / ``project_monitor`` do."""

    token_organization_id: int
    organization_key: str
    project_key: str | None
    monitor_key: str

    async def scope(self, conn: AsyncConnection[Any]) -> MonitorScope:
        return await find_monitor_scope(conn, self.token_organization_id, self.organization_key, self.project_key,
                                        self.monitor_key)


async def organization_monitor_path(
    grant: Annotated[Grant, Depends(known_or_looked_up_grant)],
    organization_id_or_slug: OrganizationKey, monitor_id_or_slug: MonitorKey,
) -> MonitorPath:
    return MonitorPath(grant.organization_id, organization_id_or_slug, None, monitor_id_or_slug)


async def project_monitor_path(
    grant: Annotated[Grant, Depends(known_or_looked_up_grant)],
    organization_id_or_slug: OrganizationKey, project_id_or_slug: ProjectKey, monitor_id_or_slug: MonitorKey,
) -> MonitorPath:
    return MonitorPath(grant.organization_id, organization_id_or_slug, project_id_or_slug, monitor_id_or_slug)
