"""The gateway end to end up to Kafka: real HTTP requests, a real database for keys, and
the messages read back from the real topic."""

from __future__ import annotations

import gzip
import uuid

import orjson

from schemas.messages import CheckInAttachmentMessage, CheckInMessage
from schemas.topics import Topics
from tests.integration.gateway_harness import Gateway, Project, read_topic


def check_in_payloads(kafka_bootstrap: str, topics: Topics, expected: int) -> list[dict[str, object]]:
    found = read_topic(kafka_bootstrap, topics.ingest, expected)
    return [orjson.loads(p.message.payload) for p in found if isinstance(p.message, CheckInMessage)]


def test_a_curl_get_is_published_as_a_sentry_check_in_on_the_monitor_key(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    response = gateway.cron(project, "nightly-backup", params={"status": "in_progress", "environment": "prod"})
    assert response.status_code == 202
    check_in_id = response.json()["id"]

    [published] = read_topic(kafka_bootstrap, topics.ingest, 1)
    assert published.key == b"1:nightly-backup"
    assert isinstance(published.message, CheckInMessage)
    assert published.message.project_id == 1
    assert orjson.loads(published.message.payload) == {
        "status": "in_progress", "environment": "prod", "monitor_slug": "nightly-backup", "check_in_id": check_in_id}


def test_the_id_returned_for_in_progress_pairs_the_following_ok(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    started = gateway.cron(project, "job", params={"status": "in_progress"}).json()["id"]
    finished = gateway.cron(project, "job", params={"status": "ok", "check_in_id": started, "duration": "1.5"})
    assert finished.status_code == 202 and finished.json() == {"id": started}
    payloads = check_in_payloads(kafka_bootstrap, topics, 2)
    assert [(p["status"], p["check_in_id"]) for p in payloads] == [("in_progress", started), ("ok", started)]
    assert payloads[1]["duration"] == 1.5


def test_a_json_post_may_carry_a_monitor_config(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    config = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "checkin_margin": 5, "timezone": "Europe/Vienna"}
    response = gateway.cron(project, "hourly", method="POST", json={"status": "ok", "monitor_config": config})
    assert response.status_code == 202
    [payload] = check_in_payloads(kafka_bootstrap, topics, 1)
    assert payload["monitor_config"] == config and payload["status"] == "ok"


def test_a_posted_job_log_follows_its_check_in_as_an_attachment_on_the_same_key(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    # What `curl --data-binary @job.log "$URL?status=error"` sends.
    log = b"step 1 ok\nstep 2 failed: disk full\n"
    response = gateway.cron(project, "backup", method="POST", params={"status": "error"}, content=log,
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202
    check_in_id = uuid.UUID(response.json()["id"])

    check_in, attachment = read_topic(kafka_bootstrap, topics.ingest, 2)
    assert check_in.key == attachment.key == b"1:backup" and check_in.partition == attachment.partition
    assert isinstance(check_in.message, CheckInMessage)
    assert orjson.loads(check_in.message.payload)["check_in_id"] == check_in_id.hex
    assert isinstance(attachment.message, CheckInAttachmentMessage)
    assert (attachment.message.check_in_id, attachment.message.data, attachment.message.content_type) == (
        check_in_id, log, "text/plain")


def test_a_multipart_file_is_published_as_the_check_ins_attachment(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    check_in_id = uuid.uuid4()
    response = gateway.client.post(f"/api/1/cron/backup/{project.public_key}/checkins/{check_in_id}/attachment/",
                                   files={"file": ("backup.log", b"all good\n", "text/plain")})
    assert response.status_code == 202
    [published] = read_topic(kafka_bootstrap, topics.ingest, 1)
    assert published.key == b"1:backup"
    assert isinstance(published.message, CheckInAttachmentMessage)
    assert (published.message.filename, published.message.data, published.message.check_in_id) == (
        "backup.log", b"all good\n", check_in_id)


def envelope(*items: tuple[dict[str, object], bytes], header: dict[str, object] | None = None) -> bytes:
    lines = [orjson.dumps(header or {})]
    for item_header, payload in items:
        lines += [orjson.dumps(item_header), payload]
    return b"\n".join(lines) + b"\n"


def test_an_envelope_publishes_its_check_ins_and_drops_other_items(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    check_in = {"check_in_id": uuid.uuid4().hex, "monitor_slug": "sync", "status": "ok", "duration": 3.0}
    body = envelope(({"type": "event"}, b'{"message":"boom"}'),
                    ({"type": "check_in", "length": len(orjson.dumps(check_in))}, orjson.dumps(check_in)),
                    header={"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"})
    response = gateway.client.post(f"/api/1/envelope/?sentry_key={project.public_key}", content=gzip.compress(body),
                                   headers={"content-encoding": "gzip"})
    assert response.status_code == 200
    assert response.json() == {"id": "9ec79c33ec9942ab8353589fcb2e04dc"}
    found = read_topic(kafka_bootstrap, topics.ingest, 1, settle_s=1.0)
    assert [orjson.loads(p.message.payload) for p in found if isinstance(p.message, CheckInMessage)] == [check_in]
    assert len(found) == 1


def test_an_envelope_authenticates_with_the_sentry_auth_header(
    gateway: Gateway, project: Project, kafka_bootstrap: str, topics: Topics
) -> None:
    check_in = {"check_in_id": uuid.uuid4().hex, "monitor_slug": "sync", "status": "in_progress"}
    response = gateway.client.post("/api/1/envelope/", content=envelope(({"type": "check_in"}, orjson.dumps(check_in))),
                                   headers={"x-sentry-auth": f"Sentry sentry_key={project.public_key}, "
                                                             "sentry_version=7, sentry_client=custom/1.0"})
    assert response.status_code == 200 and response.json() == {"id": check_in["check_in_id"]}
    [published] = read_topic(kafka_bootstrap, topics.ingest, 1)
    assert isinstance(published.message, CheckInMessage) and published.message.sdk == "custom/1.0"


def test_healthz_and_metrics_report_the_accepted_and_the_rejected(gateway: Gateway, project: Project) -> None:
    assert gateway.cron(project, "job", params={"status": "ok"}).status_code == 202
    assert gateway.cron(project, "job", params={"status": "nope"}).status_code == 400
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    metrics = gateway.client.get("/metrics").text
    assert 'cronpipe_gateway_accepted_total{kind="check_in"} 1.0' in metrics
    assert 'cronpipe_gateway_rejected_total{reason="malformed"} 1.0' in metrics
    assert "cronpipe_gateway_produce_seconds_count 1.0" in metrics
