"""Every refusal of the gateway, each with its status code, reason and nothing in Kafka."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from cronpipe.admin import revoke_key
from schemas.topics import Topics
from tests.integration.gateway_harness import Gateway, Project, gateway_config, make_project, read_topic, run_gateway


def assert_topic_empty(kafka_bootstrap: str, topics: Topics) -> None:
    assert read_topic(kafka_bootstrap, topics.ingest, 1, timeout_s=2.0) == []


def test_a_malformed_query_is_a_400_with_the_reason(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    response = gateway.cron(project, "job", params={"status": "finished"})
    assert response.status_code == 400
    assert response.json() == {"detail": "status: must be in_progress, ok or error, not 'finished'"}
    assert_topic_empty(kafka_bootstrap, topics)


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"status": "ok"', "body: not JSON"),
    (b"[1, 2]", "body: must be a JSON object"),
    (b'{"status": "ok", "monitor_config": {"schedule": {"type": "crontab", "value": "0 * * * *\\u0000"}}}',
     "monitor_config.schedule.value: must not contain a NUL character"),
    (b'{"status": "ok", "x": ' + b"[" * 300 + b"]" * 300 + b"}", "body: nested deeper than 32 levels"),
])
def test_a_malformed_json_body_is_a_400_with_the_reason(gateway: Gateway, project: Project, body: bytes,
                                                       detail: str) -> None:
    response = gateway.cron(project, "job", method="POST", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(("body", "detail"), [
    (b"garbage", "envelope header: not JSON"),
    (b'{}\n{"type":"check_in"}\n{"monitor_slug":"job","status":"ok"}\n', "check_in_id: field required"),
])
def test_a_malformed_envelope_is_a_400_with_the_reason(gateway: Gateway, project: Project, body: bytes,
                                                      detail: str) -> None:
    response = gateway.client.post(f"/api/1/envelope/?sentry_key={project.public_key}", content=body)
    assert response.status_code == 400 and response.json()["detail"] == detail


def test_an_unknown_key_is_a_401(gateway: Gateway, project: Project) -> None:
    response = gateway.cron(project, "job", key=uuid.uuid4().hex, params={"status": "ok"})
    assert response.status_code == 401 and response.json() == {"detail": "unknown public key"}


def test_an_envelope_without_any_key_is_a_401(gateway: Gateway) -> None:
    response = gateway.client.post("/api/1/envelope/", content=b"{}\n")
    assert response.status_code == 401 and "sentry_key" in response.json()["detail"]


def test_a_key_of_another_project_is_a_403(gateway: Gateway, project: Project) -> None:
    other = make_project(project.database_url, slug="frontend", project_id=2)
    response = gateway.cron(project, "job", key=other.public_key, params={"status": "ok"})
    assert response.status_code == 403 and "does not belong to project 1" in response.json()["detail"]


def test_an_unknown_project_is_a_404(gateway: Gateway, project: Project) -> None:
    response = gateway.client.get(f"/api/99/cron/job/{project.public_key}/", params={"status": "ok"})
    assert response.status_code == 404 and response.json() == {"detail": "unknown project 99"}


def test_a_revoked_key_stops_working_within_the_cache_ttl(gateway: Gateway, project: Project) -> None:
    assert gateway.cron(project, "job", params={"status": "ok"}).status_code == 202
    with psycopg.connect(project.database_url, autocommit=True) as conn:
        revoke_key(conn, project.public_key)
    deadline = time.monotonic() + 30  # the TTL is 0.5 s; the margin is for a loaded machine
    statuses = []
    while time.monotonic() < deadline and 403 not in statuses:
        statuses.append(gateway.cron(project, "job", params={"status": "ok"}).status_code)
        time.sleep(0.1)
    assert statuses[-1] == 403
    assert set(statuses) <= {202, 403}
    assert gateway.cron(project, "job", params={"status": "ok"}).json() == {"detail": "public key has been revoked"}


def test_a_body_over_100_kib_is_a_413(gateway: Gateway, project: Project, kafka_bootstrap: str,
                                      topics: Topics) -> None:
    response = gateway.cron(project, "job", method="POST", params={"status": "ok"}, content=b"x" * (100 * 1024 + 1))
    assert response.status_code == 413
    assert_topic_empty(kafka_bootstrap, topics)


def test_a_multipart_file_over_100_kib_is_a_413(gateway: Gateway, project: Project) -> None:
    response = gateway.client.post(f"/api/1/cron/job/{project.public_key}/checkins/{uuid.uuid4()}/attachment/",
                                   files={"file": ("big.log", b"x" * (100 * 1024 + 1), "text/plain")})
    assert response.status_code == 413 and response.json() == {"detail": "file larger than 102400 bytes"}


def test_an_attachment_without_a_file_field_is_a_400(gateway: Gateway, project: Project) -> None:
    response = gateway.client.post(f"/api/1/cron/job/{project.public_key}/checkins/{uuid.uuid4()}/attachment/",
                                   files={"other": ("a.log", b"x", "text/plain")})
    assert response.status_code == 400 and response.json() == {"detail": "multipart body has no 'file' field"}


def test_an_envelope_over_1_mib_is_a_413(gateway: Gateway, project: Project) -> None:
    response = gateway.client.post(f"/api/1/envelope/?sentry_key={project.public_key}", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(gateway: Gateway, project: Project) -> None:
    with psycopg.connect(project.database_url, autocommit=True) as conn:
        conn.execute("UPDATE project_keys SET rate_limit_count = 2, rate_limit_window = 3600 WHERE public_key = %s",
                     (project.public_key,))
    statuses = [gateway.cron(project, "job", params={"status": "ok"}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert int(statuses[2].headers["retry-after"]) > 0
    assert statuses[2].headers["x-sentry-rate-limits"].endswith(":monitor:key")


def test_an_unknown_path_is_a_404_and_a_wrong_method_a_405(gateway: Gateway, project: Project) -> None:
    assert gateway.client.get("/api/1/nothing/").status_code == 404
    response = gateway.client.get("/api/1/envelope/")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_an_unreachable_kafka_is_a_503_never_a_202(project: Project) -> None:
    config = gateway_config("127.0.0.1:1", "ingest-monitors", project.database_url, delivery_timeout=1.0,
                            producer_config={"message.timeout.ms": 1000})
    with run_gateway(config) as gateway:
        response = gateway.cron(project, "job", params={"status": "ok"})
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert gateway.client.get("/metrics").text.count('cronpipe_gateway_accepted_total{kind="check_in"} 0.0') == 1


def test_a_full_producer_queue_is_a_503(project: Project) -> None:
    # Nothing drains the queue (no broker) and it holds one message: the others cannot queue.
    config = gateway_config("127.0.0.1:1", "ingest-monitors", project.database_url, delivery_timeout=3.0,
                            producer_config={"message.timeout.ms": 3000, "queue.buffering.max.messages": 1})
    with run_gateway(config) as gateway, ThreadPoolExecutor(4) as pool:
        def send(_: int) -> httpx.Response:
            with httpx.Client(base_url=gateway.url, timeout=30) as client:
                return client.get(f"/api/1/cron/job/{project.public_key}/", params={"status": "ok"})

        responses = list(pool.map(send, range(4)))
    assert {r.status_code for r in responses} == {503}
    assert any(r.json()["detail"] == "Kafka is not keeping up; retry later" for r in responses)
