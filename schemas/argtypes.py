"""Argument types for the command lines and the settings: numbers with their allowed range.

argparse turns the ``ArgumentTypeError`` into ``cronpipe X: error: argument --flag: <reason>``
and exit status 2, so a bad value is named instead of silently misbehaving; schemas.settings
turns it into ``CRONPIPE_<NAME>='value': <reason>``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(parse: Callable[[str], float], kind: str, low: float, low_ok: bool,
            high: float | None = None) -> Callable[[str], float]:
    def check(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if value < low or (value == low and not low_ok):
            raise argparse.ArgumentTypeError(f"must be {'>=' if low_ok else '>'} {low:g}, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, not {text}")
        return value

    return check


positive_int: Callable[[str], int] = _number(int, "an integer", 0, False)  # type: ignore[assignment]
non_negative_int: Callable[[str], int] = _number(int, "an integer", 0, True)  # type: ignore[assignment]
positive_float = _number(float, "a number", 0, False)
non_negative_float = _number(float, "a number", 0, True)
ratio = _number(float, "a number", 0, True, 1)
percent = _number(float, "a number", 0, True, 100)
port: Callable[[str], int] = _number(int, "an integer", 0, True, 65535)  # type: ignore[assignment]
#: Messages per consumer batch: librdkafka's consume() refuses more than 1,000,000, and a
#: batch is held in memory whole (twice: the reader's rows and the batch process's copy).
batch_size: Callable[[str], int] = _number(int, "an integer", 0, False, 100_000)  # type: ignore[assignment]
