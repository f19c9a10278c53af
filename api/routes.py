"""The read API's routes.

Monitor resources are written once, in :func:`monitor_routes`, and registered twice:
under ``/organizations/{org}/monitors/{monitor}`` and under
``/projects/{org}/{project}/monitors/{monitor}``. The two registrations differ only in
the dependency that resolves the monitor, so twins return identical bodies.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
registration, and the closures' local ``Scope`` alias only exists at that moment.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api import present, store
from api.checkin_pages import checkin_page
from api.errors import BadParameter, NotFound
from api.pagination import MAX_PER_PAGE, link_header
from api.params import MAX_TIMESTAMP, Cursor, TimeRange, from_unix, parse_cursor, parse_duration, time_range
from api.resolve import (
    Conn,
    MonitorPath,
    MonitorScope,
    Organization,
    as_number,
    find_checkin,
    find_environment,
    project,
)
from api.responses import RenderedJsonResponse, render_json
from api.stats import StatsPlan, fill_buckets, plan_stats, unix
from api.stats_cache import StatsCache, stats_key
from api.store import EnvironmentRow, MonitorRow, ProcessingErrorRow, ProjectRow
from schemas.api import CheckIn, EnvironmentDetails, ErrorBody, Monitor, ProcessingError, StatsBucket
from schemas.enums import MonitorStatus, parse_monitor_status

ORG_PREFIX = "/api/0/organizations/{organization_id_or_slug}"
PROJECT_PREFIX = "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}"
#: Check-ins shown on the environment endpoint.
RECENT_CHECKINS = 10
DEFAULT_STATS_RANGE = timedelta(days=1)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter (named in `parameter`)"},
    401: {"model": ErrorBody, "description": "Missing or invalid token"},
    404: {"model": ErrorBody, "description": "Organization, project, monitor, environment or check-in not found"},
}

Environments = Annotated[list[str] | None, Query(description="Environment name; repeatable")]
UnixSeconds = Annotated[float | None, Query(ge=0, le=MAX_TIMESTAMP, description="Unix seconds")]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE)]
CursorParam = Annotated[str | None, Query(description="From a Link header")]
CheckinKey = Annotated[str, Path(description="Check-in guid, or `latest`")]
LatestEnvironment = Annotated[str | None, Query(description="For `latest`: newest check-in of this environment")]


async def _environments(conn: Any, monitors: list[MonitorRow],
                        names: list[str] | None) -> dict[int, list[EnvironmentRow]]:
    by_monitor: dict[int, list[EnvironmentRow]] = {m.id: [] for m in monitors}
    rows = await store.fetch_all(conn, EnvironmentRow, store.ENVIRONMENTS,
                                 {"monitor_ids": list(by_monitor), "environments": names})
    for row in rows:
        by_monitor[row.monitor_id].append(row)
    return by_monitor


def _offset_link(request: Request, response: Response, offset: int, per_page: int, more: bool) -> None:
    response.headers["Link"] = link_header(
        request, Cursor(0, max(offset - per_page, 0), True), offset > 0,
        Cursor(0, offset + per_page, False), more)


def _offset(cursor: str | None) -> int:
    parsed = parse_cursor(cursor)
    return 0 if parsed is None else parsed.offset


async def _processing_errors(conn: Any, request: Request, response: Response, organization_id: int,
                             project_id: int | None, monitor_id: int | None, cursor: str | None,
                             per_page: int) -> list[ProcessingError]:
    offset = _offset(cursor)
    rows = await store.fetch_all(conn, ProcessingErrorRow, store.PROCESSING_ERRORS, {
        "organization_id": organization_id, "project_id": project_id, "monitor_id": monitor_id,
        "limit": per_page + 1, "offset": offset})
    _offset_link(request, response, offset, per_page, len(rows) > per_page)
    return [present.processing_error(r) for r in rows[:per_page]]


def monitor_routes(resolve_monitor: Callable[..., Awaitable[MonitorScope]],
                   monitor_path: Callable[..., Awaitable[MonitorPath]]) -> APIRouter:
    """Every monitor resource, resolved by ``resolve_monitor`` (organization or project scope);
    the stats route takes ``monitor_path`` (the same path, not yet looked up) and resolves it
    only when its answer is not cached."""
    router = APIRouter(responses=ERRORS)
    Scope = Annotated[MonitorScope, Depends(resolve_monitor)]
    RequestedMonitor = Annotated[MonitorPath, Depends(monitor_path)]

    @router.get("/", response_model=Monitor, summary="Monitor details")
    async def monitor_details(scope: Scope, conn: Conn) -> Monitor:
        environments = await _environments(conn, [scope.monitor], None)
        return present.monitor(scope.monitor, environments[scope.monitor.id])

    @router.get("/checkins/", response_model=list[CheckIn], summary="Check-ins, newest first")
    async def monitor_checkins(
        scope: Scope, conn: Conn, request: Request, response: Response, environment: Environments = None,
        since: UnixSeconds = None, until: UnixSeconds = None,
        stats_period: Annotated[str | None, Query(alias="statsPeriod", description="1h, 24h, 14d")] = None,
        cursor: CursorParam = None, per_page: PerPage = MAX_PER_PAGE,
    ) -> list[CheckIn]:
        window = time_range(since, until, stats_period, datetime.now(UTC))
        page = await checkin_page(conn, scope.monitor.id, environment, window, parse_cursor(cursor), per_page)
        response.headers["Link"] = link_header(request, page.previous, page.has_previous,
                                               page.next, page.has_next)
        return [present.checkin(r) for r in page.rows]

    @router.get("/checkins/{checkin_id}/", response_model=CheckIn, summary="One check-in")
    async def monitor_checkin(scope: Scope, conn: Conn, checkin_id: CheckinKey,
                              environment: LatestEnvironment = None) -> CheckIn:
        return present.checkin(await find_checkin(conn, scope.monitor, checkin_id, environment))

    @router.get("/checkins/{checkin_id}/attachment/", response_class=Response, summary="A check-in's attachment",
                responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                                "description": "The file, with its stored Content-Type"}})
    async def monitor_checkin_attachment(scope: Scope, conn: Conn, checkin_id: CheckinKey,
                                         environment: LatestEnvironment = None) -> Response:
        found = await find_checkin(conn, scope.monitor, checkin_id, environment)
        row = await store.fetch_one(conn, store.AttachmentRow, store.ATTACHMENT,
                                    {"guid": found.guid, "monitor_id": scope.monitor.id})
        if row is None:
            raise NotFound("Check-in has no attachment")
        return Response(row.data, media_type=row.content_type,
                        headers={"Content-Disposition": present.content_disposition(row.filename)})

    @router.get("/stats/", response_model=list[StatsBucket], summary="Counts and mean duration per bucket")
    async def monitor_stats(
        monitor: RequestedMonitor, request: Request, since: UnixSeconds = None, until: UnixSeconds = None,
        resolution: Annotated[str | None, Query(description="Seconds or 1h/1d; automatic when absent")] = None,
        environment: Environments = None,
    ) -> Response:
        pool = request.app.state.pool
        try:
            plan = _stats_plan(since, until, resolution, datetime.now(UTC))
        except BadParameter:
            async with pool.connection() as conn:
                await monitor.scope(conn)  # a missing monitor is a 404 before a bad parameter
            raise

        async def compute() -> bytes:
            async with pool.connection() as conn:
                scope = await monitor.scope(conn)
                params = {"monitor_id": scope.monitor.id, "environments": environment, "resolution": plan.resolution,
                          "source": plan.source, "start": from_unix(plan.start), "end": from_unix(plan.end)}
                query = store.STATS_FROM_CHECKINS if plan.source is None else store.STATS_FROM_ROLLUPS
                rows = await store.fetch_tuples(conn, query, params)
            return render_json(fill_buckets(plan, rows))

        # Keyed by the caller's organization and the path as requested (api.stats_cache).
        cache: StatsCache = request.app.state.stats_cache
        key = stats_key(monitor, environment, plan.resolution, plan.first, plan.last)
        return RenderedJsonResponse(await cache.body(key, compute))

    @router.get("/environments/{environment}/", response_model=EnvironmentDetails,
                summary="One environment: status, next and last check-in, open incident, recent check-ins")
    async def monitor_environment(
        scope: Scope, conn: Conn, environment: Annotated[str, Path(description="Environment name")],
    ) -> EnvironmentDetails:
        row = await find_environment(conn, scope.monitor, environment)
        page = await checkin_page(conn, scope.monitor.id, [environment], TimeRange(None, None),
                                  None, RECENT_CHECKINS)
        return present.environment_details(row, page.rows)

    @router.get("/processing-errors/", response_model=list[ProcessingError], summary="The monitor's processing errors")
    async def monitor_processing_errors(scope: Scope, conn: Conn, request: Request, response: Response,
                                        cursor: CursorParam = None,
                                        per_page: PerPage = MAX_PER_PAGE) -> list[ProcessingError]:
        return await _processing_errors(conn, request, response, scope.organization.id, None, scope.monitor.id,
                                        cursor, per_page)

    return router


def _stats_plan(since: float | None, until: float | None, resolution: str | None, now: datetime) -> StatsPlan:
    """Buckets for a stats request; the range defaults to the day before ``until`` (or now)."""
    end = int(until) if until is not None else unix(now)
    start = int(since) if since is not None else max(end - int(DEFAULT_STATS_RANGE.total_seconds()), 0)
    if start > end:
        raise BadParameter("since", "must not be after until")
    return plan_stats(start, end, None if resolution is None else parse_duration("resolution", resolution))


def organization_routes() -> APIRouter:
    """Routes on the organization itself: the monitor list and processing errors."""
    router = APIRouter(responses=ERRORS)

    @router.get("/monitors/", response_model=list[Monitor], summary="Monitors of the organization")
    async def organization_monitors(
        org: Organization, conn: Conn, request: Request, response: Response,
        project: Annotated[list[str] | None, Query(description="Project id or slug; repeatable")] = None,
        environment: Environments = None,
        status: Annotated[str | None, Query(description="active, disabled, ok or error")] = None,
        query: Annotated[str | None, Query(max_length=200,
                                           description="Free text on name or slug; `status:ok` tokens filter")] = None,
        sort: Annotated[Literal["name", "status", "muted"], Query(description="name (default), status or muted")]
        = "name",
        cursor: CursorParam = None, per_page: PerPage = MAX_PER_PAGE,
    ) -> list[Monitor]:
        offset = _offset(cursor)
        statuses, text = parse_list_query(query)
        if status is not None:
            statuses = [*(statuses or []), _status_filter(status)]
        monitors = await store.fetch_all(conn, MonitorRow, store.monitor_list(sort), {
            "organization_id": org.id, "project_keys": project,
            "project_numbers": None if project is None else [n for p in project if (n := as_number(p)) is not None],
            "environments": environment, "statuses": statuses, "disabled": MonitorStatus.DISABLED,
            "text": text, "limit": per_page + 1, "offset": offset})
        _offset_link(request, response, offset, per_page, len(monitors) > per_page)
        monitors = monitors[:per_page]
        environments = await _environments(conn, monitors, environment)
        return [present.monitor(m, environments[m.id]) for m in monitors]

    @router.get("/processing-errors/", response_model=list[ProcessingError],
                summary="Processing errors of the organization")
    async def organization_processing_errors(org: Organization, conn: Conn, request: Request, response: Response,
                                             cursor: CursorParam = None,
                                             per_page: PerPage = MAX_PER_PAGE) -> list[ProcessingError]:
        return await _processing_errors(conn, request, response, org.id, None, None, cursor, per_page)

    return router


def project_routes() -> APIRouter:
    router = APIRouter(responses=ERRORS)

    @router.get("/processing-errors/", response_model=list[ProcessingError], summary="Processing errors of the project")
    async def project_processing_errors(org: Organization, proj: Annotated[ProjectRow, Depends(project)], conn: Conn,
                                        request: Request, response: Response, cursor: CursorParam = None,
                                        per_page: PerPage = MAX_PER_PAGE) -> list[ProcessingError]:
        return await _processing_errors(conn, request, response, org.id, proj.id, None, cursor, per_page)

    return router


def _status_filter(status: str, parameter: str = "status") -> int:
    try:
        return int(parse_monitor_status(status))
    except ValueError as exc:
        raise BadParameter(parameter, str(exc)) from exc


def parse_list_query(query: str | None) -> tuple[list[int] | None, str | None]:
    """Sentry's monitor-list ``query``: ``status:a,b`` tokens and free text (an ILIKE pattern)."""
    if query is None:
        return None, None
    statuses: list[int] = []
    words = []
    for token in query.split():
        if token.startswith("status:"):
            statuses += [_status_filter(v, "query") for v in token[len("status:"):].split(",") if v]
        else:
            words.append(token)
    text = " ".join(words)
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" if text else None
    return statuses or None, pattern
