"""Test notifications (`cronpipe channel test`): one synthetic event, sent now.

The attempt is recorded in the delivery log like any other; when it succeeds, a channel
marked failing is revived (its failure count reset).
"""

from __future__ import annotations

import asyncio
from typing import Any

from notifier import store
from notifier.delivery import DeliveryConfig, PinnedResolver, open_session, send
from schemas.channels import test_event

__all__ = ["send_test"]


def send_test(conn: Any, channel: store.Channel, config: DeliveryConfig) -> dict[str, Any]:
    """Send a test event to ``channel``, record the attempt; returns what happened."""
    event = test_event(channel)

    async def attempt() -> tuple[Any, int]:
        resolver = PinnedResolver()
        async with open_session(resolver, 1) as session:
            return await send(session, resolver, channel, event, config, test=True)

    result, latency = asyncio.run(attempt())
    ok = result.status_code is not None and 200 <= result.status_code < 300
    outcome = "delivered" if ok else "refused" if result.refused else "failed"
    store.record_attempts(conn, channel.id, [store.AttemptRecord(
        None, event.event_id, 1, outcome, None, result.status_code, latency, result.error, permanent=False)],
        failing_after=config.failing_after, revive=True)
    return {"id": str(channel.guid), "eventId": str(event.event_id), "delivered": ok,
            "statusCode": result.status_code, "latencyMs": latency, "error": result.error}
