"""Dead letters: messages of ``ingest-monitors`` that cannot be decoded at all, or whose
processing raises an unexpected error (a bug; reason ``processing failed: <type>: <message>``).

Each goes to ``ingest-monitors-dlq`` with its original key and bytes and headers naming
the reason and where it came from.

The DLQ limit guards against *our* bugs (a bad deploy that breaks every message), never
against a client: no sequence of messages from one project may stop processing for
another. So each dead letter is attributed to a project (the decoded ``project_id``, else
the project the Kafka key ``<project_id>:<slug>`` names, else "unattributed", one bucket),
and each project counts at most ``project_budget`` dead letters per window. The worker
stops with :class:`DlqLimitExceeded` only when more than ``max_messages`` *counted* dead
letters arrive within ``window_s`` seconds, i.e. when many projects fail at once. A project
over its budget keeps being dead-lettered (bytes kept, replayable), without halting.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

_KEY_PROJECT = re.compile(rb"(\d{1,20}):")


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    #: Whose message it is, for the per-project budget; None when nothing names a project.
    project_id: int | None = None

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [("reason", self.reason.encode("utf-8")[:1024]),
                ("original_topic", self.topic.encode()),
                ("original_partition", str(self.partition).encode()),
                ("original_offset", str(self.offset).encode())]


def project_of_key(key: bytes | None) -> int | None:
    """The project a message key ``<project_id>:<slug>`` names (what the gateway and the
    producer write); None for any other key."""
    match = _KEY_PROJECT.match(key or b"")
    return int(match.group(1)) if match else None


class DlqLimitExceeded(RuntimeError):
    """Too many dead letters from many projects in a short time: stop rather than drain the topic."""


@dataclass(frozen=True)
class DlqPolicy:
    max_messages: int = 1000
    window_s: float = 60.0
    #: Dead letters of one project (or of the unattributed bucket) counted per window.
    project_budget: int = 100


@dataclass
class DlqLimiter:
    """Sliding-window count of dead letters per project; time is an argument (monotonic seconds)."""

    policy: DlqPolicy
    _sent: deque[tuple[float, int | None, int]] = field(default_factory=deque)
    _reported: dict[int | None, float] = field(default_factory=dict)

    def admit(self, letters: Iterable[DeadLetter], now: float) -> set[int | None]:
        """Record ``letters`` at ``now``; return the projects now over their budget (their
        letters are sent, not counted). Raises DlqLimitExceeded past the limit."""
        new = Counter(letter.project_id for letter in letters)
        if not new:
            return set()
        while self._sent and self._sent[0][0] <= now - self.policy.window_s:
            self._sent.popleft()
        per_project = self.recent()
        per_project.update(new)
        budget = self.policy.project_budget
        counted = sum(min(n, budget) for n in per_project.values())
        if counted > self.policy.max_messages:
            raise DlqLimitExceeded(
                f"{counted} dead letters (undecodable or failing messages) counted within {self.policy.window_s:g}s "
                f"from {len(per_project)} projects (limit {self.policy.max_messages}, at most {budget} per project): "
                "stopping instead of draining the topic into the DLQ; inspect the DLQ and the last deploy, "
                "then restart")
        self._sent.extend((now, project, n) for project, n in new.items())
        return {project for project in new if per_project[project] > budget}

    def first_report(self, project: int | None, now: float) -> bool:
        """True once per window per project: whether to log that it is over its budget."""
        last = self._reported.get(project)
        if last is not None and now - last < self.policy.window_s:
            return False
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported[project] = now
        return True

    def recent(self) -> Counter[int | None]:
        """Dead letters per project within the window (as of the last admit)."""
        counts: Counter[int | None] = Counter()
        for _, project, n in self._sent:
            counts[project] += n
        return counts

    def counted(self) -> int:
        """What the limit compares: each project's recent dead letters, capped at its budget."""
        return sum(min(n, self.policy.project_budget) for n in self.recent().values())
