"""Retention of the alert tables against real PostgreSQL: one maintenance pass deletes
sent outbox rows, finished deliveries, their log and consumed events once they are old
enough, and never an unsent (or held) outbox row or a delivery still being retried."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from consumers.maintenance.plan import RetentionConfig
from consumers.maintenance.run import maintain
from cronpipe.admin import create_org
from notifier import store

pytestmark = pytest.mark.postgres

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
#: Batches of 2, so every prune takes several statements.
CONFIG = RetentionConfig(batch_size=2, outbox_days=7, delivery_days=30)


@dataclass
class Alerts:
    """Rows written as the relay and the notifier leave them, dated relative to NOW."""

    conn: psycopg.Connection[Any]
    channel_id: int
    outbox: dict[str, uuid.UUID] = field(default_factory=dict)
    events: dict[str, uuid.UUID] = field(default_factory=dict)

    def outbox_row(self, name: str, added: datetime, sent: datetime | None, held: bool = False) -> None:
        self.outbox[name] = uuid.uuid4()
        self.conn.execute("INSERT INTO incident_outbox (event_id, monitor_environment_id, payload, date_added,"
                          " sent_at, held) VALUES (%s, 1, '{}', %s, %s, %s)",
                          (self.outbox[name], added, sent, held))

    def delivery(self, name: str, received: datetime, status: str, attempts: list[datetime],
                 finished: datetime | None) -> None:
        self.events[name] = event_id = uuid.uuid4()
        self.conn.execute("INSERT INTO alert_events (event_id, payload, date_received) VALUES (%s, '{}', %s)",
                          (event_id, received))
        row = self.conn.execute(
            "INSERT INTO alert_deliveries (event_id, channel_id, status, attempts, next_attempt_at, date_added,"
            " date_finished) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (event_id, self.channel_id, status, len(attempts), NOW + DAY, received, finished)).fetchone()
        assert row is not None
        for n, at in enumerate(attempts, 1):
            self.conn.execute(
                "INSERT INTO alert_delivery_log (delivery_id, channel_id, event_id, attempt, outcome, date_added)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (row[0], self.channel_id, event_id, n, "retry" if at != finished else status, at))

    def muted_event(self, name: str, received: datetime) -> None:
        self.events[name] = uuid.uuid4()
        self.conn.execute("INSERT INTO alert_events (event_id, payload, date_received) VALUES (%s, '{}', %s)",
                          (self.events[name], received))

    def kept(self, table: str, column: str, ids: dict[str, uuid.UUID]) -> set[str]:
        query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier(table))
        left = {r[0] for r in self.conn.execute(query)}
        return {name for name, i in ids.items() if i in left}


@pytest.fixture
def alerts(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_org(conn, "acme")
        channel, _ = store.create_channel(conn, "acme", "webhook", "https://hooks.example.com/x")
        yield Alerts(conn, channel.id)


def test_sent_outbox_rows_go_after_their_retention_and_unsent_or_held_ones_never(alerts: Alerts,
                                                                                database_url: str) -> None:
    for n in range(5):  # more than a batch
        alerts.outbox_row(f"sent 8 days ago #{n}", NOW - 9 * DAY, NOW - 8 * DAY)
    alerts.outbox_row("sent 6 days ago", NOW - 40 * DAY, NOW - 6 * DAY)
    alerts.outbox_row("unsent for 40 days", NOW - 40 * DAY, None)
    alerts.outbox_row("held for 40 days", NOW - 40 * DAY, None, held=True)
    summary = maintain(database_url, NOW, CONFIG)
    assert alerts.kept("incident_outbox", "event_id", alerts.outbox) == {
        "sent 6 days ago", "unsent for 40 days", "held for 40 days"}
    assert summary.outbox_deleted == 5


def test_finished_deliveries_their_log_and_events_go_after_their_retention_and_retried_ones_never(
        alerts: Alerts, database_url: str) -> None:
    old, recent = NOW - 31 * DAY, NOW - 29 * DAY
    for n in range(3):
        alerts.delivery(f"delivered 31 days ago #{n}", old, "delivered", [old], old)
    alerts.delivery("failed 31 days ago", old, "failed", [old - DAY, old], old)
    alerts.delivery("expired 31 days ago", old - DAY, "expired", [old - DAY, old], old)
    alerts.delivery("delivered 29 days ago", old, "delivered", [old, recent], recent)
    alerts.delivery("retried for 40 days", NOW - 40 * DAY, "pending", [NOW - 40 * DAY, NOW - 35 * DAY], None)
    alerts.muted_event("muted 31 days ago", old)
    alerts.muted_event("muted 29 days ago", recent)

    summary = maintain(database_url, NOW, CONFIG)

    kept = {"delivered 29 days ago", "retried for 40 days"}
    assert alerts.kept("alert_deliveries", "event_id", alerts.events) == kept
    assert alerts.kept("alert_delivery_log", "event_id", alerts.events) == kept
    assert alerts.kept("alert_events", "event_id", alerts.events) == kept | {"muted 29 days ago"}
    # The log goes by age: the kept delivery's 31-day-old attempt too, not the retried one's.
    log = alerts.conn.execute("SELECT event_id, attempt FROM alert_delivery_log ORDER BY event_id, attempt").fetchall()
    assert sorted(log) == sorted([(alerts.events["delivered 29 days ago"], 2),
                                  (alerts.events["retried for 40 days"], 1), (alerts.events["retried for 40 days"], 2)])
    assert (summary.deliveries_deleted, summary.delivery_log_deleted, summary.alert_events_deleted) == (5, 8, 6)


def test_a_second_pass_finds_nothing_more_to_delete(alerts: Alerts, database_url: str) -> None:
    alerts.outbox_row("sent 8 days ago", NOW - 9 * DAY, NOW - 8 * DAY)
    alerts.delivery("delivered 31 days ago", NOW - 31 * DAY, "delivered", [NOW - 31 * DAY], NOW - 31 * DAY)
    maintain(database_url, NOW, CONFIG)
    again = maintain(database_url, NOW, CONFIG)
    assert (again.outbox_deleted, again.delivery_log_deleted, again.deliveries_deleted,
            again.alert_events_deleted) == (0, 0, 0, 0)
