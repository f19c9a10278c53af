"""What one maintenance pass does, decided from the partitions, the retentions each day
holds and the time. No SQL, no clock.

A check-in that ran on UTC day ``D`` with ``retention_days = r`` is deleted once the
clock reaches midnight after day ``D + r``: never before ``date_added + r days``, at
most one day after. A partition (one day) is dropped when the longest retention it holds
has run out; the rows of shorter retentions in a partition that stays are trimmed.
The alert tables are pruned by age: sent outbox rows, finished deliveries, their log and
consumed events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from schemas.settings import Settings

UTC = timezone.utc


@dataclass(frozen=True)
class RetentionConfig:
    #: Retention of a check-in whose producer sent none (retention_days 0) or the clock wrote.
    default_days: int = 90
    #: Days hourly rollups are kept; daily ones are kept ``daily_rollup_days``.
    hourly_rollup_days: int = 90
    daily_rollup_days: int = 400
    #: Partitions created ahead of today (and yesterday's, for late arrivals).
    ahead_days: int = 7
    #: Rows per statement of every batched delete.
    batch_size: int = 10_000
    #: Days a published outbox row is kept after it was sent (unsent rows are never deleted).
    outbox_days: int = 7
    #: Days the delivery log, finished deliveries and consumed alert events are kept
    #: (a delivery still being retried, and its event and log, are never deleted).
    delivery_days: int = 30


@dataclass(frozen=True)
class Plan:
    create: list[date]
    drop: list[date]
    #: (day, r): delete that day's rows with retention_days <= r.
    trim: list[tuple[date, int]]
    hourly_rollups_before: datetime
    daily_rollups_before: datetime
    orphan_attachments_before: datetime
    #: Outbox rows sent before this are deleted.
    outbox_sent_before: datetime
    #: Log rows written, deliveries finished and events received before this are deleted.
    deliveries_before: datetime


def expired(day: date, retention_days: int, today: date) -> bool:
    """Rows of ``day`` kept ``retention_days`` have all expired by the start of ``today``."""
    return day + timedelta(days=retention_days + 1) <= today


def plan(now: datetime, partitions: Iterable[date], retentions: Mapping[date, Iterable[int]],
         config: RetentionConfig) -> Plan:
    """The pass for ``now``: ``partitions`` are the attached day partitions,
    ``retentions`` the retention values each day holds (checkin_retention_days)."""
    today = now.astimezone(UTC).date()
    existing = set(partitions)
    create = [today + timedelta(days=n) for n in range(-1, config.ahead_days + 1)
              if today + timedelta(days=n) not in existing]
    drop: list[date] = []
    trim: list[tuple[date, int]] = []
    for day in sorted(existing):
        held = sorted(set(retentions.get(day, ())))
        longest = held[-1] if held else config.default_days  # an empty day lives as a default one
        if expired(day, longest, today):
            drop.append(day)
            continue
        gone = [r for r in held if expired(day, r, today)]
        if gone:
            trim.append((day, gone[-1]))
    midnight = datetime.combine(today, time(), UTC)
    return Plan(create=create, drop=drop, trim=trim,
                hourly_rollups_before=midnight - timedelta(days=config.hourly_rollup_days),
                daily_rollups_before=midnight - timedelta(days=config.daily_rollup_days),
                orphan_attachments_before=midnight - timedelta(days=config.default_days),
                outbox_sent_before=now - timedelta(days=config.outbox_days),
                deliveries_before=now - timedelta(days=config.delivery_days))


def config_from_settings(settings: Settings) -> RetentionConfig:
    return RetentionConfig(
        default_days=settings.retention_days_default,
        hourly_rollup_days=settings.rollup_hourly_retention_days,
        daily_rollup_days=settings.rollup_daily_retention_days,
        ahead_days=settings.partitions_ahead_days,
        batch_size=settings.maintenance_batch_size,
        outbox_days=settings.outbox_retention_days,
        delivery_days=settings.delivery_retention_days)
