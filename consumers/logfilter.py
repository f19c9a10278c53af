"""One log line per interval for a repeated connection error (issue #18.5).

While the broker is down aiokafka (faust's client) logs the same connection failure for
every connection attempt, several times a second (a 35 s outage wrote ~1,300 ERROR lines).
:class:`RepeatedErrorFilter` lets the first record of each kind through, drops repeats for
``interval_s`` seconds, and adds to the next one let through how many were dropped.
A "kind" is the logger and the message template (``record.msg``), so different errors
are never merged. Time is an argument (``clock``), so tests need none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

#: Loggers whose connection errors repeat while a dependency is down.
NOISY_LOGGERS: Final = ("aiokafka", "kafka", "faust", "mode")
#: Only warnings and errors are rate-limited; INFO and DEBUG are left alone.
_MIN_LEVEL: Final = logging.WARNING


class RepeatedErrorFilter(logging.Filter):
    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # kind → (last let through, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < _MIN_LEVEL:
            return True
        kind = (record.name, str(record.msg))
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval_s:
            self._kinds[kind] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [{seen[1]} more like this in the last {now - seen[0]:.0f}s]"
        if len(self._kinds) > 1000:  # bounded: message templates, not values, are the keys
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        return True


def install(interval_s: float = 30.0, loggers: Iterable[str] = NOISY_LOGGERS) -> logging.Filter:
    """Rate-limit the noisy loggers' warnings and errors on every handler of the root logger
    (a filter on a logger would miss its children's records, e.g. ``aiokafka.conn``)."""
    rate_limit = RepeatedErrorFilter(interval_s)
    prefixes = tuple(loggers)

    class _OnlyNoisy(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if not record.name.startswith(prefixes):
                return True
            # Decided once per record: with several handlers, the second must not see a repeat.
            keep = getattr(record, "_cronpipe_keep", None)
            if keep is None:
                keep = rate_limit.filter(record)
                record._cronpipe_keep = keep
            return bool(keep)

    only_noisy = _OnlyNoisy()
    for handler in logging.getLogger().handlers:
        handler.addFilter(only_noisy)
    return only_noisy
