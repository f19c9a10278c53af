"""HTTP delivery: one attempt (:func:`send`), and one drain loop per channel.

Each channel is drained by its own asyncio task (:class:`ChannelSender`), with its own
HTTP client and at most ``concurrency`` requests in flight, so a slow or dead receiver
only ever holds up its own channel's deliveries. Before every attempt the URL's host is
resolved and checked again (``schemas.destinations``) and the request goes to the
address that was checked, with the original Host header and TLS server name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from notifier import store
from notifier.formats import render
from notifier.policy import Attempt, RetryPolicy, decide
from schemas.destinations import DestinationRefused, resolve_destination
from schemas.incident_events import IncidentEvent, IncidentEventError, decode_incident_event

__all__ = ["ChannelSender", "DeliveryConfig", "send"]

log = logging.getLogger("cronpipe.notifier")


@dataclass(frozen=True)
class DeliveryConfig:
    timeout_s: float = 10.0
    allow_private: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    failing_after: int = 5
    concurrency: int = 8
    link_base: str = "http://127.0.0.1:8001"


def _pinned_url(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


async def send(client: httpx.AsyncClient, channel: store.Channel, event: IncidentEvent, config: DeliveryConfig,
               *, test: bool = False) -> tuple[Attempt, int]:
    """One attempt: (what happened, latency in ms). Never raises for network errors."""
    started = time.perf_counter()
    try:
        target = await asyncio.to_thread(resolve_destination, channel.url, allow_private=config.allow_private)
    except DestinationRefused as exc:
        return Attempt(None, str(exc), refused=True), 0
    request = render(channel.kind, event, secret=channel.secret, routing_key=channel.routing_key,
                     link_base=config.link_base, test=test)
    host = urlsplit(channel.url).netloc.rsplit("@", 1)[-1]
    extensions: dict[str, Any] = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        response = await client.post(_pinned_url(channel.url, target.addresses[0]), content=request.body,
                                     headers={**request.headers, "Host": host}, extensions=extensions,
                                     timeout=config.timeout_s)
        attempt = Attempt(response.status_code, None if response.is_success else f"HTTP {response.status_code}")
    except httpx.TimeoutException:
        attempt = Attempt(None, f"timed out after {config.timeout_s:g}s")
    except httpx.HTTPError as exc:
        attempt = Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
    return attempt, int((time.perf_counter() - started) * 1000)


class ChannelSender:
    """Drains one channel's due deliveries until none is due, then returns."""

    def __init__(self, channel_id: int, connect: Callable[[], Any], config: DeliveryConfig) -> None:
        self._channel_id = channel_id
        self._connect = connect
        self._config = config
        self._limit = asyncio.Semaphore(config.concurrency)
        self._rand = random.Random()

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            with self._connect() as conn:
                return fn(conn, *args, **kwargs)
        return await asyncio.to_thread(call)

    async def run(self) -> None:
        async with httpx.AsyncClient(follow_redirects=False, verify=True) as client:
            while True:
                channel: store.Channel | None = await self._db(store.load_channel, self._channel_id)
                if channel is None:
                    return  # deleted
                due: list[store.DueDelivery] = await self._db(
                    store.claim_due, self._channel_id, limit=self._config.concurrency * 4,
                    lease_s=self._config.timeout_s + 5)
                if not due:
                    return
                if channel.is_failing:
                    records = [self._skipped(d) for d in due]
                else:
                    records = list(await asyncio.gather(*(self._attempt(client, channel, d) for d in due)))
                await self._db(store.record_attempts, self._channel_id, records,
                               failing_after=self._config.failing_after)

    def _skipped(self, due: store.DueDelivery) -> store.AttemptRecord:
        return store.AttemptRecord(due.id, due.event_id, due.attempts, "skipped", None, None, None,
                                   "channel is failing: send a test notification to revive it", permanent=False)

    async def _attempt(self, client: httpx.AsyncClient, channel: store.Channel,
                       due: store.DueDelivery) -> store.AttemptRecord:
        number = due.attempts + 1
        try:
            event = decode_incident_event(due.payload)
        except IncidentEventError as exc:
            return store.AttemptRecord(due.id, due.event_id, number, "failed", None, None, None, str(exc),
                                       permanent=False)
        async with self._limit:
            attempt, latency = await send(client, channel, event, self._config)
        decision = decide(attempt, number, due.date_added, datetime.now(UTC), self._config.policy,
                          self._rand.random())
        outcome = "refused" if attempt.refused else decision.outcome
        if outcome != "delivered":
            log.info("channel %s event %s attempt %d: %s (%s)", channel.guid, due.event_id, number, outcome,
                     attempt.error)
        return store.AttemptRecord(due.id, due.event_id, number, outcome, decision.next_attempt_at,
                                   attempt.status_code, latency, attempt.error, decision.permanent)
