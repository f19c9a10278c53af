"""Dead letters: messages of ``ingest-monitors`` that cannot be decoded at all, or whose
processing raises an unexpected error (a bug; reason ``processing failed: <type>: <message>``).

Each goes to ``ingest-monitors-dlq`` with its original key and bytes and headers naming
the reason and where it came from. A limit guards against a bad deploy or a broken
producer: more than ``max_messages`` dead letters within ``window_s`` seconds stop the
worker with :class:`DlqLimitExceeded` instead of draining the topic into the DLQ.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [("reason", self.reason.encode("utf-8")[:1024]),
                ("original_topic", self.topic.encode()),
                ("original_partition", str(self.partition).encode()),
                ("original_offset", str(self.offset).encode())]


class DlqLimitExceeded(RuntimeError):
    """Too many dead letters in a short time: stop rather than drain the topic."""


@dataclass(frozen=True)
class DlqPolicy:
    max_messages: int = 1000
    window_s: float = 60.0


@dataclass
class DlqLimiter:
    """Sliding-window count of dead letters; time is an argument (monotonic seconds)."""

    policy: DlqPolicy
    _sent: deque[tuple[float, int]] = field(default_factory=deque)

    def admit(self, count: int, now: float) -> None:
        """Record ``count`` dead letters at ``now``; raises DlqLimitExceeded past the limit."""
        if count <= 0:
            return
        while self._sent and self._sent[0][0] <= now - self.policy.window_s:
            self._sent.popleft()
        total = sum(n for _, n in self._sent) + count
        if total > self.policy.max_messages:
            raise DlqLimitExceeded(
                f"{total} dead letters (undecodable or failing messages) within {self.policy.window_s:g}s "
                f"(limit {self.policy.max_messages}): stopping instead of draining the topic "
                "into the DLQ; inspect the DLQ and the producers, then restart")
        self._sent.append((now, count))
