"""``GET /api/0/system-incidents/``: the volume-anomaly guard's decision and incidents.

System incidents belong to the installation, not to an organization: any valid token may
read them (dashboards draw a banner from them). Rows come from ``clock_volume_decisions``
(see docs/clock.md, "The volume-anomaly guard").
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api import store
from api.resolve import Conn, caller_organization_id
from api.routes import ERRORS
from schemas.api import SystemIncident, SystemIncidents

#: Decisions are kept 30 days; so is this list.
WINDOW = timedelta(days=30)

LATEST = "SELECT tick, decision, pct_deviation FROM clock_volume_decisions ORDER BY tick DESC LIMIT 1"

# Islands of consecutive incident/recovering ticks (gaps-and-islands on row numbers).
INCIDENTS = """
WITH d AS (
    SELECT tick, pct_deviation, decision IN ('incident', 'recovering') AS bad,
           row_number() OVER (ORDER BY tick)
           - row_number() OVER (PARTITION BY decision IN ('incident', 'recovering') ORDER BY tick) AS grp
      FROM clock_volume_decisions WHERE tick >= %(since)s::timestamptz
)
SELECT min(tick), max(tick), min(pct_deviation) FROM d WHERE bad GROUP BY grp ORDER BY min(tick) DESC
"""


def system_incident_routes() -> APIRouter:
    router = APIRouter(responses=ERRORS)

    @router.get("/api/0/system-incidents/", response_model=SystemIncidents, tags=["system"],
                summary="The volume-anomaly guard's decision and system incidents (any valid token)")
    async def system_incidents(conn: Conn,
                               _org: Annotated[int, Depends(caller_organization_id)]) -> SystemIncidents:
        latest = await store.fetch_tuples(conn, LATEST, {})
        since = datetime.now(UTC) - WINDOW
        if latest:
            since = min(since, latest[0][0] - WINDOW)
        runs = await store.fetch_tuples(conn, INCIDENTS, {"since": since})
        newest = latest[0][0] if latest else None
        incidents = [SystemIncident(start=start, end=None if last == newest else last + timedelta(minutes=1),
                                    lowest_pct_deviation=low) for start, last, low in runs]
        if not latest:
            return SystemIncidents(decision="normal", pct_deviation=None, tick=None, incidents=incidents)
        tick, decision, pct = latest[0]
        return SystemIncidents(decision=decision, pct_deviation=pct, tick=tick, incidents=incidents)

    return router


async def latest_decision(conn: Any) -> tuple[str, float | None] | None:
    """For ``/metrics``: the newest decision and its deviation (None: no tick yet)."""
    rows = await store.fetch_tuples(conn, LATEST, {})
    return (rows[0][1], rows[0][2]) if rows else None
