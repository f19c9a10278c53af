"""Gateway configuration: the shared Settings plus a few ``CRONPIPE_GATEWAY_*`` variables.

(`cronpipe --help` lists them.)

gateway settings (environment):
  CRONPIPE_GATEWAY_KEY_CACHE_TTL     seconds a project key lookup is cached; a revoked key
                                     stops working within this time (default 10)
  CRONPIPE_GATEWAY_RATE_LIMIT        default per-key limit for keys without their own
                                     (project_keys.rate_limit_count/window): COUNT or COUNT/SECONDS,
                                     per worker process (default: none)
  CRONPIPE_GATEWAY_DELIVERY_TIMEOUT  seconds to wait for Kafka's acknowledgement before a 503 (default 10)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.gateway.ratelimit import RateLimit
from schemas.settings import Settings
from schemas.topics import Topics


class ConfigError(ValueError):
    """A CRONPIPE_GATEWAY_* variable that cannot be read; says which and why."""


@dataclass(frozen=True)
class GatewayConfig:
    kafka_bootstrap: str
    topic: str
    database_url: str
    key_cache_ttl: float = 10.0
    default_rate_limit: RateLimit | None = None
    delivery_timeout: float = 10.0
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    #: Benchmark baseline: answer check-in requests at once, touching nothing.
    noop: bool = False  # serve the benchmark's do-nothing baseline (baseline.py) instead

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] = os.environ) -> GatewayConfig:
        timeout = _float(env, "CRONPIPE_GATEWAY_DELIVERY_TIMEOUT", 10.0)
        return cls(
            kafka_bootstrap=settings.kafka_bootstrap,
            topic=Topics(prefix=settings.topic_prefix).ingest,
            database_url=settings.effective_database_url(),
            key_cache_ttl=_float(env, "CRONPIPE_GATEWAY_KEY_CACHE_TTL", 10.0),
            default_rate_limit=parse_rate_limit(env.get("CRONPIPE_GATEWAY_RATE_LIMIT", "")),
            delivery_timeout=timeout,
            # librdkafka gives up at about the time the request does, so a message that
            # earned a 503 is rarely delivered later.
            producer_config={"message.timeout.ms": int(timeout * 1000)},
            noop=env.get("CRONPIPE_GATEWAY_NOOP", "") == "1",
        )


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: must be greater than zero")
    return value


def parse_rate_limit(text: str) -> RateLimit | None:
    """``""`` → None, ``"100"`` → 100 per second, ``"600/60"`` → 600 per minute."""
    if not text.strip():
        return None
    count, _, window = text.partition("/")
    try:
        limit = RateLimit(int(count), float(window or 1))
    except ValueError:
        raise ConfigError(f"CRONPIPE_GATEWAY_RATE_LIMIT={text!r}: use COUNT or COUNT/SECONDS") from None
    if limit.count <= 0 or limit.window <= 0:
        raise ConfigError(f"CRONPIPE_GATEWAY_RATE_LIMIT={text!r}: count and seconds must be positive")
    return limit
