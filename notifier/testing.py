"""Test notifications (`cronpipe channel test`): one synthetic event, sent now.

The attempt is recorded in the delivery log like any other; when it succeeds, a channel
marked failing is revived (its failure count reset).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from notifier import store
from notifier.delivery import DeliveryConfig, PinnedResolver, open_session, send
from schemas.incident_events import IncidentEvent

__all__ = ["send_test"]


def test_event(channel: store.Channel) -> IncidentEvent:
    now = datetime.now(UTC)
    return IncidentEvent.model_validate({
        "event_id": uuid.uuid4(), "type": "opened", "incident_id": uuid.UUID(int=0),
        "organization": {"id": channel.organization_id, "slug": channel.organization},
        "project": {"id": 0, "slug": "cronpipe-test"},
        "monitor": {"id": uuid.UUID(int=0), "slug": "cronpipe-test", "name": "cronpipe test notification"},
        "environment": "test", "monitor_environment_id": 0, "starting_timestamp": now,
        "resolving_timestamp": None, "failed_checkin_id": None, "previous_checkin_ids": [],
        "failing_checkins": [], "last_ok_checkin": None,
        "reason": "Test notification from cronpipe: this channel works", "is_muted": False,
        "clock_tick_ts": None, "received_ts": None, "date_created": now})


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
