"""The notifier against real Kafka and PostgreSQL, delivering to local HTTP receivers.

Events are produced to the test's ``monitors-incidents`` topic (the golden examples,
re-addressed to the test organization); the real :class:`notifier.service.Notifier`
runs in-process with a short back-off so retries happen within the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from cronpipe.admin import create_org
from notifier import store
from notifier.service import Notifier, delivery_config
from notifier.testing import send_test
from schemas.examples import load_example
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.alert_receiver import Receiver


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(answer: Callable[[int], int | None] = lambda n: 200) -> Receiver:
        started.append(Receiver(answer=answer).start())
        return started[-1]

    yield make
    for r in started:
        r.stop()


class Rig:
    def __init__(self, bootstrap: str, topics: Topics, database_url: str, **settings: Any) -> None:
        self.topics = topics
        self.database_url = database_url
        defaults: dict[str, Any] = {"notify_allow_private": True, "notify_retry_base": 0.2,
                                    "notify_retry_max": 0.5, "notify_timeout": 3.0, "notify_failing_after": 3}
        self.settings = Settings(kafka_bootstrap=bootstrap, database_url=database_url,
                                 topic_prefix=topics.prefix, **{**defaults, **settings})
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        with psycopg.connect(database_url, autocommit=True) as conn:
            self.org_id = create_org(conn, "acme").id

    def conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True)

    def channel(self, url: str, kind: str = "webhook") -> tuple[store.Channel, str]:
        with self.conn() as conn:
            return store.create_channel(conn, "acme", kind, url, "RK" if kind == "pagerduty" else None)

    def publish(self, name: str = "incident_opened", **changes: Any) -> dict[str, Any]:
        event = load_example(name)
        event.update({"event_id": str(uuid.uuid4()), "organization": {"id": self.org_id, "slug": "acme"}}, **changes)
        self.producer.produce(self.topics.incidents, key=b"42", value=orjson.dumps(event))
        assert self.producer.flush(60) == 0
        return event

    def log(self, channel: store.Channel) -> list[dict[str, Any]]:
        with self.conn() as conn:
            return list(reversed(store.read_log(conn, "acme", str(channel.guid))))

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            notifier = asyncio.create_task(Notifier(self.settings).run(stop))
            try:
                await scenario()
            finally:
                stop.set()
                await notifier
        asyncio.run(main())


@pytest.fixture
def rig(kafka_bootstrap: str, topics: Topics, database_url: str) -> Rig:
    return Rig(kafka_bootstrap, topics, database_url)


async def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_webhook_gets_the_event_once_with_a_signature_that_verifies(rig: Rig, receivers: Any) -> None:
    hook = receivers()
    channel, secret = rig.channel(hook.url)
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        sent.append(rig.publish())
        await until(lambda: len(rig.log(channel)) == 1, "the delivery")

    rig.run(scenario)
    (request,) = hook.received
    assert orjson.loads(request.body) == sent[0]
    assert request.headers["X-Cronpipe-Event-Id"] == sent[0]["event_id"]
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Cronpipe-Signature"] == f"sha256={expected}"
    assert [(a["outcome"], a["statusCode"], a["attempt"]) for a in rig.log(channel)] == [("delivered", 200, 1)]


def test_the_same_event_consumed_twice_is_delivered_once(rig: Rig, receivers: Any) -> None:
    hook = receivers()
    channel, _ = rig.channel(hook.url)

    async def scenario() -> None:
        event = rig.publish()
        rig.publish(event_id=event["event_id"])
        rig.publish()
        await until(lambda: len(rig.log(channel)) == 2, "two deliveries")

    rig.run(scenario)
    assert len(set(hook.event_ids())) == 2 == len(hook.received)


def test_a_receiver_answering_500_for_a_while_then_200_gets_every_event(rig: Rig, receivers: Any) -> None:
    hook = receivers(lambda n: 500 if n <= 6 else 200)
    channel, _ = rig.channel(hook.url)
    sent: list[str] = []

    async def scenario() -> None:
        sent.extend(rig.publish()["event_id"] for _ in range(3))
        await until(lambda: sum(a["outcome"] == "delivered" for a in rig.log(channel)) == 3, "three deliveries")

    rig.run(scenario)
    delivered = [r.headers["X-Cronpipe-Event-Id"] for r in hook.received[6:]]
    assert sorted(set(delivered)) == sorted(sent)
    assert {a["outcome"] for a in rig.log(channel)} == {"retry", "delivered"}


def test_a_hanging_receiver_does_not_delay_a_second_channel(
        kafka_bootstrap: str, topics: Topics, database_url: str, receivers: Any) -> None:
    rig = Rig(kafka_bootstrap, topics, database_url, notify_timeout=30.0)
    hanging, healthy = receivers(lambda n: None), receivers()
    stuck, _ = rig.channel(hanging.url)
    fine, _ = rig.channel(healthy.url)
    seen: list[int] = []

    async def scenario() -> None:
        for _ in range(3):
            rig.publish()
        await until(lambda: len(healthy.received) == 3 and len(hanging.received) >= 1, "the healthy channel")
        await until(lambda: len(rig.log(fine)) == 3, "the healthy channel's log")
        seen.append(len(rig.log(stuck)))  # its attempts are still hanging: nothing logged yet
        hanging.release.set()
        await until(lambda: len(rig.log(stuck)) == 3, "the released channel")

    rig.run(scenario)
    assert seen == [0]


def test_muted_environments_are_recorded_and_send_nothing(rig: Rig, receivers: Any) -> None:
    hook = receivers()
    channel, _ = rig.channel(hook.url)

    async def scenario() -> None:
        muted = rig.publish(is_muted=True)
        rig.publish()
        await until(lambda: len(rig.log(channel)) == 1, "the unmuted delivery")
        with rig.conn() as conn:
            assert conn.execute("SELECT count(*) FROM alert_events WHERE event_id = %s",
                                (muted["event_id"],)).fetchone() == (1,)

    rig.run(scenario)
    assert len(hook.received) == 1


def test_a_private_destination_is_refused_at_delivery_when_not_allowed(
        kafka_bootstrap: str, topics: Topics, database_url: str, receivers: Any) -> None:
    rig = Rig(kafka_bootstrap, topics, database_url, notify_allow_private=False)
    hook = receivers()
    channel, _ = rig.channel(hook.url)  # created while allowed (the store does not check)

    async def scenario() -> None:
        rig.publish()
        await until(lambda: len(rig.log(channel)) == 1, "the refused attempt")

    rig.run(scenario)
    assert hook.received == []
    (attempt,) = rig.log(channel)
    assert attempt["outcome"] == "refused" and "CRONPIPE_NOTIFY_ALLOW_PRIVATE" in attempt["error"]


def test_permanent_failures_mark_the_channel_failing_and_a_test_notification_revives_it(
        rig: Rig, receivers: Any) -> None:
    answers = {"code": 410}
    hook = receivers(lambda n: answers["code"])
    channel, _ = rig.channel(hook.url)

    async def scenario() -> None:
        for _ in range(3):
            rig.publish()
        await until(lambda: len(rig.log(channel)) == 3, "three failures")
        rig.publish()
        await until(lambda: len(rig.log(channel)) == 4, "the skipped delivery")

    rig.run(scenario)
    assert [a["outcome"] for a in rig.log(channel)] == ["failed", "failed", "failed", "skipped"]
    assert len(hook.received) == 3
    with rig.conn() as conn:
        assert store.find_channel(conn, "acme", str(channel.guid)).is_failing
        answers["code"] = 200
        result = send_test(conn, store.find_channel(conn, "acme", str(channel.guid)), delivery_config(rig.settings))
        revived = store.find_channel(conn, "acme", str(channel.guid))
    assert result["delivered"] and hook.received[-1].headers["X-Cronpipe-Test"] == "1"
    assert (revived.is_failing, revived.consecutive_failures) == (False, 0)


def test_slack_and_pagerduty_channels_get_their_formats(rig: Rig, receivers: Any) -> None:
    slack, pager = receivers(), receivers(lambda n: 202)
    rig.channel(slack.url, "slack")
    rig.channel(pager.url, "pagerduty")

    async def scenario() -> None:
        rig.publish()
        rig.publish("incident_resolved")
        await until(lambda: len(slack.received) == 2 and len(pager.received) == 2, "both channels")

    rig.run(scenario)
    texts = [orjson.loads(r.body)["text"] for r in slack.received]
    assert sorted(texts) == ["Incident opened: Nightly backup (production): 2 missed check-ins detected",
                             "Resolved: Nightly backup (production): Resolved by an OK check-in"]
    assert sorted(orjson.loads(r.body)["event_action"] for r in pager.received) == ["resolve", "trigger"]


def test_a_destination_named_by_host_name_is_delivered_to_its_checked_address(rig: Rig, receivers: Any) -> None:
    hook = receivers()
    channel, _ = rig.channel(hook.url.replace("127.0.0.1", "localhost"))

    async def scenario() -> None:
        rig.publish()
        await until(lambda: len(rig.log(channel)) == 1, "the delivery")

    rig.run(scenario)
    assert [a["outcome"] for a in rig.log(channel)] == ["delivered"]
    assert hook.received[0].headers["Host"].startswith("localhost:")
