"""Alert-channel routes against real PostgreSQL (and, for delivery, real Kafka and the
notifier): create, list, get, delete, log, queued test; scopes, foreign organizations,
bad bodies, the private-network rule, and secrets never shown after creation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from api.app import create_app
from cronpipe.admin import create_token
from notifier.service import Notifier
from schemas import channels
from schemas.examples import load_example
from schemas.settings import Settings
from schemas.topics import Topics
from tests.integration.alert_receiver import Receiver
from tests.integration.api_seed import Seeder

pytestmark = pytest.mark.postgres

ORG = "/api/0/organizations/acme"
CHANNELS = f"{ORG}/alert-channels/"


class Api:
    """The app with a write and a read token of acme, and a write token of globex."""

    def __init__(self, client: TestClient, write: str, read: str, foreign: str, acme_id: int) -> None:
        self.client, self.write, self.read, self.foreign, self.acme_id = client, write, read, foreign, acme_id

    def call(self, method: str, path: str, body: Any = None, token: str | None = None, params: Any = None) -> Any:
        return self.client.request(method, path, json=body, params=params,
                                   headers={"Authorization": f"Bearer {token or self.write}"})

    def create(self, url: str, kind: str = "webhook", **extra: Any) -> dict[str, Any]:
        response = self.call("POST", CHANNELS, {"kind": kind, "url": url, **extra})
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("CRONPIPE_NOTIFY_ALLOW_PRIVATE", "1")
    with psycopg.connect(database_url, autocommit=True) as conn:
        s = Seeder(conn)
        acme_id = s.org("acme")
        s.org("globex")
        write, read, foreign = create_token(conn, "acme", "write"), s.token("acme"), create_token(
            conn, "globex", "write")
    with TestClient(create_app(database_url, pool_size=2, purge_in_background=False)) as client:
        yield Api(client, write, read, foreign, acme_id)


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    started: list[Receiver] = []

    def make() -> Receiver:
        started.append(Receiver().start())
        return started[-1]

    yield make
    for r in started:
        r.stop()


def test_create_answers_201_with_the_secret_and_the_list_and_get_never_show_it(api: Api) -> None:
    created = api.create("http://127.0.0.1:9/hook")
    assert set(created) == {"id", "kind", "url", "secret"} and len(created["secret"]) == 64
    listed = api.call("GET", CHANNELS).json()["channels"]
    assert [c["id"] for c in listed] == [created["id"]]
    one = api.call("GET", f"{CHANNELS}{created['id']}/").json()
    assert one["url"] == "http://127.0.0.1:9/hook" and one["isFailing"] is False
    for shown in (api.call("GET", CHANNELS).text, api.call("GET", f"{CHANNELS}{created['id']}/").text):
        assert created["secret"] not in shown and "secret" not in shown


def test_a_failing_channel_is_visible_in_the_list(api: Api, database_url: str) -> None:
    created = api.create("http://127.0.0.1:9/hook")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE alert_channels SET is_failing = true, consecutive_failures = 3 WHERE guid = %(g)s",
                     {"g": created["id"]})
    (listed,) = api.call("GET", CHANNELS).json()["channels"]
    assert (listed["isFailing"], listed["consecutiveFailures"]) == (True, 3)


@pytest.mark.parametrize(("body", "parameter"), [
    ({"kind": "email", "url": "http://127.0.0.1:9/"}, "kind"),
    ({"kind": "webhook"}, "url"),
    ({"kind": "webhook", "url": "ftp://127.0.0.1/"}, "url"),
    ({"kind": "webhook", "url": "http://user:pw@127.0.0.1/"}, "url"),
    ({"kind": "pagerduty", "url": "http://127.0.0.1:9/"}, "routingKey"),
    ({"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": "mine"}, "secret"),
])
def test_create_refuses_a_bad_body_with_400_naming_the_field(api: Api, body: dict[str, Any], parameter: str) -> None:
    response = api.call("POST", CHANNELS, body)
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == parameter
    assert api.call("GET", CHANNELS).json()["channels"] == []


def test_a_private_destination_is_refused_unless_allowed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONPIPE_NOTIFY_ALLOW_PRIVATE", "0")
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest"):
        response = api.call("POST", CHANNELS, {"kind": "webhook", "url": url})
        assert (response.status_code, response.json()["parameter"]) == (400, "url"), url
    monkeypatch.setenv("CRONPIPE_NOTIFY_ALLOW_PRIVATE", "1")
    api.create("http://127.0.0.1:9/hook")


def test_a_pagerduty_channel_takes_its_routing_key(api: Api) -> None:
    created = api.create("http://127.0.0.1:9/enqueue", "pagerduty", routingKey="RK123")
    assert created["kind"] == "pagerduty"
    assert "RK123" not in api.call("GET", CHANNELS).text


def test_a_read_token_gets_403_on_every_channel_route_and_changes_nothing(api: Api) -> None:
    channel = api.create("http://127.0.0.1:9/hook")["id"]
    calls = [("POST", CHANNELS, {"kind": "webhook", "url": "http://127.0.0.1:9/"}), ("GET", CHANNELS, None),
             ("GET", f"{CHANNELS}{channel}/", None), ("DELETE", f"{CHANNELS}{channel}/", None),
             ("GET", f"{CHANNELS}{channel}/log/", None), ("POST", f"{CHANNELS}{channel}/test/", None)]
    for method, path, body in calls:
        assert api.call(method, path, body, token=api.read).status_code == 403, (method, path)
    assert [c["id"] for c in api.call("GET", CHANNELS).json()["channels"]] == [channel]
    assert api.call("GET", f"{CHANNELS}{channel}/log/").json()["attempts"] == []


def test_another_organizations_token_and_unknown_ids_get_404(api: Api) -> None:
    channel = api.create("http://127.0.0.1:9/hook")["id"]
    for method in ("GET", "DELETE"):
        assert api.call(method, f"{CHANNELS}{channel}/", token=api.foreign).status_code == 404
    assert api.call("GET", f"{CHANNELS}{channel}/log/", token=api.foreign).status_code == 404
    assert api.call("POST", f"{CHANNELS}{channel}/test/", token=api.foreign).status_code == 404
    assert api.call("GET", CHANNELS, token=api.foreign).status_code == 404
    globex_channels = "/api/0/organizations/globex/alert-channels/"
    assert api.call("GET", f"{globex_channels}{channel}/", token=api.foreign).status_code == 404
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        assert api.call("GET", f"{CHANNELS}{missing}/").status_code == 404
        assert api.call("DELETE", f"{CHANNELS}{missing}/").status_code == 404
        assert api.call("POST", f"{CHANNELS}{missing}/test/").status_code == 404
    assert api.call("GET", f"{CHANNELS}{channel}/").status_code == 200


def test_delete_answers_204_and_the_channel_is_gone(api: Api) -> None:
    channel = api.create("http://127.0.0.1:9/hook")["id"]
    response = api.call("DELETE", f"{CHANNELS}{channel}/")
    assert (response.status_code, response.content) == (204, b"")
    assert api.call("GET", f"{CHANNELS}{channel}/").status_code == 404
    assert api.call("DELETE", f"{CHANNELS}{channel}/").status_code == 404
    assert api.call("GET", CHANNELS).json()["channels"] == []


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten"])
def test_the_log_refuses_a_bad_limit_with_400(api: Api, limit: str) -> None:
    channel = api.create("http://127.0.0.1:9/hook")["id"]
    response = api.call("GET", f"{CHANNELS}{channel}/log/", params={"limit": limit})
    assert (response.status_code, response.json()["parameter"]) == (400, "limit")


def test_the_log_shows_attempts_newest_first_within_the_limit(api: Api, database_url: str) -> None:
    channel = api.create("http://127.0.0.1:9/hook")["id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = channels.find_channel(conn, "acme", channel)
        for attempt in (1, 2, 3):
            conn.execute("INSERT INTO alert_delivery_log (channel_id, event_id, attempt, outcome, status_code)"
                         " VALUES (%(c)s, %(e)s, %(a)s, 'retry', 500)",
                         {"c": found.id, "e": uuid.uuid4(), "a": attempt})
    attempts = api.call("GET", f"{CHANNELS}{channel}/log/", params={"limit": 2}).json()["attempts"]
    assert [a["attempt"] for a in attempts] == [3, 2]


def test_a_test_notification_is_queued_with_202_for_that_channel_only(api: Api, database_url: str) -> None:
    first = api.create("http://127.0.0.1:9/a")["id"]
    api.create("http://127.0.0.1:9/b")
    response = api.call("POST", f"{CHANNELS}{first}/test/")
    assert response.status_code == 202, response.text
    event_id = response.json()["eventId"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT c.guid::text, d.status FROM alert_deliveries d JOIN alert_channels c"
                            " ON c.id = d.channel_id WHERE d.event_id = %(e)s", {"e": event_id}).fetchall()
    assert rows == [(first, "pending")]


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_channel_created_through_the_api_gets_events_and_tests_from_the_notifier(
        api: Api, receivers: Callable[[], Receiver], kafka_bootstrap: str, topics: Topics,
        database_url: str) -> None:
    hook = receivers()
    created = api.create(hook.url)
    with psycopg.connect(database_url, autocommit=True) as conn:  # a failing channel: only the test is sent
        conn.execute("UPDATE alert_channels SET is_failing = true WHERE guid = %(g)s", {"g": created["id"]})
    queued = api.call("POST", f"{CHANNELS}{created['id']}/test/").json()["eventId"]
    settings = Settings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, topic_prefix=topics.prefix,
                        notify_allow_private=True, notify_retry_base=0.2, notify_retry_max=0.5, notify_timeout=3.0)

    async def main() -> None:
        stop = asyncio.Event()
        notifier = asyncio.create_task(Notifier(settings).run(stop))
        try:
            await _until(lambda: len(hook.received) == 1, "the queued test notification")
            await _until(lambda: not api.call("GET", f"{CHANNELS}{created['id']}/").json()["isFailing"],
                         "the channel revived")
            event = load_example("incident_opened")
            event.update({"event_id": str(uuid.uuid4()), "organization": {"id": api.acme_id, "slug": "acme"}})
            producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 1})
            producer.produce(topics.incidents, key=b"42", value=orjson.dumps(event))
            assert producer.flush(60) == 0
            await _until(lambda: len(hook.received) == 2, "the incident event")
        finally:
            stop.set()
            await notifier

    asyncio.run(main())
    test_request, event_request = hook.received
    assert test_request.headers["X-Cronpipe-Event-Id"] == queued
    expected = hmac.new(created["secret"].encode(), event_request.body, hashlib.sha256).hexdigest()
    assert event_request.headers["X-Cronpipe-Signature"] == f"sha256={expected}"
    log = api.call("GET", f"{CHANNELS}{created['id']}/log/").json()["attempts"]
    assert [(a["outcome"], a["statusCode"]) for a in log] == [("delivered", 200), ("delivered", 200)]
