"""``GET /api/0/organizations/{org}/monitors-timeline/``: every monitor with its tick timeline.

The dashboard's overview needs, for every monitor, its environments and a few dozen
buckets of status counts each. Through the monitor list and the stats endpoint that is one
request per monitor environment; this route answers a page of up to 1,000 monitors in one
request and three queries (monitors, environments, buckets). Its queries live here, beside
their only caller; like ``api.store`` they only SELECT and are scoped by the organization
id the resolution layer checked against the token.

No ``from __future__ import annotations``: FastAPI reads the handler's annotations.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api import present, store
from api.pagination import link_header
from api.params import MAX_TIMESTAMP, Cursor, from_unix, parse_cursor, parse_duration
from api.resolve import Conn, Organization, as_guid, as_number
from api.responses import JsonResponse
from api.routes import ERRORS, ORG_PREFIX
from api.stats import unix
from api.store import MONITOR_COLUMNS, EnvironmentRow, MonitorRow
from api.timeline import TimelinePlan, cells_by_environment, plan_timeline
from schemas.api import MonitorsTimeline
from schemas.enums import CheckInStatus

MAX_PER_PAGE = 1000
PATH = f"{ORG_PREFIX}/monitors-timeline/"

# The monitor list's filters (api.store.MONITOR_LIST) plus ``monitor`` (guid or slug).
TIMELINE_MONITORS = f"""
SELECT {MONITOR_COLUMNS}
FROM monitors m JOIN projects p ON p.id = m.project_id
WHERE m.organization_id = %(organization_id)s::bigint AND NOT m.pending_deletion
  AND (%(project_keys)s::text[] IS NULL
       OR p.slug = ANY(%(project_keys)s::text[]) OR p.id = ANY(%(project_numbers)s::bigint[]))
  AND (%(monitor_keys)s::text[] IS NULL
       OR m.slug = ANY(%(monitor_keys)s::text[]) OR m.guid = ANY(%(monitor_guids)s::uuid[]))
  AND (%(environments)s::text[] IS NULL OR EXISTS (
        SELECT 1 FROM monitor_environments me
        WHERE me.monitor_id = m.id AND NOT me.pending_deletion AND me.environment = ANY(%(environments)s::text[])))
ORDER BY m.name, m.id
LIMIT %(limit)s::bigint OFFSET %(offset)s::bigint
"""

_IN_PROGRESS = f"""
SELECT c.monitor_environment_id,
       ((floor(date_part('epoch', c.date_added))::bigint - %(start)s::bigint) / %(resolution)s::bigint)::integer,
       0, 0, 0, 0, count(*)::integer, 0
FROM checkins c
WHERE c.status = {int(CheckInStatus.IN_PROGRESS)}
  AND c.monitor_environment_id = ANY(%(environment_ids)s::bigint[])
  AND c.date_added >= %(start_at)s::timestamptz AND c.date_added < %(end_at)s::timestamptz
GROUP BY 1, 2
"""
_ROLLUP_FILTER = """
FROM checkin_rollups r
WHERE r.monitor_environment_id = ANY(%(environment_ids)s::bigint[])
  AND r.resolution = %(source)s::integer
  AND r.bucket >= %(start_at)s::timestamptz AND r.bucket < %(end_at)s::timestamptz
"""
_BUCKET_INDEX = "((date_part('epoch', r.bucket)::bigint - %(start)s::bigint) / %(resolution)s::bigint)::integer"

# Rollup rows in the plan's buckets, plus the open IN_PROGRESS check-ins (which rollups
# never count) through their partial index. A bucket may come back twice, once from each
# part; api.timeline.cells_by_environment adds them up. When a bucket is one stored row
# (hourly buckets from hourly rollups, the overview's 24 h) the rows are read as they are;
# otherwise they are summed per bucket.
TIMELINE_ROWS = f"""
SELECT r.monitor_environment_id, {_BUCKET_INDEX}, r.ok, r.error, r.missed, r.timeout, 0, r.unknown
{_ROLLUP_FILTER}
UNION ALL
{_IN_PROGRESS}
"""
TIMELINE_SUMS = f"""
SELECT r.monitor_environment_id, {_BUCKET_INDEX}, sum(r.ok)::integer, sum(r.error)::integer,
       sum(r.missed)::integer, sum(r.timeout)::integer, 0, sum(r.unknown)::integer
{_ROLLUP_FILTER}
GROUP BY 1, 2
UNION ALL
{_IN_PROGRESS}
"""

UnixSeconds = Annotated[float | None, Query(ge=0, le=MAX_TIMESTAMP, description="Unix seconds")]


def timeline_routes() -> APIRouter:
    router = APIRouter(responses=ERRORS)

    @router.get(PATH, response_model=MonitorsTimeline, tags=["organizations"],
                summary="Monitors with a status timeline per environment (the dashboard's overview)")
    async def monitors_timeline(
        org: Organization, conn: Conn, request: Request,
        since: UnixSeconds = None, until: UnixSeconds = None,
        resolution: Annotated[str | None, Query(description="Whole hours: 3600, 1h, 6h, 1d; automatic when absent")]
        = None,
        project: Annotated[list[str] | None, Query(description="Project id or slug; repeatable")] = None,
        monitor: Annotated[list[str] | None, Query(description="Monitor guid or slug; repeatable")] = None,
        environment: Annotated[list[str] | None, Query(description="Environment name; repeatable")] = None,
        cursor: Annotated[str | None, Query(description="From a Link header")] = None,
        per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = MAX_PER_PAGE,
    ) -> Response:
        plan = plan_timeline(None if since is None else int(since), None if until is None else int(until),
                             None if resolution is None else parse_duration("resolution", resolution),
                             unix(datetime.now(UTC)))
        parsed = parse_cursor(cursor)
        offset = 0 if parsed is None else parsed.offset
        monitors = await _monitors(conn, org.id, project, monitor, environment, per_page + 1, offset)
        more = len(monitors) > per_page
        monitors = monitors[:per_page]
        body = await _timeline_body(conn, plan, monitors, environment)
        headers = {"Link": link_header(request, Cursor(0, max(offset - per_page, 0), True), offset > 0,
                                       Cursor(0, offset + per_page, False), more)}
        return JsonResponse(body, headers=headers)

    return router


async def _monitors(conn: Any, organization_id: int, projects: list[str] | None, monitors: list[str] | None,
                    environments: list[str] | None, limit: int, offset: int) -> list[MonitorRow]:
    return await store.fetch_all(conn, MonitorRow, TIMELINE_MONITORS, {
        "organization_id": organization_id, "project_keys": projects,
        "project_numbers": None if projects is None else [n for p in projects if (n := as_number(p)) is not None],
        "monitor_keys": monitors,
        "monitor_guids": None if monitors is None else [g for m in monitors if (g := as_guid(m)) is not None],
        "environments": environments, "limit": limit, "offset": offset})


async def _timeline_body(conn: Any, plan: TimelinePlan, monitors: list[MonitorRow],
                         names: list[str] | None) -> dict[str, Any]:
    environments = await store.fetch_all(conn, EnvironmentRow, store.ENVIRONMENTS,
                                         {"monitor_ids": [m.id for m in monitors], "environments": names})
    query = TIMELINE_ROWS if plan.resolution == plan.source else TIMELINE_SUMS
    rows = await store.fetch_tuples(conn, query, {
        "environment_ids": [e.id for e in environments], "source": plan.source, "resolution": plan.resolution,
        "start": plan.start, "start_at": from_unix(plan.start), "end_at": from_unix(plan.end)})
    cells = cells_by_environment(rows)
    by_monitor: dict[int, list[EnvironmentRow]] = {m.id: [] for m in monitors}
    for row in environments:
        by_monitor[row.monitor_id].append(row)
    out = []
    for m in monitors:
        shown = present.monitor(m, by_monitor[m.id]).model_dump(mode="json", by_alias=True)
        for env_json, env_row in zip(shown["environments"], by_monitor[m.id], strict=True):
            env_json["timeline"] = cells.get(env_row.id, [])
        out.append(shown)
    return {"since": plan.start, "until": plan.end, "resolution": plan.resolution, "buckets": plan.buckets,
            "monitors": out}
