"""The retry rule for work done in a thread, shared by the worker's consumers and the
notifier (which may import only ``schemas``).

Transient failures (:class:`~schemas.database.StoreUnavailable`, plus whatever a caller
names) mean nothing was committed: the same work is tried again after a capped
exponential back-off, each retry logged as a warning. Anything else, a permanent
:class:`~schemas.database.StoreError` included, propagates: the caller stops loudly.
The work runs inside :func:`~schemas.database.wrap_exceptions`, so no caller sees
psycopg's error types.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from schemas.database import StoreUnavailable, wrap_exceptions

__all__ = ["DEFAULT_BACKOFF", "Backoff", "Transient", "retry_blocking"]

log = logging.getLogger("cronpipe.retry")

T = TypeVar("T")
Transient = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Backoff:
    """Delays ``first, first*2, first*4, ...`` capped at ``cap`` seconds.

    The default cap is 2 s, like the pools' reconnection (consumers.pools): recovery after
    an outage must not grow with the outage.
    """

    first_s: float = 0.5
    cap_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (0 = the first failure)."""
        return min(self.cap_s, self.first_s * (1 << min(attempt, 32)))


DEFAULT_BACKOFF = Backoff()


def retry_blocking(what: str, work: Callable[[], T], *, stop: Sequence[threading.Event],
                   transient: Transient = (), backoff: Backoff = DEFAULT_BACKOFF,
                   on_retry: Callable[[BaseException], None] | None = None,
                   on_recovered: Callable[[], None] | None = None,
                   logger: logging.Logger = log) -> T | None:
    """Call ``work()`` (in this thread) until it succeeds; None once any ``stop`` event is set.

    The rule of the module docstring: StoreUnavailable and ``transient`` back off and
    retry, anything else propagates. ``on_retry`` runs after each transient failure
    (e.g. drop a connection that may be broken), ``on_recovered`` after a success that
    needed retries. No attempt starts after a stop event is set, and the back-off wait
    ends early when the first one is set. With no stop events (``stop=()``) it retries
    until the work succeeds: the check-in batch in flight, which only the stop deadline
    abandons (consumers.shutdown).
    """
    retried: Transient = (StoreUnavailable, *transient)
    for attempt in itertools.count():
        if any(event.is_set() for event in stop):
            return None
        try:
            with wrap_exceptions():
                result = work()
        except retried as exc:
            if on_retry is not None:
                on_retry(exc)
            if any(event.is_set() for event in stop):
                return None
            delay = backoff.delay(attempt)
            logger.warning("%s not committed (%s); retrying in %.1fs", what, exc, delay)
            if stop:
                stop[0].wait(delay)
            else:
                time.sleep(delay)
            continue
        if attempt and on_recovered is not None:
            on_recovered()
        return result
    raise AssertionError("unreachable")
