"""The monitors and environments a check-in names: upserted from its ``monitor_config``,
created on first use, capped per monitor. Pure, over the batch's state
(``consumers.checkins.batch_state``); ``consumers.checkins.processing`` calls them in
Sentry's order of checks.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import orjson

from consumers.checkins.batch_state import (
    BatchResult,
    BatchState,
    CheckInItem,
    EnvState,
    IdPool,
    MonitorState,
    Project,
)
from schemas.checkin_payload import CheckInPayload
from schemas.enums import MonitorStatus, ProcessingErrorType
from schemas.monitor_config import ConfigError, MonitorConfig, merge_config, parse_monitor_config

__all__ = ["ensure_environment", "has_environment_room", "merge_cached", "parse_config", "upsert_monitor"]


def upsert_monitor(payload: CheckInPayload, project: Project, state: BatchState, ids: IdPool,
                   item: CheckInItem, result: BatchResult) -> MonitorState | None:
    """The check-in's monitor, created or updated from ``monitor_config``; None when rejected.

    An invalid config is recorded as MONITOR_INVALID_CONFIG either way; an existing
    monitor is then returned unchanged, so its check-in is recorded with the stored config.
    """
    key = (project.id, payload.monitor_slug)
    monitor = state.monitors.get(key)
    if payload.monitor_config is None:
        if monitor is None:
            result.reject(ProcessingErrorType.MONITOR_NOT_FOUND,
                          f"monitor {payload.monitor_slug!r} does not exist and no monitor_config was sent",
                          item, project)
        return monitor
    update = parse_config(payload.monitor_config)
    if isinstance(update, ConfigError):
        result.reject(ProcessingErrorType.MONITOR_INVALID_CONFIG, update.reason, item, project, monitor)
        return monitor
    if monitor is None:
        monitor = MonitorState(id=next(ids.monitor_ids), project_id=project.id,
                               organization_id=project.organization_id, slug=payload.monitor_slug,
                               name=payload.monitor_slug, status=MonitorStatus.ACTIVE,
                               config=merge_config(update, update), is_new=True)
        state.monitors[key] = monitor
        return monitor
    merged = merge_cached(monitor.config, update, update.present_keys)
    if merged != monitor.config:
        monitor.set_config(merged)
    return monitor


#: Real configs are ~200 bytes; the cache keeps at most 4,096 keys of this size (16 MiB).
_MAX_CACHED_CONFIG_BYTES: Final = 4096


def parse_config(raw: dict[str, Any]) -> MonitorConfig | ConfigError:
    """``parse_monitor_config``, memoized: SDKs resend the same config with every check-in."""
    try:
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-serializable (cannot come from a JSON payload): parse it directly
        return _parse_config(raw)
    if len(canonical) > _MAX_CACHED_CONFIG_BYTES:
        return _parse_config(raw)  # a config this large is not a real one resent: keep it out of the cache
    return _parse_canonical_config(canonical)



@functools.lru_cache(maxsize=4096)
def _parse_canonical_config(canonical: bytes) -> MonitorConfig | ConfigError:
    return _parse_config(orjson.loads(canonical))


def _parse_config(raw: dict[str, Any]) -> MonitorConfig | ConfigError:
    try:
        return parse_monitor_config(raw)
    except ConfigError as exc:
        return exc


@functools.lru_cache(maxsize=4096)
def merge_cached(existing: MonitorConfig, update: MonitorConfig, present_keys: frozenset[str]) -> MonitorConfig:
    """``merge_config`` memoized; ``present_keys`` is part of the key because MonitorConfig
    equality ignores it while the merge depends on it."""
    return merge_config(existing, update)


def has_environment_room(monitor: MonitorState, environment: str, state: BatchState, limit: int) -> bool:
    """False when ``environment`` is new and the monitor already has ``limit`` environments
    (one envelope must not create thousands, each then missed and alerted on every tick)."""
    if (monitor.project_id, monitor.slug, environment) in state.envs:
        return True
    return limit <= 0 or state.env_counts.get(monitor.id, 0) < limit


def ensure_environment(monitor: MonitorState, environment: str, state: BatchState, ids: IdPool) -> EnvState:
    key = (monitor.project_id, monitor.slug, environment)
    env = state.envs.get(key)
    if env is None:
        env = EnvState(id=next(ids.env_ids), monitor=monitor, environment=environment, is_new=True)
        state.envs[key] = env
        state.env_counts[monitor.id] = state.env_counts.get(monitor.id, 0) + 1
    return env
