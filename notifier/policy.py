"""Retry rules, pure: what one attempt's result means for the delivery and its channel.

2xx: delivered. 429, 5xx, timeouts and connection errors: retried with exponential
back-off and full jitter (attempt n waits between half and all of
``base * 2**(n-1)``, capped at ``cap``) until ``retry_for`` after the delivery was
created, then expired. Any other status, and a refused destination, is permanent: the
delivery fails and counts towards the channel being marked failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Attempt", "Decision", "RetryPolicy", "decide"]

Outcome = Literal["delivered", "retry", "failed", "expired"]


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 10.0
    cap_s: float = 3600.0
    retry_for_s: float = 86400.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before the attempt after ``attempt`` (1-based); ``jitter`` in [0, 1)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        return float(ceiling * (0.5 + 0.5 * jitter))


@dataclass(frozen=True)
class Attempt:
    """What one HTTP attempt gave: a status code, or no response (``error`` says why)."""

    status_code: int | None
    error: str | None = None
    #: The destination was refused (private address): never retried.
    refused: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    next_attempt_at: datetime | None
    #: True when the result counts as a permanent failure of the channel.
    permanent: bool


def decide(attempt: Attempt, attempts: int, created: datetime, now: datetime, policy: RetryPolicy,
           jitter: float) -> Decision:
    """The delivery's next state after its ``attempts``-th attempt (1-based) at ``now``."""
    code = attempt.status_code
    if code is not None and 200 <= code < 300:
        return Decision("delivered", None, permanent=False)
    transient = not attempt.refused and (code is None or code == 429 or code >= 500)
    if not transient:
        return Decision("failed", None, permanent=True)
    at = now + timedelta(seconds=policy.delay(attempts, jitter))
    if at > created + timedelta(seconds=policy.retry_for_s):
        return Decision("expired", None, permanent=False)
    return Decision("retry", at, permanent=False)
