"""Runtime settings, read once from ``CRONPIPE_*`` environment variables.

:data:`VARIABLES` declares every variable the code reads: its name, default, one line of
help and the commands that read it. :class:`Settings` holds their parsed values (one
field per variable, its default factory the declaration's :meth:`Variable.read`);
`cronpipe --help` and every subcommand's help list them (:func:`describe`); the README's
configuration table and a test that greps the source for ``CRONPIPE_`` names keep to this
one list. A value that cannot be parsed raises :class:`SettingError` naming the variable.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from schemas.argtypes import (
    batch_size,
    non_negative_float,
    non_negative_int,
    percent,
    port,
    positive_float,
    positive_int,
)

#: Where local state (Kafka jars and data, the private PostgreSQL cluster) lives
#: when no external service is configured.
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".cronpipe"
DEFAULT_PG_PORT = 55432
PREFIX: Final = "CRONPIPE_"


class SettingError(ValueError):
    """A ``CRONPIPE_*`` value that cannot be used: ``CRONPIPE_<NAME>='value': why``."""


# -- parsers: text in, value out; a ValueError or ArgumentTypeError gives the reason --------
# (the numbers are the command line's, schemas.argtypes: one wording for a flag and a variable)


def text(raw: str) -> str:
    return raw


def path(raw: str) -> Path:
    return Path(raw)


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def flag(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError(f"must be 1 or 0 (or true/false, yes/no, on/off), not {raw!r}")


# -- the declaration ---------------------------------------------------------------------

#: ``Variable.readers`` value of the variables every command reads (where the services are).
EVERY_COMMAND: Final = "every command"
#: ``Variable.readers`` value of the variables only the test tooling reads.
TESTS: Final = "tests"


@dataclass(frozen=True)
class Variable:
    """One ``CRONPIPE_<name>`` variable."""

    name: str
    #: The text used when the variable is unset (and, but for text settings, when it is empty).
    default: str
    help: str
    #: The `cronpipe` commands that read it (``EVERY_COMMAND``, ``TESTS`` or command names).
    readers: tuple[str, ...]
    parse: Callable[[str], Any] = text
    #: How `--help` shows the default when the text itself would not tell (or is long).
    shown_default: str | None = None
    #: Set by cronpipe for its own child processes; declared, but not listed in `--help`.
    internal: bool = False

    @property
    def env(self) -> str:
        return PREFIX + self.name

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The parsed value from ``environ`` (default ``os.environ``); raises SettingError."""
        raw = (os.environ if environ is None else environ).get(self.env)
        if raw is None or (raw == "" and self.parse is not text):
            raw = self.default
        try:
            return self.parse(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise SettingError(f"{self.env}={raw!r}: {exc}") from None

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        return self.default or "none"


_ALL = (EVERY_COMMAND,)
_WORKER = ("worker",)
_RETENTION = ("worker", "maintain")
_GATEWAY = ("gateway",)
_HTTP = ("gateway", "api")
_NOTIFIER = ("notifier",)
_LOCAL = ("services", "up")

VARIABLES: Final[tuple[Variable, ...]] = (
    Variable("KAFKA_BOOTSTRAP", "127.0.0.1:9092", "Kafka bootstrap servers; a local address is started by "
             "`up`/`services start`", _ALL),
    Variable("DATABASE_URL", "", "PostgreSQL URL", _ALL,
             shown_default="the private local cluster on CRONPIPE_PG_PORT"),
    Variable("PG_PORT", str(DEFAULT_PG_PORT), "port of the private local cluster", _ALL, port),
    Variable("GATEWAY_PORT", "8000", "HTTP ingest gateway port", _ALL, port),
    Variable("API_PORT", "8001", "read API port", _ALL, port),
    Variable("API_PUBLIC_URL", "", "base of the URLs in the API's Link headers (never the client's Host)",
             _ALL, shown_default="http://BIND:API_PORT"),
    Variable("BIND", "127.0.0.1", "address both HTTP servers (and the worker's health port) bind", _ALL),
    Variable("STATE_DIR", str(DEFAULT_STATE_DIR), "local state: Kafka jars and data, PostgreSQL cluster, "
             "pids, logs", _ALL, path, shown_default="./.cronpipe in the checkout"),
    Variable("TOPIC_PREFIX", "", "prefix for every topic name", _ALL),

    Variable("CHECKIN_RATE_LIMIT", "6", "check-ins per monitor environment and message minute; 0 = off",
             _WORKER, non_negative_int),
    Variable("BATCH_PROCESS", "1", "1: write check-in batches in a child process (reading Kafka and the "
             "writes then use two cores); 0: in the worker process", _WORKER, flag),
    Variable("CHECKIN_READERS", "2", "check-in readers: batch consumers of ingest-monitors splitting its "
             "partitions, each with its own batch process (2 measured best on 2 cores)", _WORKER, positive_int),
    Variable("CHECKIN_BATCH_SIZE", "5000", "most messages a check-in reader hands over as one batch (one "
             "transaction); waits at most 0.2 s to fill it (5,000 measured ≈ 1.3-1.6x 2,000 on 2 cores); at most 100,000",
             _WORKER, batch_size),
    Variable("MAX_ENVIRONMENTS_PER_MONITOR", "1000", "environments per monitor (Sentry's); over it is a "
             "processing error; 0 = no cap", _WORKER, non_negative_int),
    Variable("DLQ_LIMIT", "1000", "counted dead letters within CRONPIPE_DLQ_WINDOW that stop the worker "
             "(a bad deploy)", _WORKER, non_negative_int),
    Variable("DLQ_WINDOW", "60", "seconds of the DLQ limit's window", _WORKER, positive_float),
    Variable("DLQ_PROJECT_BUDGET", "100", "dead letters one project counts toward the DLQ limit per window",
             _WORKER, non_negative_int),
    Variable("SHUTDOWN_TIMEOUT", "30", "seconds a stop waits for the batch in flight; then it is abandoned "
             "uncommitted and the worker exits 3", _WORKER, non_negative_float),
    Variable("WORKER_HEALTH_PORT", "0", "the worker's /livez, /readyz, /healthz and /metrics port; 0 = none "
             "(`up`: API port + 1)", ("worker", "up"), port),
    Variable("POOL_RECONNECT_MAX", "2", "longest wait in seconds between two reconnection attempts of the "
             "worker's database pools", _WORKER, positive_float),
    Variable("MAINTENANCE_INTERVAL", "3600", "seconds between the worker's maintenance passes; 0 = off",
             _WORKER, non_negative_float),
    Variable("VOLUME_GUARD", "1", "the volume-anomaly guard (system incidents); 0 turns it off", _WORKER, flag),
    Variable("VOLUME_ABNORMAL_PCT", "10", "volume guard: a drop of this many percent is an abnormal minute",
             _WORKER, percent),
    Variable("VOLUME_INCIDENT_PCT", "30", "volume guard: a drop of this many percent is an incident minute",
             _WORKER, percent),

    Variable("RETENTION_DAYS_DEFAULT", "90", "days a check-in is kept when its message says retention_days "
             "0, and MISSED check-ins", _RETENTION, positive_int),
    Variable("ROLLUP_HOURLY_RETENTION_DAYS", "90", "days hourly rollups are kept", _RETENTION, positive_int),
    Variable("ROLLUP_DAILY_RETENTION_DAYS", "400", "days daily rollups are kept", _RETENTION, positive_int),
    Variable("PARTITIONS_AHEAD_DAYS", "7", "day partitions of checkins created ahead", _RETENTION, non_negative_int),
    Variable("MAINTENANCE_BATCH_SIZE", "10000", "rows per statement of the batched deletes", _RETENTION,
             positive_int),
    Variable("OUTBOX_RETENTION_DAYS", "7", "days a published incident_outbox row is kept after it was sent; "
             "unsent rows are never deleted", _RETENTION, positive_int),
    Variable("DELIVERY_RETENTION_DAYS", "30", "days the delivery log, finished deliveries and consumed alert "
             "events are kept; deliveries still being retried are never deleted", _RETENTION, positive_int),

    Variable("NOTIFY_ALLOW_PRIVATE", "0", "1: allow loopback/link-local/private alert destinations (`up` "
             "sets 1)", ("notifier", "api", "channel"), flag),
    Variable("NOTIFY_TIMEOUT", "10", "seconds per delivery attempt", _NOTIFIER, positive_float),
    Variable("NOTIFY_RETRY_BASE", "10", "first retry delay in seconds, doubling per attempt, with jitter",
             _NOTIFIER, non_negative_float),
    Variable("NOTIFY_RETRY_MAX", "3600", "longest retry delay in seconds", _NOTIFIER, non_negative_float),
    Variable("NOTIFY_RETRY_FOR", "86400", "seconds a delivery is retried before it expires", _NOTIFIER, non_negative_float),
    Variable("NOTIFY_FAILING_AFTER", "5", "consecutive permanent failures that mark a channel failing",
             _NOTIFIER, positive_int),
    Variable("NOTIFY_CONCURRENCY", "16", "requests in flight per channel", _NOTIFIER, positive_int),
    Variable("NOTIFY_LINK_BASE", "", "base URL of the links in Slack and PagerDuty messages", _NOTIFIER,
             shown_default="the read API"),

    Variable("GATEWAY_KEY_CACHE_TTL", "10", "seconds a DSN key lookup is cached (a revoked key stops working "
             "within it)", _GATEWAY, positive_float),
    Variable("GATEWAY_RATE_LIMIT", "", "per-key limit COUNT or COUNT/SECONDS for keys without their own, per "
             "server process", _GATEWAY),
    Variable("GATEWAY_DELIVERY_TIMEOUT", "10", "seconds to wait for Kafka's acknowledgement before a 503",
             _GATEWAY, positive_float),
    Variable("GATEWAY_NOOP", "0", "1: serve the benchmark's do-nothing baseline instead of the gateway "
             "(`bench gateway`)", _GATEWAY, flag),

    Variable("HTTP_MAX_HEADER_BYTES", "65536", "request line + headers; more is a 431", _HTTP, positive_int),
    Variable("HTTP_HEADER_TIMEOUT", "10", "seconds to the end of a request's headers; then 408", _HTTP,
             positive_float),
    Variable("HTTP_BODY_TIMEOUT", "15", "seconds to the end of its body, and for a stalled response to "
             "resume", _HTTP, positive_float),
    Variable("HTTP_IDLE_TIMEOUT", "30", "seconds a keep-alive connection may stay idle", _HTTP, positive_int),
    Variable("HTTP_MAX_CONNECTIONS", "1024", "open connections per server process; one more is a 503", _HTTP,
             positive_int),

    # Each partition costs the broker heap; the test suite creates a few thousand (a topic set
    # per test), and 512 MB ran out with a few suites' worth of topics on one broker.
    Variable("KAFKA_HEAP", "1g", "maximum Java heap of the local Kafka broker (each partition costs heap)",
             _LOCAL),

    Variable("TEST_STATE_DIR", "", "`make test`: CRONPIPE_STATE_DIR of its own services", (TESTS,),
             shown_default=".cronpipe/test in the checkout"),
    Variable("TEST_PG_PORT", "55433", "`make test`: port of its own PostgreSQL cluster", (TESTS,), port),
    Variable("TEST_KAFKA_PORT", "19092", "`make test`: port of its own broker", (TESTS,), port),
    Variable("CHROMIUM", "/usr/bin/chromium", "the browser the dashboard's tests drive", (TESTS,)),

    # api/server.py hands the effective URL to uvicorn's worker processes, which import the
    # app from a string and so get nothing but the environment.
    Variable("API_DATABASE_URL", "", "set by `cronpipe api` for its worker processes", ("api",),
             internal=True),
)

BY_NAME: Final[Mapping[str, Variable]] = {variable.name: variable for variable in VARIABLES}


def _setting(name: str) -> Any:
    """A Settings field whose default is ``CRONPIPE_<name>``, parsed (KeyError: undeclared)."""
    variable = BY_NAME[name]
    return field(default_factory=variable.read, metadata={"variable": variable})


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = _setting("KAFKA_BOOTSTRAP")
    #: Empty means "the local cluster started by `cronpipe up`".
    database_url: str = _setting("DATABASE_URL")
    bind: str = _setting("BIND")
    gateway_port: int = _setting("GATEWAY_PORT")
    api_port: int = _setting("API_PORT")
    #: Base of the URLs the API puts in ``Link`` headers; empty means ``http://BIND:API_PORT``.
    api_public_url: str = _setting("API_PUBLIC_URL")
    state_dir: Path = _setting("STATE_DIR")  # noqa: RUF009  (a field() with a default_factory)
    pg_port: int = _setting("PG_PORT")
    #: Prefix for every topic name; tests use it to isolate themselves.
    topic_prefix: str = _setting("TOPIC_PREFIX")
    #: The local broker's -Xmx (cronpipe/local/kafka.py).
    kafka_heap: str = _setting("KAFKA_HEAP")
    #: Bounds of both HTTP servers, per process (schemas/http_limits.py).
    http_max_header_bytes: int = _setting("HTTP_MAX_HEADER_BYTES")
    http_header_timeout: float = _setting("HTTP_HEADER_TIMEOUT")
    http_body_timeout: float = _setting("HTTP_BODY_TIMEOUT")
    http_idle_timeout: int = _setting("HTTP_IDLE_TIMEOUT")
    http_max_connections: int = _setting("HTTP_MAX_CONNECTIONS")
    # The gateway (ingest/gateway/config.py).
    gateway_key_cache_ttl: float = _setting("GATEWAY_KEY_CACHE_TTL")
    #: Parsed by ingest.gateway.config.parse_rate_limit.
    gateway_rate_limit: str = _setting("GATEWAY_RATE_LIMIT")
    gateway_delivery_timeout: float = _setting("GATEWAY_DELIVERY_TIMEOUT")
    #: Benchmark only: the server runs ingest/gateway/baseline.py instead of the gateway.
    gateway_noop: bool = _setting("GATEWAY_NOOP")
    # Worker bounds (docs/processor.md "Limits and abuse", "Outages").
    #: Check-ins per monitor environment and message minute (Sentry's 6); 0 = no limit.
    checkin_rate_limit: int = _setting("CHECKIN_RATE_LIMIT")
    #: Check-in batches are written in a child process (consumers/checkins/batch_process.py).
    batch_process: bool = _setting("BATCH_PROCESS")
    #: Check-in readers (batch consumer + batch process each) per worker (consumers/checkins/runner.py).
    checkin_readers: int = _setting("CHECKIN_READERS")
    #: Most messages per check-in batch (consumers/checkins/runner.py hands them over together).
    checkin_batch_size: int = _setting("CHECKIN_BATCH_SIZE")
    #: Environments one monitor may have (Sentry's MAX_ENVIRONMENTS_PER_MONITOR); 0 = no cap.
    max_environments_per_monitor: int = _setting("MAX_ENVIRONMENTS_PER_MONITOR")
    #: The DLQ limit: more than this many counted dead letters within dlq_window_s stop the worker.
    dlq_limit: int = _setting("DLQ_LIMIT")
    dlq_window_s: float = _setting("DLQ_WINDOW")
    #: Dead letters of one project counted toward the DLQ limit per window (the rest are not).
    dlq_project_budget: int = _setting("DLQ_PROJECT_BUDGET")
    #: Seconds a stopping worker waits for the batch in flight before it abandons it and exits.
    shutdown_timeout_s: float = _setting("SHUTDOWN_TIMEOUT")
    #: The worker's liveness/readiness HTTP port; 0 = no endpoint.
    worker_health_port: int = _setting("WORKER_HEALTH_PORT")
    #: Longest wait between two reconnection attempts of a database pool (psycopg_pool's grows to minutes).
    pool_reconnect_max_s: float = _setting("POOL_RECONNECT_MAX")

    # Notifier (issue 13). Back-off: attempt n waits retry_base * 2**(n-1) seconds (capped
    # at retry_max, with jitter) until retry_for seconds after the first attempt.
    notify_allow_private: bool = _setting("NOTIFY_ALLOW_PRIVATE")
    notify_timeout: float = _setting("NOTIFY_TIMEOUT")
    notify_retry_base: float = _setting("NOTIFY_RETRY_BASE")
    notify_retry_max: float = _setting("NOTIFY_RETRY_MAX")
    notify_retry_for: float = _setting("NOTIFY_RETRY_FOR")
    notify_failing_after: int = _setting("NOTIFY_FAILING_AFTER")
    notify_concurrency: int = _setting("NOTIFY_CONCURRENCY")
    #: Base of the links in Slack and PagerDuty messages (the read API).
    notify_link_base: str = _setting("NOTIFY_LINK_BASE")

    #: Retention (issue 15): days a check-in is kept when its producer sent none.
    retention_days_default: int = _setting("RETENTION_DAYS_DEFAULT")
    #: Days hourly / daily rollups are kept (daily ones outlive hourly ones: a 1-year chart).
    rollup_hourly_retention_days: int = _setting("ROLLUP_HOURLY_RETENTION_DAYS")
    rollup_daily_retention_days: int = _setting("ROLLUP_DAILY_RETENTION_DAYS")
    #: Day partitions of checkins created ahead of today.
    partitions_ahead_days: int = _setting("PARTITIONS_AHEAD_DAYS")
    #: Seconds between the worker's maintenance passes; 0 turns them off.
    maintenance_interval_s: float = _setting("MAINTENANCE_INTERVAL")
    #: Rows per statement of the maintenance's batched deletes.
    maintenance_batch_size: int = _setting("MAINTENANCE_BATCH_SIZE")
    #: Days a sent incident_outbox row is kept (unsent ones are never deleted).
    outbox_retention_days: int = _setting("OUTBOX_RETENTION_DAYS")
    #: Days the delivery log, finished deliveries and consumed alert events are kept.
    delivery_retention_days: int = _setting("DELIVERY_RETENTION_DAYS")
    #: The volume-anomaly guard (Sentry's system incidents); "0" turns it off.
    volume_guard: bool = _setting("VOLUME_GUARD")
    #: A drop of this many percent against the baseline is an abnormal / an incident minute.
    volume_abnormal_pct: float = _setting("VOLUME_ABNORMAL_PCT")
    volume_incident_pct: float = _setting("VOLUME_INCIDENT_PCT")

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


# -- `--help` ----------------------------------------------------------------------------


def describe(commands: Iterable[str] | None = None, width: int = 100) -> str:
    """The ``settings (environment)`` help text, grouped by who reads each variable.

    ``commands`` None lists every variable; otherwise those the named commands read
    (plus those every command reads).
    """
    wanted = None if commands is None else {EVERY_COMMAND, *commands}
    groups: dict[tuple[str, ...], list[Variable]] = {}
    for variable in VARIABLES:
        if variable.internal or (wanted is not None and wanted.isdisjoint(variable.readers)):
            continue
        groups.setdefault(variable.readers, []).append(variable)
    lines = ["settings (environment), grouped by the commands that read them:"]
    for readers, members in groups.items():
        lines.append(f"{_readers_text(readers)}:")
        column = max(len(v.env) for v in members) + 4
        for variable in members:
            entry = f"{variable.help} (default: {variable.default_text()})"
            lines += textwrap.wrap(entry, width, initial_indent=f"  {variable.env}".ljust(column),
                                   subsequent_indent=" " * column, break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def _readers_text(readers: tuple[str, ...]) -> str:
    if readers in (_ALL, (TESTS,)):
        return {EVERY_COMMAND: "every command", TESTS: "tests (`make test`, pytest)"}[readers[0]]
    names = [f"`{name}`" for name in readers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
