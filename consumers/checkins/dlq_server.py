"""One DLQ limit for several check-in readers (``CRONPIPE_CHECKIN_READERS``).

The DLQ limit (``consumers.checkins.dlq``) must count every dead letter of the worker,
whichever reader's batch sent it. Readers whose batches run in threads share one
:class:`LockedLimiter`; readers with batch processes share one in a small server process
(``multiprocessing.managers``), which the batch processes call through a proxy, and only
for a batch that has dead letters. This module imports little on purpose: the server
process imports it, and only it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.managers import BaseManager
from typing import TYPE_CHECKING, cast

from consumers.checkins.dlq import DeadLetter, DlqLimiter
from consumers.shutdown import exit_with_parent

if TYPE_CHECKING:
    from consumers.context import WorkerContext

__all__ = ["LockedLimiter", "shared_limiter"]


@dataclass
class LockedLimiter(DlqLimiter):
    """A :class:`DlqLimiter` several threads may call at once (readers in one process, or
    the batch processes' calls served by the limiter's server, one thread each)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def admit(self, letters: Iterable[DeadLetter], now: float) -> set[int | None]:
        with self._lock:
            return super().admit(letters, now)

    def first_report(self, project: int | None, now: float) -> bool:
        with self._lock:
            return super().first_report(project, now)


class _LimiterServer(BaseManager):
    pass


_LimiterServer.register("LockedLimiter", LockedLimiter, exposed=("admit", "first_report"))


def shared_limiter(ctx: WorkerContext, readers: int) -> tuple[DlqLimiter | None, Callable[[], None]]:
    """The DLQ limiter every runner of the worker uses, and how to stop it. None for one
    batch process (it keeps its own, no server needed); with batch processes a proxy to
    the limiter in its server process, which exits with the worker even on SIGKILL."""
    if not ctx.batch_process:
        return LockedLimiter(ctx.dlq), lambda: None
    if readers == 1:
        return None, lambda: None
    server = _LimiterServer(ctx=multiprocessing.get_context("spawn"))
    server.start(initializer=_init_limiter_server, initargs=(os.getpid(),))
    proxy = server.LockedLimiter(ctx.dlq)  # type: ignore[attr-defined]
    return cast(DlqLimiter, proxy), server.shutdown


def _init_limiter_server(parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped by the parent, after the runners
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent)
