"""``cronpipe clock status``: the volume-anomaly guard's newest decision and last hour."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from schemas.settings import Settings

LATEST = "SELECT tick, decision, pct_deviation FROM clock_volume_decisions ORDER BY tick DESC LIMIT 1"


def clock_status(conn: Any) -> dict[str, Any]:
    """``{"decision", "pct_deviation", "tick", "ticks": [...]}``; the ticks are the hour up
    to the newest one, oldest first (``normal`` and no ticks before the first tick)."""
    from consumers.clock.volume_store import recent_decisions

    row = conn.execute(LATEST).fetchone()
    if row is None:
        return {"decision": "normal", "pct_deviation": None, "tick": None, "ticks": []}
    tick, decision, pct = row
    return {"decision": decision, "pct_deviation": pct, "tick": tick.isoformat(),
            "ticks": recent_decisions(conn, tick - timedelta(minutes=59))}


def cmd_clock_status(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    with psycopg.connect(settings.effective_database_url(), autocommit=True) as conn:
        print(json.dumps(clock_status(conn)), flush=True)
    return 0


def add_parsers(sub: Any) -> None:
    clock = sub.add_parser("clock", help="the message-time clock").add_subparsers(dest="action", required=True)
    p = clock.add_parser("status", help="the volume-anomaly guard: newest decision, deviation, the last hour of ticks")
    p.set_defaults(func=cmd_clock_status)
