"""Read API response models: Sentry's field names (camelCase), times in ISO 8601 UTC.

These are wire models only. The API builds them from its own database rows; nothing here
knows SQL. Field names follow Sentry's monitor serializers so that scripts written against
Sentry's API read cronpipe unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Python names in code, camelCase on the wire."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class ProjectRef(ApiModel):
    id: str
    slug: str


class MonitorConfigOut(BaseModel):
    """The stored config form (snake_case keys, as Sentry shows a monitor's config)."""

    model_config = ConfigDict(frozen=True)

    schedule_type: str | None = None
    schedule: str | list[Any] | None = None
    checkin_margin: int | None = None
    max_runtime: int | None = None
    timezone: str | None = None
    failure_issue_threshold: int | None = None
    recovery_threshold: int | None = None


class Incident(ApiModel):
    id: str
    starting_timestamp: datetime
    resolving_timestamp: datetime | None = None


class MonitorEnvironment(ApiModel):
    name: str
    status: str
    is_muted: bool
    last_check_in: datetime | None
    next_check_in: datetime | None
    next_check_in_latest: datetime | None
    date_created: datetime
    active_incident: Incident | None


class Monitor(ApiModel):
    id: str
    slug: str
    name: str
    status: str
    config: MonitorConfigOut
    date_created: datetime
    project: ProjectRef
    environments: list[MonitorEnvironment]
    #: Every environment muted (with none yet: muted as a whole), as Sentry's serializer.
    is_muted: bool
    #: The last config came from a check-in (managed in code), not from the API.
    is_upserting: bool
    #: Where its incidents are notified: ``"all"`` (every channel of the organization, the
    #: default) or the ids of the channels it names (``[]``: none, e.g. all were deleted).
    alert_channels: list[str] | Literal["all"]


class CheckIn(ApiModel):
    id: str
    environment: str
    status: str
    duration: int | None
    date_created: datetime
    date_added: datetime
    date_updated: datetime
    expected_time: datetime | None
    monitor_config: dict[str, Any] | None
    has_attachment: bool
    #: When the job reported IN_PROGRESS (null when it reported only its result).
    date_in_progress: datetime | None
    #: The message time that last wrote this check-in (the clock's time for MISSED/TIMEOUT).
    date_clock: datetime | None


class EnvironmentDetails(MonitorEnvironment):
    """One environment of a monitor, with its most recent check-ins (newest first)."""

    recent_check_ins: list[CheckIn]


class StatsBucket(BaseModel):
    """One stats bucket; ``ts`` is the bucket start (unix seconds), ``duration`` the mean in ms."""

    model_config = ConfigDict(frozen=True)

    ts: int
    ok: int
    error: int
    missed: int
    timeout: int
    unknown: int
    duration: float


class ProcessingErrorDetail(ApiModel):
    type: int
    name: str
    reason: str


class ProcessingError(ApiModel):
    id: str
    project_id: str | None
    monitor_id: str | None
    checkin: dict[str, Any] | None
    errors: list[ProcessingErrorDetail]
    date_added: datetime


class ErrorBody(BaseModel):
    """Every error response: ``detail`` says what went wrong; ``parameter`` names a bad one."""

    detail: str
    parameter: str | None = None


class TimelineEnvironment(MonitorEnvironment):
    """An environment with its timeline: ``[index, ok, error, missed, timeout, in_progress,
    unknown]`` per non-empty bucket, bucket ``index`` starting at ``since + index * resolution``."""

    timeline: list[list[int]]


class TimelineMonitor(Monitor):
    environments: list[TimelineEnvironment]  # type: ignore[assignment]


class MonitorsTimeline(ApiModel):
    """Every monitor of a page with its per-environment timeline, for an overview in one request."""

    since: int
    until: int
    resolution: int
    buckets: int
    monitors: list[TimelineMonitor]
# --- request bodies of the write routes -----------------------------------------------------


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


Text = Annotated[str, AfterValidator(_no_nul)]


class MonitorWrite(BaseModel):
    """A monitor create (POST) or partial update (PUT) body; camelCase or snake_case keys,
    as Sentry's validator accepts. Unknown keys (``owner``, ``alertRule``...) are ignored."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    project: Annotated[Text, Field(min_length=1, max_length=64)] | Annotated[int, Field(ge=1)] | None = None
    name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    slug: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    status: Literal["active", "disabled"] | None = None
    is_muted: bool | None = None
    #: The monitor config in any of the check-in ``monitor_config`` shapes; on PUT merged
    #: into the stored one and validated as a whole.
    config: dict[str, Any] | None = None
    #: Channel ids (of this organization) to notify instead of all of them, or ``"all"``
    #: to route to every channel again; absent: unchanged (on POST: all).
    alert_channels: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)] | Literal["all"] \
        | None = None


class EnvironmentWrite(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    is_muted: bool


class BulkWrite(BaseModel):
    """Bulk edit: ``status`` and/or ``isMuted`` for every monitor guid in ``ids``."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    ids: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=1000)]
    status: Literal["active", "disabled"] | None = None
    is_muted: bool | None = None


class BulkResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    updated: list[Monitor]
    errored: list[Monitor]


class SystemIncident(BaseModel):
    """A run of ticks the volume-anomaly guard decided were a system incident (or its
    recovery): ``end`` is the first tick after it, None while it lasts."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime | None
    lowest_pct_deviation: float | None


class SystemIncidents(BaseModel):
    """The guard's newest decision (``normal|abnormal|incident|recovering``; ``normal``
    with no tick yet) and its system incidents, newest first."""

    model_config = ConfigDict(frozen=True)

    decision: str
    pct_deviation: float | None
    tick: datetime | None
    incidents: list[SystemIncident]
