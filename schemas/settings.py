"""Runtime settings, read once from ``CRONPIPE_*`` environment variables.

Every service takes its configuration from here so that `--help`, README and the
code agree on one set of names and defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Where local state (Kafka jars and data, the private PostgreSQL cluster) lives
#: when no external service is configured.
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".cronpipe"
DEFAULT_PG_PORT = 55432


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CRONPIPE_{name}", default)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    #: Empty means "the local cluster started by `cronpipe up`".
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    bind: str = field(default_factory=lambda: _env("BIND", "127.0.0.1"))
    gateway_port: int = field(default_factory=lambda: int(_env("GATEWAY_PORT", "8000")))
    api_port: int = field(default_factory=lambda: int(_env("API_PORT", "8001")))
    #: Base of the URLs the API puts in ``Link`` headers; empty means ``http://BIND:API_PORT``.
    api_public_url: str = field(default_factory=lambda: _env("API_PUBLIC_URL", ""))
    state_dir: Path = field(default_factory=lambda: Path(_env("STATE_DIR", str(DEFAULT_STATE_DIR))))
    pg_port: int = field(default_factory=lambda: int(_env("PG_PORT", str(DEFAULT_PG_PORT))))
    #: Prefix for every topic name; tests use it to isolate themselves.
    topic_prefix: str = field(default_factory=lambda: _env("TOPIC_PREFIX", ""))
    #: Bounds of both HTTP servers, per process (schemas/http_limits.py).
    http_max_header_bytes: int = field(default_factory=lambda: int(_env("HTTP_MAX_HEADER_BYTES", "65536")))
    http_header_timeout: float = field(default_factory=lambda: float(_env("HTTP_HEADER_TIMEOUT", "10")))
    http_body_timeout: float = field(default_factory=lambda: float(_env("HTTP_BODY_TIMEOUT", "15")))
    http_idle_timeout: int = field(default_factory=lambda: int(_env("HTTP_IDLE_TIMEOUT", "30")))
    http_max_connections: int = field(default_factory=lambda: int(_env("HTTP_MAX_CONNECTIONS", "1024")))
    # Worker bounds (docs/processor.md "Limits and abuse", "Outages").
    #: Environments one monitor may have (Sentry's MAX_ENVIRONMENTS_PER_MONITOR); 0 = no cap.
    max_environments_per_monitor: int = field(
        default_factory=lambda: int(_env("MAX_ENVIRONMENTS_PER_MONITOR", "1000")))
    #: The DLQ limit: more than this many counted dead letters within dlq_window_s stop the worker.
    dlq_limit: int = field(default_factory=lambda: int(_env("DLQ_LIMIT", "1000")))
    dlq_window_s: float = field(default_factory=lambda: float(_env("DLQ_WINDOW", "60")))
    #: Dead letters of one project counted toward the DLQ limit per window (the rest are not).
    dlq_project_budget: int = field(default_factory=lambda: int(_env("DLQ_PROJECT_BUDGET", "100")))
    #: Seconds a stopping worker waits for the batch in flight before it abandons it and exits.
    shutdown_timeout_s: float = field(default_factory=lambda: float(_env("SHUTDOWN_TIMEOUT", "30")))
    #: The worker's liveness/readiness HTTP port; 0 = no endpoint.
    worker_health_port: int = field(default_factory=lambda: int(_env("WORKER_HEALTH_PORT", "0")))
    #: Longest wait between two reconnection attempts of a database pool (psycopg_pool's grows to minutes).
    pool_reconnect_max_s: float = field(default_factory=lambda: float(_env("POOL_RECONNECT_MAX", "2")))

    # Notifier (issue 13). Back-off: attempt n waits retry_base * 2**(n-1) seconds (capped
    # at retry_max, with jitter) until retry_for seconds after the first attempt.
    notify_allow_private: bool = field(default_factory=lambda: _env("NOTIFY_ALLOW_PRIVATE", "0") == "1")
    notify_timeout: float = field(default_factory=lambda: float(_env("NOTIFY_TIMEOUT", "10")))
    notify_retry_base: float = field(default_factory=lambda: float(_env("NOTIFY_RETRY_BASE", "10")))
    notify_retry_max: float = field(default_factory=lambda: float(_env("NOTIFY_RETRY_MAX", "3600")))
    notify_retry_for: float = field(default_factory=lambda: float(_env("NOTIFY_RETRY_FOR", "86400")))
    notify_failing_after: int = field(default_factory=lambda: int(_env("NOTIFY_FAILING_AFTER", "5")))
    notify_concurrency: int = field(default_factory=lambda: int(_env("NOTIFY_CONCURRENCY", "16")))
    #: Base of the links in Slack and PagerDuty messages (the read API).
    notify_link_base: str = field(default_factory=lambda: _env("NOTIFY_LINK_BASE", ""))

    #: Retention (issue 15): days a check-in is kept when its producer sent none.
    retention_days_default: int = field(default_factory=lambda: int(_env("RETENTION_DAYS_DEFAULT", "90")))
    #: Days hourly / daily rollups are kept (daily ones outlive hourly ones: a 1-year chart).
    rollup_hourly_retention_days: int = field(
        default_factory=lambda: int(_env("ROLLUP_HOURLY_RETENTION_DAYS", "90")))
    rollup_daily_retention_days: int = field(
        default_factory=lambda: int(_env("ROLLUP_DAILY_RETENTION_DAYS", "400")))
    #: Day partitions of checkins created ahead of today.
    partitions_ahead_days: int = field(default_factory=lambda: int(_env("PARTITIONS_AHEAD_DAYS", "7")))
    #: Seconds between the worker's maintenance passes; 0 turns them off.
    maintenance_interval_s: float = field(default_factory=lambda: float(_env("MAINTENANCE_INTERVAL", "3600")))
    #: Rows per statement of the maintenance's batched deletes.
    maintenance_batch_size: int = field(default_factory=lambda: int(_env("MAINTENANCE_BATCH_SIZE", "10000")))
    #: Days a sent incident_outbox row is kept (unsent ones are never deleted).
    outbox_retention_days: int = field(default_factory=lambda: int(_env("OUTBOX_RETENTION_DAYS", "7")))
    #: Days the delivery log, finished deliveries and consumed alert events are kept.
    delivery_retention_days: int = field(default_factory=lambda: int(_env("DELIVERY_RETENTION_DAYS", "30")))
    #: The volume-anomaly guard (Sentry's system incidents); "0" turns it off.
    volume_guard: bool = field(default_factory=lambda: _env("VOLUME_GUARD", "1") not in ("0", "false", "no"))
    #: A drop of this many percent against the baseline is an abnormal / an incident minute.
    volume_abnormal_pct: float = field(default_factory=lambda: float(_env("VOLUME_ABNORMAL_PCT", "10")))
    volume_incident_pct: float = field(default_factory=lambda: float(_env("VOLUME_INCIDENT_PCT", "30")))

    def local_database_url(self) -> str:
        return f"postgresql://cronpipe@127.0.0.1:{self.pg_port}/cronpipe"

    def effective_database_url(self) -> str:
        return self.database_url or self.local_database_url()

    def effective_api_public_url(self) -> str:
        """Never the client's ``Host`` header: links a client follows point where we say."""
        if self.api_public_url:
            return self.api_public_url.rstrip("/")
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "") else "[::1]" if self.bind == "::" else self.bind
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"


def load() -> Settings:
    return Settings()
