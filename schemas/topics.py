"""Kafka topics of the contract (DESIGN.md, "Kafka topics") and their creation.

Topics are created by the application at start with the admin client, never by hand.
A prefix (``CRONPIPE_TOPIC_PREFIX``) lets tests and benchmarks isolate themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # documented path; the stub only re-exports it implicitly


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    prefix: str = ""
    #: Production uses the broker's clock (LogAppendTime); tests pass CreateTime to drive time.
    timestamp_type: str = "LogAppendTime"
    ingest_partitions: int = 8

    @property
    def ingest(self) -> str:
        return f"{self.prefix}ingest-monitors"

    @property
    def clock_tick(self) -> str:
        return f"{self.prefix}monitors-clock-tick"

    @property
    def clock_tasks(self) -> str:
        return f"{self.prefix}monitors-clock-tasks"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}ingest-monitors-dlq"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}monitors-incidents"

    def specs(self) -> list[TopicSpec]:
        return [
            TopicSpec(self.ingest, self.ingest_partitions,
                      {"message.timestamp.type": self.timestamp_type, "compression.type": "lz4"}),
            TopicSpec(self.clock_tick, 1),
            TopicSpec(self.clock_tasks, 8),
            TopicSpec(self.dlq, 1),
            TopicSpec(self.incidents, 8),
        ]


class TopicError(RuntimeError):
    """A topic could not be created or the broker could not be reached."""


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except Exception as exc:  # KafkaException carries no useful type for callers
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    missing = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.config)
               for s in specs if s.name not in existing]
    if not missing:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue  # another process won the race: fine
            raise TopicError(f"creating topic {name} failed: {exc}") from None
    return created
