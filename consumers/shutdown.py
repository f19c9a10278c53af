"""A deadline on the worker's stop (issue #18.1).

A stop (SIGTERM, SIGINT, or an agent stopping the worker) lets the batch in flight commit,
but not forever: during a PostgreSQL outage that batch retries until the database returns,
and a drain once hung for good. :class:`ShutdownGuard` gives the stop ``timeout_s``
seconds; after that — or at once on a second signal — it abandons the batch in flight
uncommitted (it is redelivered: offsets live with the data, in the same transaction),
kills the worker's child processes and ends the process with :data:`EXIT_ABANDONED`,
whatever its threads are doing. ``ctx.stopping`` is set when the stop begins, so no new
clock-task work starts after it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger("cronpipe.worker")
#: Exit code of a worker that abandoned its batch in flight (deadline or second signal).
EXIT_ABANDONED: Final = 3


class ShutdownGuard:
    def __init__(self, timeout_s: float, stopping: threading.Event,
                 exit_process: Callable[[int], None] = os._exit) -> None:
        self.timeout_s = timeout_s
        self.stopping = stopping
        self._exit = exit_process
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._signals = 0

    def begin(self, reason: str) -> None:
        """The stop began (idempotent): set ``stopping`` and start the deadline."""
        with self._lock:
            self.stopping.set()
            if self._timer is not None:
                return
            log.warning("stopping (%s): the batch in flight has %gs to commit", reason, self.timeout_s)
            self._timer = threading.Timer(self.timeout_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def signalled(self, signame: str) -> None:
        """SIGTERM/SIGINT: the first begins the stop, the second abandons at once."""
        with self._lock:
            self._signals += 1
            second = self._signals > 1
        if second:
            self.abandon(f"second {signame} during the stop")
        else:
            self.begin(signame)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _expire(self) -> None:
        self.abandon(f"the stop did not finish within {self.timeout_s:g}s (CRONPIPE_SHUTDOWN_TIMEOUT)")

    def abandon(self, why: str) -> None:
        """Log why, kill the children, end the process with EXIT_ABANDONED; never returns
        (unless ``exit_process`` does, in tests)."""
        log.critical("worker exiting without finishing its stop: %s; the batch in flight is abandoned "
                     "uncommitted and will be redelivered (exit %d)", why, EXIT_ABANDONED)
        kill_children()
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        self._exit(EXIT_ABANDONED)


def kill_children() -> None:
    """SIGKILL the worker's multiprocessing children (the batch process): a transaction it
    has open rolls back when its connection drops."""
    for child in multiprocessing.active_children():
        if child.pid is not None:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def exit_with_parent(parent: int) -> None:
    """In a child of the worker (the batch process, the DLQ limiter's server): exit as soon
    as ``parent`` is gone. A worker killed with SIGKILL cannot shut its children down; a
    transaction a child has in flight then rolls back and its batch is redelivered."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
