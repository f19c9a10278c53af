"""Hostile input at the real gateway (uvicorn, real Kafka, real PostgreSQL): what the worker
could not store is a 400 with the specific reason and nothing reaches Kafka; rate limits
count check-ins, not requests."""

from __future__ import annotations

import uuid

import orjson
import psycopg
import pytest

from schemas.messages import CheckInMessage
from schemas.topics import Topics
from tests.integration.gateway_harness import Gateway, Project, read_topic


def assert_topic_empty(kafka_bootstrap: str, topics: Topics) -> None:
    assert read_topic(kafka_bootstrap, topics.ingest, 1, timeout_s=2.0) == []


def envelope(*payloads: bytes) -> bytes:
    lines = [b"{}"]
    for payload in payloads:
        lines += [orjson.dumps({"type": "check_in", "length": len(payload)}), payload]
    return b"\n".join(lines) + b"\n"


def check_in(**fields: object) -> bytes:
    return orjson.dumps({"check_in_id": uuid.uuid4().hex, "monitor_slug": "job", "status": "ok", **fields})


def post_envelope(gateway: Gateway, project: Project, body: bytes) -> tuple[int, str]:
    response = gateway.client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}", content=body)
    return response.status_code, response.json().get("detail", "")


@pytest.mark.parametrize(("query", "detail"), [
    ("status=ok&environment=prod%00", "environment: must not contain a NUL character"),
    ("status=ok&release=1.0%00", "release: must not contain a NUL character"),
    ("status=ok%00", "status: must not contain a NUL character"),
    ("status=ok&check_in_id=%00", "check_in_id: must not contain a NUL character"),
    ("status=ok&release=" + "r" * 251, "release: longer than 250 characters"),
    ("status=ok&duration=nan", "duration: must be 0..2147483.647 seconds, not nan"),
    ("status=ok&duration=inf", "duration: must be 0..2147483.647 seconds, not inf"),
    ("status=ok&duration=-inf", "duration: must be 0..2147483.647 seconds, not -inf"),
    ("status=ok&duration=1e309", "duration: must be 0..2147483.647 seconds, not inf"),
])
def test_a_cron_query_the_worker_could_not_store_is_a_400_with_the_reason(
        gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics, query: str, detail: str) -> None:
    response = gateway.client.get(f"/api/{project.id}/cron/job/{project.public_key}/?{query}")

    assert (response.status_code, response.json()) == (400, {"detail": detail})
    assert_topic_empty(kafka_bootstrap, topics)


def test_a_json_duration_out_of_range_is_a_400_like_the_query_string(gateway: Gateway, project: Project) -> None:
    response = gateway.cron(project, "job", method="POST", content=b'{"status": "ok", "duration": 1e309}',
                            headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"].startswith("body: not JSON")


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"status": "ok", "environment": "prod\\u0000"}', "environment: must not contain a NUL character"),
    (b'{"status": "ok", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "body: nested deeper than 32 levels"),
    (b'{"status": "ok", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", "body: nested deeper than 32 levels"),
])
def test_a_cron_json_body_the_worker_could_not_store_is_a_400(gateway: Gateway, project: Project, body: bytes,
                                                              detail: str) -> None:
    response = gateway.cron(project, "job", method="POST", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (400, {"detail": detail})


@pytest.mark.parametrize(("payload", "detail"), [
    (check_in(environment="prod\x00"), "environment: must not contain a NUL character"),
    (check_in(release="\x00"), "release: must not contain a NUL character"),
    (check_in(contexts={"trace": {"trace_id": "\x00"}}), "contexts.trace.trace_id: must not contain a NUL character"),
    (check_in(monitor_config={"schedule": {"type": "crontab", "value": "0 * * * *"}, "timezone": "UTC\x00"}),
     "monitor_config.timezone: must not contain a NUL character"),
    (check_in()[:-1] + b',"x":' + b"[" * 255 + b"]" * 255 + b"}", "payload: nested deeper than 32 levels"),
    (check_in()[:-1] + b',"monitor_config":' + b"[" * 1024 + b"]" * 1024 + b"}", "payload: nested deeper than 32 levels"),
    (check_in(monitor_config={"schedule": "0 * * * *", "schedule_type": "crontab", "checkin_margin": "1" * 4301}),
     "monitor_config.checkin_margin: longer than 512 characters"),
    (check_in(monitor_config={"schedule": "0 * * * *", "schedule_type": "crontab", "max_runtime": "9" * 5000}),
     "monitor_config.max_runtime: longer than 512 characters"),
    (check_in(monitor_config={"schedule": "0 * * * *", "schedule_type": "crontab",
                              "failure_issue_threshold": "1" * 5000, "recovery_threshold": 1}),
     "monitor_config.failure_issue_threshold: longer than 512 characters"),
    (check_in(monitor_config={"schedule": {"type": "crontab", "value": "*/" + "1" * 5000 + " * * * *"}}),
     "monitor_config.schedule.value: longer than 512 characters"),
    (check_in(monitor_config={"schedule": {"type": "interval", "value": "1" * 5000, "unit": "day"}}),
     "monitor_config.schedule.value: longer than 512 characters"),
])
def test_an_envelope_check_in_the_worker_could_not_store_is_a_400_with_the_reason(
        gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics, payload: bytes, detail: str) -> None:
    assert post_envelope(gateway, project, envelope(check_in(), payload)) == (400, detail)
    assert_topic_empty(kafka_bootstrap, topics)


def test_a_megabyte_crontab_is_refused_with_400_and_its_reason(gateway: Gateway, project: Project,
                                                               kafka_bootstrap: str, topics: Topics) -> None:
    crontab = ",".join(["0"] * 500_000) + " * * * *"
    payload = check_in(monitor_config={"schedule": {"type": "crontab", "value": crontab}})
    assert len(payload) > 1_000_000

    assert post_envelope(gateway, project, envelope(payload)) == (
        400, "monitor_config.schedule.value: longer than 512 characters")
    assert_topic_empty(kafka_bootstrap, topics)


def multipart(filename: str) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: text/plain\r\n\r\noutput\r\n--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_attachment_filename_with_a_nul_is_a_400(gateway: Gateway, project: Project, kafka_bootstrap: str,
                                                   topics: Topics) -> None:
    body, content_type = multipart("job\x00.log")
    response = gateway.client.post(
        f"/api/{project.id}/cron/job/{project.public_key}/checkins/{uuid.uuid4().hex}/attachment/",
        content=body, headers={"content-type": content_type})

    assert (response.status_code, response.json()) == (400, {"detail": "filename: must not contain a NUL character"})
    assert_topic_empty(kafka_bootstrap, topics)


def test_a_public_key_with_a_nul_is_an_unknown_key_not_a_database_error(gateway: Gateway, project: Project) -> None:
    response = gateway.client.get(f"/api/{project.id}/cron/job/{project.public_key}%00/?status=ok")
    assert (response.status_code, response.json()) == (401, {"detail": "unknown public key"})


def test_a_semantically_invalid_monitor_config_is_accepted_for_the_processor_to_judge(
        gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics) -> None:
    payload = check_in(monitor_config={"schedule": {"type": "crontab", "value": "* * * * * *"}, "timezone": "Mars/Olympus"})

    assert post_envelope(gateway, project, envelope(payload))[0] == 200
    [published] = read_topic(kafka_bootstrap, topics.ingest, 1)
    assert isinstance(published.message, CheckInMessage) and published.message.payload == payload


# --------------------------------------------------------------------------- rate limits


def limit_key(project: Project, count: int, window: int) -> None:
    with psycopg.connect(project.database_url, autocommit=True) as conn:
        conn.execute("UPDATE project_keys SET rate_limit_count = %s, rate_limit_window = %s WHERE public_key = %s",
                     (count, window, project.public_key))


def test_an_envelope_takes_one_token_per_check_in_and_is_refused_whole_when_they_do_not_fit(
        gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics) -> None:
    limit_key(project, 3, 3600)

    assert post_envelope(gateway, project, envelope(check_in(), check_in()))[0] == 200
    refused = gateway.client.post(f"/api/{project.id}/envelope/?sentry_key={project.public_key}",
                                  content=envelope(check_in(), check_in()))
    assert post_envelope(gateway, project, envelope(check_in()))[0] == 200  # the refusal took no token
    assert gateway.cron(project, "job", params={"status": "ok"}).status_code == 429

    assert refused.status_code == 429 and refused.json() == {"detail": "rate limit of 3 per 3600s exceeded"}
    assert refused.headers["x-sentry-rate-limits"].endswith(":monitor:key")
    assert len(read_topic(kafka_bootstrap, topics.ingest, 3, settle_s=1.0)) == 3


def test_an_envelope_with_more_check_ins_than_the_limit_allows_is_refused_and_publishes_nothing(
        gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics) -> None:
    limit_key(project, 2, 60)

    status, detail = post_envelope(gateway, project, envelope(*(check_in() for _ in range(8000))))

    assert (status, detail) == (429, ("8000 check-ins in one request exceed the key's rate limit of 2 per 60s; "
                                      "send fewer per envelope"))
    assert_topic_empty(kafka_bootstrap, topics)
    assert post_envelope(gateway, project, envelope(check_in(), check_in()))[0] == 200
