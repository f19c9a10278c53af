"""The database boundary of the worker's consumers: :mod:`schemas.database`, shared with
the notifier (a separate service, which may import only ``schemas``).

Consumers import it from here; see schemas.database for the error tiers and the offsets.
"""

from __future__ import annotations

from schemas.database import (
    Conn,
    StoreError,
    StoreUnavailable,
    load_all_offsets,
    load_offsets,
    save_offsets,
    wrap_exceptions,
)

__all__ = [
    "Conn",
    "StoreError",
    "StoreUnavailable",
    "load_all_offsets",
    "load_offsets",
    "save_offsets",
    "wrap_exceptions",
]
