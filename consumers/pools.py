"""Database pools whose reconnection back-off is capped (issue #18.4).

psycopg_pool retries a lost connection after 1 s, 2 s, 4 s … (doubling up to its
``reconnect_timeout``, 5 minutes), so after a long PostgreSQL outage the pool's next
attempt could be a minute away: recovery grew with the outage (12 s after a 15 s outage,
48 s after 75 s). :class:`CappedPool` waits at most ``max_delay_s`` between attempts and
keeps trying for as long as the outage lasts.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

#: How long a pool keeps reconnecting before it gives a connection slot up (then a
#: waiting client makes it grow again): the outage has no bound we could pick.
_RECONNECT_TIMEOUT_S = 24 * 3600.0


class _CappedAttempt(AttemptWithBackoff):
    def __init__(self, *, timeout: float, max_delay_s: float) -> None:
        super().__init__(timeout=timeout)
        self.max_delay_s = max_delay_s

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.max_delay_s)


class CappedPool(ConnectionPool):
    """A ConnectionPool reconnecting at most ``max_delay_s`` apart."""

    def __init__(self, conninfo: str, *, max_delay_s: float, **kwargs: Any) -> None:
        self.max_delay_s = max_delay_s
        kwargs.setdefault("reconnect_timeout", _RECONNECT_TIMEOUT_S)
        super().__init__(conninfo, **kwargs)

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # psycopg_pool's private hook (3.2, 3.3): the one place a reconnection attempt is made.
        if attempt is None:
            attempt = _CappedAttempt(timeout=self.reconnect_timeout, max_delay_s=self.max_delay_s)
        super()._add_connection(attempt, growing)
