"""Alert channels: the one implementation of their SQL, used by `cronpipe channel`, the
notifier and the API's write routes (which may import only ``schemas``).

Synchronous psycopg 3 on a connection in autocommit mode; the API calls these in a thread.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import psycopg

if TYPE_CHECKING:
    from schemas.incident_events import IncidentEvent

__all__ = [
    "KINDS",
    "TEST_INCIDENT_ID",
    "Channel",
    "ChannelError",
    "create_channel",
    "delete_channel",
    "enqueue_test",
    "find_channel",
    "list_channels",
    "load_channel",
    "read_log",
    "test_event",
]

Conn = psycopg.Connection[Any]
#: The kinds of channel, each with its message format in notifier.formats.
KINDS = ("webhook", "slack", "pagerduty")
#: The incident id of test notifications: the notifier attempts these even on a failing
#: channel, and a delivered one revives it.
TEST_INCIDENT_ID = UUID(int=0)


class ChannelError(ValueError):
    """A channel request that cannot be carried out; ``str()`` says why."""


@dataclass(frozen=True)
class Channel:
    id: int
    guid: UUID
    organization_id: int
    organization: str
    kind: str
    url: str
    secret: str
    routing_key: str | None
    consecutive_failures: int
    is_failing: bool
    date_created: datetime

    def public(self) -> dict[str, Any]:
        """What the CLI and the API show: never the secret or the routing key."""
        return {"id": str(self.guid), "kind": self.kind, "url": self.url, "org": self.organization,
                "isFailing": self.is_failing, "consecutiveFailures": self.consecutive_failures,
                "dateCreated": self.date_created.isoformat()}


_CHANNEL_COLUMNS = """c.id, c.guid, c.organization_id, o.slug, c.kind, c.url, c.secret, c.routing_key,
       c.consecutive_failures, c.is_failing, c.date_created"""


def _channel(row: Sequence[Any]) -> Channel:
    return Channel(*row)


def _org_id(conn: Conn, org: str) -> int:
    row = conn.execute("SELECT id FROM organizations WHERE slug = %(org)s OR id::text = %(org)s",
                       {"org": org}).fetchone()
    if row is None:
        raise ChannelError(f"no organization {org!r}")
    return int(row[0])


def create_channel(conn: Conn, org: str, kind: str, url: str, routing_key: str | None = None) -> tuple[Channel, str]:
    """A new channel and its secret (shown once). The caller checks the URL first."""
    org_id = _org_id(conn, org)
    if kind == "pagerduty" and not routing_key:
        raise ChannelError("a pagerduty channel needs --routing-key (the integration key)")
    secret = secrets.token_hex(32)
    row = conn.execute(
        "INSERT INTO alert_channels (organization_id, kind, url, secret, routing_key)"
        " VALUES (%(org_id)s, %(kind)s, %(url)s, %(secret)s, %(routing_key)s) RETURNING id",
        {"org_id": org_id, "kind": kind, "url": url, "secret": secret, "routing_key": routing_key}).fetchone()
    assert row is not None
    channel = load_channel(conn, int(row[0]))
    assert channel is not None
    return channel, secret


def load_channel(conn: Conn, channel_id: int) -> Channel | None:
    row = conn.execute(f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels c JOIN organizations o"
                       " ON o.id = c.organization_id WHERE c.id = %(id)s", {"id": channel_id}).fetchone()
    return None if row is None else _channel(row)


def find_channel(conn: Conn, org: str, channel: str) -> Channel:
    """The organization's channel by its public id; raises ChannelError."""
    org_id = _org_id(conn, org)
    try:
        guid = UUID(channel)
    except ValueError:
        raise ChannelError(f"invalid channel id {channel!r}") from None
    row = conn.execute(f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels c JOIN organizations o"
                       " ON o.id = c.organization_id WHERE c.guid = %(guid)s AND c.organization_id = %(org_id)s",
                       {"guid": guid, "org_id": org_id}).fetchone()
    if row is None:
        raise ChannelError(f"no channel {channel} in organization {org!r}")
    return _channel(row)


def list_channels(conn: Conn, org: str) -> list[Channel]:
    org_id = _org_id(conn, org)
    rows = conn.execute(f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels c JOIN organizations o"
                        " ON o.id = c.organization_id WHERE c.organization_id = %(org_id)s ORDER BY c.id",
                        {"org_id": org_id}).fetchall()
    return [_channel(r) for r in rows]


def delete_channel(conn: Conn, org: str, channel: str) -> None:
    """Delete a channel with its deliveries and log; raises ChannelError if unknown."""
    found = find_channel(conn, org, channel)
    conn.execute("DELETE FROM alert_channels WHERE id = %(id)s", {"id": found.id})


def read_log(conn: Conn, org: str, channel: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The channel's newest attempts first."""
    found = find_channel(conn, org, channel)
    rows = conn.execute(
        "SELECT event_id, attempt, outcome, status_code, latency_ms, error, date_added FROM alert_delivery_log"
        " WHERE channel_id = %(id)s ORDER BY id DESC LIMIT %(limit)s", {"id": found.id, "limit": limit}).fetchall()
    return [{"eventId": str(r[0]), "attempt": r[1], "outcome": r[2], "statusCode": r[3], "latencyMs": r[4],
             "error": r[5], "dateCreated": r[6].isoformat()} for r in rows]


def test_event(channel: Channel) -> IncidentEvent:
    """A synthetic ``opened`` event for ``channel``'s organization."""
    # Imported here: the event model (pydantic) would otherwise load with every
    # `cronpipe` command, which imports this module for ChannelError.
    from schemas.incident_events import IncidentEvent

    now = datetime.now(UTC)
    return IncidentEvent.model_validate({
        "event_id": uuid.uuid4(), "type": "opened", "incident_id": TEST_INCIDENT_ID,
        "organization": {"id": channel.organization_id, "slug": channel.organization},
        "project": {"id": 0, "slug": "cronpipe-test"},
        "monitor": {"id": UUID(int=0), "slug": "cronpipe-test", "name": "cronpipe test notification"},
        "environment": "test", "monitor_environment_id": 0, "starting_timestamp": now,
        "resolving_timestamp": None, "failed_checkin_id": None, "previous_checkin_ids": [],
        "failing_checkins": [], "last_ok_checkin": None,
        "reason": "Test notification from cronpipe: this channel works", "is_muted": False,
        "clock_tick_ts": None, "received_ts": None, "date_created": now})


def enqueue_test(conn: Conn, channel: Channel) -> UUID:
    """Queue a test event for this one channel; the notifier sends it like any delivery
    (retries included) and a delivered test revives a failing channel. Returns the event id."""
    event = test_event(channel)
    with conn.transaction():
        conn.execute("INSERT INTO alert_events (event_id, payload) VALUES (%(id)s, %(payload)s::jsonb)",
                     {"id": event.event_id, "payload": orjson.dumps(event.model_dump(mode="json")).decode()})
        conn.execute("INSERT INTO alert_deliveries (event_id, channel_id) VALUES (%(id)s, %(channel_id)s)",
                     {"id": event.event_id, "channel_id": channel.id})
    return event.event_id
