"""`cronpipe notifier`: the event consumer thread plus one delivery task per channel.

The main loop starts a :class:`~notifier.delivery.ChannelSender` for each channel with
due deliveries that has none running (and kicks a running one). The consumer's commits
name the channels they gave deliveries, which are started at once, without a query;
every ``POLL_S`` the loop also asks the database which channels have due deliveries
(retries, expired leases, tests queued through the API). SIGTERM/SIGINT stop it: in-flight
attempts finish, unfinished ones stay pending (leased) and are retried after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterable
from typing import Any

from psycopg_pool import ConnectionPool

from notifier import store
from notifier.consumer import EventConsumer
from notifier.delivery import ChannelSender, DeliveryConfig
from notifier.policy import RetryPolicy
from schemas.settings import Settings
from schemas.topics import Topics, ensure_topics

__all__ = ["Notifier", "delivery_config", "run_notifier"]

log = logging.getLogger("cronpipe.notifier")
POLL_S = 0.25


def delivery_config(settings: Settings) -> DeliveryConfig:
    link = settings.notify_link_base or f"http://{settings.bind}:{settings.api_port}"
    return DeliveryConfig(
        timeout_s=settings.notify_timeout, allow_private=settings.notify_allow_private,
        policy=RetryPolicy(settings.notify_retry_base, settings.notify_retry_max, settings.notify_retry_for),
        failing_after=settings.notify_failing_after, concurrency=settings.notify_concurrency, link_base=link)


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topics = Topics(prefix=settings.topic_prefix)
        self._config = delivery_config(settings)
        # Checked on checkout (a restart's broken connections are replaced) and reconnect
        # attempts given up after a few seconds: psycopg_pool's own back-off doubles up to
        # 5 minutes, so recovery after a long outage would otherwise grow with the outage.
        self._pool = ConnectionPool(settings.effective_database_url(), min_size=1, max_size=8,
                                    kwargs={"autocommit": True, "application_name": "cronpipe-notifier",
                                            "connect_timeout": 3},
                                    check=ConnectionPool.check_connection, reconnect_timeout=4.0, open=True)
        self._senders: dict[int, tuple[ChannelSender, asyncio.Task[None]]] = {}
        #: What stopped the consumer, if anything did (a permanent failure): exit 1.
        self.fatal: BaseException | None = None
        #: Channels the consumer gave deliveries since the loop last looked.
        self._fresh: set[int] = set()

    def _connect(self) -> Any:
        return self._pool.connection()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        consumer_stop = threading.Event()

        def fresh(channels: set[int]) -> None:  # on the loop
            self._fresh |= channels
            wake.set()

        def woken(channels: set[int]) -> None:  # in the consumer's thread
            if channels:
                loop.call_soon_threadsafe(fresh, channels)

        consumer = EventConsumer(self._settings.kafka_bootstrap, self._topics.incidents,
                                 f"{self._settings.topic_prefix}cronpipe-notifier", self._connect, woken)
        def consume() -> None:  # the consumer's thread
            try:
                consumer.run(consumer_stop)
            except Exception as exc:  # permanent (schemas.retry): stop the notifier loudly
                log.critical("notifier consumer stopped: %s", exc, exc_info=exc)
                self.fatal = exc
                loop.call_soon_threadsafe(stop.set)

        thread = threading.Thread(target=consume, name="notifier-consumer", daemon=True)
        thread.start()
        try:
            polled = 0.0
            while not stop.is_set():
                # Cleared before the senders are looked at: a commit during the look wakes
                # the next round at once instead of waiting out the poll.
                wake.clear()
                channels, self._fresh = self._fresh, set()
                self._drain(channels)
                if loop.time() - polled >= POLL_S:
                    polled = loop.time()
                    self._drain(await self._due_channels())
                waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, timeout=max(0.0, polled + POLL_S - loop.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
        finally:
            consumer_stop.set()
            await asyncio.to_thread(thread.join, 15)
            running = [t for _, t in self._senders.values() if not t.done()]
            if running:
                await asyncio.wait(running, timeout=self._config.timeout_s + 1)
            self._pool.close()

    async def _due_channels(self) -> list[int]:
        def due() -> list[int]:
            with self._connect() as conn:
                return store.due_channels(conn)
        try:
            return await asyncio.to_thread(due)
        except Exception as exc:  # database down: try again on the next poll
            log.warning("cannot read due deliveries (%s)", exc)
            return []

    def _drain(self, channels: Iterable[int]) -> None:
        """Start a sender for each channel, or kick the one running."""
        for channel_id in channels:
            sender, task = self._senders.get(channel_id, (None, None))
            if sender is not None and task is not None and not task.done():
                sender.kick()  # running: it looks again before it returns
                continue
            if task is not None and not task.cancelled() and task.exception() is not None:
                log.error("channel %d sender stopped: %s", channel_id, task.exception())
            sender = ChannelSender(channel_id, self._connect, self._config)
            self._senders[channel_id] = sender, asyncio.create_task(sender.run(), name=f"channel-{channel_id}")


def run_notifier(settings: Settings) -> int:
    """Ensure the topics, then run until SIGTERM/SIGINT (exit 0) or a permanent failure of
    the consumer (exit 1); the exit code."""
    ensure_topics(settings.kafka_bootstrap, Topics(prefix=settings.topic_prefix).specs())

    async def main() -> Notifier:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("notifier running (private destinations %s)",
                 "allowed" if settings.notify_allow_private else "refused")
        notifier = Notifier(settings)
        await notifier.run(stop)
        return notifier

    return 1 if asyncio.run(main()).fatal is not None else 0
