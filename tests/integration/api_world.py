"""What several read API tests share: the seeded world of the route tests (two
organizations, twin slugs, check-ins of every status, an attachment, an incident, processing
errors) and the stats the endpoint must answer, computed from check-ins alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from schemas.enums import CheckInStatus, MonitorStatus, ProcessingErrorType, api_name
from tests.integration.api_seed import SeededCheckIn, SeededMonitor, Seeder

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    acme_id: int
    backend_id: int
    frontend_id: int
    globex_id: int
    other_id: int
    nightly: SeededMonitor  # acme/backend, the oldest "nightly" of acme
    frontend_nightly: SeededMonitor  # same slug, acme/frontend
    deploy: SeededMonitor  # acme/frontend
    foreign: SeededMonitor  # globex/other "nightly"
    production: list[SeededCheckIn]  # nightly's production check-ins, oldest first
    staging: list[SeededCheckIn]
    attached: SeededCheckIn
    incident_guid: str
    acme_token: str
    globex_token: str


def seed_world(conn: psycopg.Connection[Any]) -> World:
    s = Seeder(conn)
    acme_id, globex_id = s.org("acme"), s.org("globex")
    backend_id, frontend_id = s.project("acme", "backend", 101), s.project("acme", "frontend", 102)
    other_id = s.project("globex", "other", 201)
    nightly = s.monitor(acme_id, backend_id, "nightly", name="Nightly backup")
    frontend_nightly = s.monitor(acme_id, frontend_id, "nightly")
    deploy = s.monitor(acme_id, frontend_id, "deploy")
    foreign = s.monitor(globex_id, other_id, "nightly")
    s.environment(nightly, "production", status=MonitorStatus.ERROR, last_checkin=T0 + timedelta(hours=4),
                  next_checkin=T0 + timedelta(hours=5), next_checkin_latest=T0 + timedelta(hours=5, minutes=5))
    s.environment(nightly, "staging", status=MonitorStatus.OK, is_muted=True)
    for m in (frontend_nightly, deploy, foreign):
        s.environment(m, "production")
    statuses = [CheckInStatus.OK, CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT, CheckInStatus.ERROR]
    production = [s.checkin(nightly, "production", st, T0 + timedelta(hours=i), duration_ms=1000 + i)
                  for i, st in enumerate(statuses)]
    staging = [s.checkin(nightly, "staging", CheckInStatus.OK, T0 + timedelta(hours=i, minutes=30), duration_ms=50)
               for i in range(3)]
    s.checkin(foreign, "production", CheckInStatus.OK, T0)
    attached = production[-1]
    s.attachment(nightly, attached, "job output.log", "text/plain", b"line 1\nline 2\n")
    incident = s.incident(nightly, "production", T0 + timedelta(hours=3))
    s.processing_error(acme_id, backend_id, nightly.id, ProcessingErrorType.CHECKIN_FINISHED, "already finished")
    s.processing_error(globex_id, other_id, foreign.id, ProcessingErrorType.MONITOR_DISABLED, "disabled")
    s.build_rollups()
    return World(acme_id, backend_id, frontend_id, globex_id, other_id, nightly, frontend_nightly, deploy, foreign,
                 production, staging, attached, str(incident), s.token("acme"), s.token("globex"))



COUNTED = ("ok", "error", "missed", "timeout", "unknown")


def expected_stats(checkins: Iterable[SeededCheckIn], since: int, until: int, resolution: int,
                   environments: set[str] | None = None) -> list[dict[str, float]]:
    """What the endpoint must answer, computed from the check-ins alone."""
    first, last = since // resolution * resolution, until // resolution * resolution
    buckets = {ts: {"ts": ts, **{k: 0 for k in COUNTED}, "sum": 0, "n": 0}
               for ts in range(first, last + 1, resolution)}
    for c in checkins:
        if c.status is CheckInStatus.IN_PROGRESS or (environments and c.environment not in environments):
            continue
        bucket = buckets.get(int(c.date_added.timestamp()) // resolution * resolution)
        if bucket is None:
            continue
        bucket[api_name(c.status)] += 1
        if c.duration_ms is not None:
            bucket["sum"] += c.duration_ms
            bucket["n"] += 1
    return [{**{k: b[k] for k in ("ts", *COUNTED)}, "duration": b["sum"] / b["n"] if b["n"] else 0}
            for b in buckets.values()]
