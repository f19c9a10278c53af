"""Gateway configuration: the shared Settings (``CRONPIPE_GATEWAY_*`` among them) as the app needs it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.gateway.ratelimit import RateLimit
from schemas.settings import SettingError, Settings
from schemas.topics import Topics


class ConfigError(SettingError):
    """A CRONPIPE_GATEWAY_* value that cannot be used; says which and why."""


@dataclass(frozen=True)
class GatewayConfig:
    kafka_bootstrap: str
    topic: str
    database_url: str
    key_cache_ttl: float = 10.0
    default_rate_limit: RateLimit | None = None
    delivery_timeout: float = 10.0
    producer_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        timeout = settings.gateway_delivery_timeout
        return cls(
            kafka_bootstrap=settings.kafka_bootstrap,
            topic=Topics(prefix=settings.topic_prefix).ingest,
            database_url=settings.effective_database_url(),
            key_cache_ttl=settings.gateway_key_cache_ttl,
            default_rate_limit=parse_rate_limit(settings.gateway_rate_limit),
            delivery_timeout=timeout,
            # librdkafka gives up at about the time the request does, so a message that
            # earned a 503 is rarely delivered later.
            producer_config={"message.timeout.ms": int(timeout * 1000)},
        )


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
