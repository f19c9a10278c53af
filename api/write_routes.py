"""The write routes (issue 12): create, update, mute, disable and delete monitors and
environments, with Sentry's paths, fields and status codes, behind a write token.

The handlers only resolve paths and call :mod:`api.manage` (the code `cronpipe monitor`
runs too) in one transaction, then answer with what that transaction stored.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
registration (see api.routes).
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api import manage, present, store
from api.errors import ApiError, BadParameter
from api.resolve import MonitorScope, Organization, project, write_grant, writing
from api.routes import ERRORS
from api.store import EnvironmentRow, MonitorRow, ProjectRow
from schemas.api import BulkResult, BulkWrite, EnvironmentWrite, ErrorBody, Monitor, MonitorWrite

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 403: {"model": ErrorBody, "description": "The token can only read"},
    503: {"model": ErrorBody, "description": "The monitor stayed locked by the pipeline for 5 s; retry"}}
ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"description": "Deleted; the rows are purged in the background"}}
WriteAccess = [Depends(write_grant)]
EnvironmentName = Annotated[str, Path(description="Environment name")]


async def stored_monitors(conn: Any, monitor_ids: list[int]) -> list[Monitor]:
    """The monitors as the current transaction sees them (what was just stored)."""
    monitors = await store.fetch_all(conn, MonitorRow, store.MONITORS_BY_ID, {"ids": monitor_ids})
    envs = await store.fetch_all(conn, EnvironmentRow, store.ENVIRONMENTS,
                                 {"monitor_ids": monitor_ids, "environments": None})
    by_monitor: dict[int, list[EnvironmentRow]] = {m.id: [] for m in monitors}
    for env in envs:
        by_monitor[env.monitor_id].append(env)
    return [present.monitor(m, by_monitor[m.id]) for m in monitors]


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.now()
    return now


def monitor_write_routes(resolve_monitor: Callable[..., Awaitable[MonitorScope]]) -> APIRouter:
    """PUT/DELETE on a monitor and its environments, registered under both prefixes."""
    router = APIRouter(responses=WRITE_ERRORS, dependencies=WriteAccess)
    Scope = Annotated[MonitorScope, Depends(resolve_monitor)]

    @router.put("/", response_model=Monitor, summary="Update a monitor (partial; config is merged)")
    async def update_monitor(scope: Scope, request: Request, body: MonitorWrite) -> Monitor:
        async with writing(request) as conn:
            await manage.update_monitor(conn, scope.organization.id, scope.monitor.id, body, _now(request))
            return (await stored_monitors(conn, [scope.monitor.id]))[0]

    @router.delete("/", status_code=202, response_class=Response, responses=ACCEPTED,
                   summary="Delete a monitor, or only the environments named by ?environment=")
    async def delete_monitor(
        scope: Scope, request: Request,
        environment: Annotated[list[str] | None, Query(description="Environment name; repeatable")] = None,
    ) -> Response:
        async with writing(request) as conn:
            await manage.delete_monitor(conn, scope.organization.id, scope.monitor.id, environment)
        return Response(status_code=202)

    @router.put("/environments/{environment}/", response_model=Monitor, summary="Mute or unmute one environment")
    async def update_environment(scope: Scope, request: Request, environment: EnvironmentName,
                                 body: EnvironmentWrite) -> Monitor:
        async with writing(request) as conn:
            await manage.set_environment_muted(conn, scope.organization.id, scope.monitor.id, environment,
                                               body.is_muted)
            return (await stored_monitors(conn, [scope.monitor.id]))[0]

    @router.delete("/environments/{environment}/", status_code=202, response_class=Response, responses=ACCEPTED,
                   summary="Delete one environment")
    async def delete_environment(scope: Scope, request: Request, environment: EnvironmentName) -> Response:
        async with writing(request) as conn:
            await manage.delete_monitor(conn, scope.organization.id, scope.monitor.id, [environment])
        return Response(status_code=202)

    return router


def organization_write_routes() -> APIRouter:
    """POST (create) and bulk PUT on ``/organizations/{org}/monitors/``."""
    router = APIRouter(responses=WRITE_ERRORS, dependencies=WriteAccess)

    @router.post("/monitors/", status_code=201, response_model=Monitor, summary="Create a monitor")
    async def create_monitor(org: Organization, request: Request, body: MonitorWrite) -> Monitor:
        async with writing(request) as conn:
            monitor_id = await manage.create_monitor(conn, org.id, body)
            return (await stored_monitors(conn, [monitor_id]))[0]

    @router.put("/monitors/", response_model=BulkResult, summary="Bulk edit: status and/or isMuted of many monitors")
    async def bulk_edit(org: Organization, request: Request, body: BulkWrite) -> BulkResult:
        return await _bulk_edit(request, org.id, None, body)

    return router


def project_write_routes() -> APIRouter:
    """POST and bulk PUT on ``/projects/{org}/{project}/monitors/``: the project is the path's."""
    router = APIRouter(responses=WRITE_ERRORS, dependencies=WriteAccess)

    @router.post("/monitors/", status_code=201, response_model=Monitor, summary="Create a monitor in this project")
    async def create_project_monitor(org: Organization, proj: Annotated[ProjectRow, Depends(project)],
                                     request: Request, body: MonitorWrite) -> Monitor:
        async with writing(request) as conn:
            if body.project is not None and str(body.project) not in (str(proj.id), proj.slug):
                raise BadParameter("project", "differs from the project in the path")
            monitor_id = await manage.create_monitor(conn, org.id, body.model_copy(update={"project": proj.id}))
            return (await stored_monitors(conn, [monitor_id]))[0]

    @router.put("/monitors/", response_model=BulkResult, summary="Bulk edit monitors of this project")
    async def bulk_edit_project(org: Organization, proj: Annotated[ProjectRow, Depends(project)], request: Request,
                                body: BulkWrite) -> BulkResult:
        return await _bulk_edit(request, org.id, proj.id, body)

    return router


async def _bulk_edit(request: Request, organization_id: int, project_id: int | None, body: BulkWrite) -> BulkResult:
    guids = [g for g in (_guid(i) for i in body.ids) if g is not None]
    if len(guids) != len(body.ids):  # not even a guid: not valid for this organization either
        raise ApiError(400, manage.NOT_ALL_IDS, "ids")
    async with writing(request) as conn:
        ids = await manage.bulk_update(conn, organization_id, guids,
                                       MonitorWrite(status=body.status, is_muted=body.is_muted), _now(request),
                                       project_id)
        return BulkResult(updated=await stored_monitors(conn, ids), errored=[])


def _guid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
