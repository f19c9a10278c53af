"""What PostgreSQL cannot store, sent by a Kafka-native producer: every such message becomes
a processing error of its project (visible in the API), none a dead letter, and the
check-ins produced after them — another project's included — are stored.
Real Kafka, real PostgreSQL, the faust agent in-process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import msgpack
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cronpipe.admin import create_org, create_project, create_token
from cronpipe.probes import high_watermarks
from schemas.enums import ProcessingErrorType
from schemas.messages import encode_check_in
from schemas.topics import Topics
from tests.integration.checkins_pipeline import CRONTAB, T0, Pipeline

INVALID_CONFIG = int(ProcessingErrorType.MONITOR_INVALID_CONFIG)
INVALID_ENVIRONMENT = int(ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT)
VALIDATION_FAILED = int(ProcessingErrorType.CHECKIN_VALIDATION_FAILED)


@pytest.fixture
def pipeline(kafka_bootstrap: str, database_url: str, make_topics: Callable[..., Topics]) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, make_topics(ingest_partitions=1), database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_org(conn, "other")
        create_project(conn, "other", "web", project_id=2)
    yield p
    p.close()


def end_offset(bootstrap: str, topic: str) -> int:
    return high_watermarks(bootstrap, topic)[0]


def raw_check_in(pipeline: Pipeline, payload: bytes, project_id: int = 1) -> None:
    pipeline.raw(encode_check_in(payload, project_id=project_id, start_time=T0.timestamp()), key=b"1:job")


def check_in_json(**fields: str) -> bytes:
    body = ",".join(f'"{k}":{v}' for k, v in fields.items())
    return f'{{"check_in_id":"{uuid.uuid4().hex}","monitor_slug":"job","status":"ok",{body}}}'.encode()


def attachment_with(filename: str) -> bytes:
    return bytes(msgpack.packb({"message_type": "check_in_attachment", "project_id": 1, "monitor_slug": "job",
                                "check_in_id": uuid.uuid4().hex, "filename": filename, "content_type": "text/plain",
                                "data": b"output", "start_time": T0.timestamp()}, use_bin_type=True))


def test_unstorable_check_ins_and_attachments_become_processing_errors_and_later_check_ins_are_stored(
        pipeline: Pipeline, kafka_bootstrap: str) -> None:
    pipeline.check_in("job", monitor_config=CRONTAB)  # project 1's monitor exists
    raw_check_in(pipeline, check_in_json(environment='"prod\\u0000"'))
    raw_check_in(pipeline, check_in_json(release='"1.0\\u0000"'))
    raw_check_in(pipeline, check_in_json(extra="[" * 300 + "]" * 300))
    raw_check_in(pipeline, check_in_json(monitor_config="[" * 1000 + "]" * 1000))
    margin = "1" * 5000
    raw_check_in(pipeline, check_in_json(monitor_config=f'{{"schedule":"0 * * * *","schedule_type":"crontab",'
                                                        f'"checkin_margin":"{margin}"}}'))
    crontab = ",".join(["0"] * 5000) + " * * * *"
    raw_check_in(pipeline, check_in_json(monitor_config=f'{{"schedule":{{"type":"crontab","value":"{crontab}"}}}}'))
    pipeline.raw(attachment_with("job\x00.log"), key=b"1:job")
    pipeline.check_in("web-job", monitor_config=CRONTAB, project_id=2)

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    errors = pipeline.rows("SELECT project_id, type, reason, checkin FROM processing_errors ORDER BY id")
    assert [(p, t, r) for p, t, r, _ in errors] == [
        (1, INVALID_ENVIRONMENT, "environment: must not contain a NUL character"),
        (1, VALIDATION_FAILED, "release: must not contain a NUL character"),
        (1, VALIDATION_FAILED, "payload: nested deeper than 32 levels"),
        (1, VALIDATION_FAILED, "payload: nested deeper than 32 levels"),
        (1, INVALID_CONFIG, "monitor_config.checkin_margin: longer than 512 characters"),
        (1, INVALID_CONFIG, "monitor_config.schedule.value: longer than 512 characters"),
        (1, VALIDATION_FAILED, "filename: must not contain a NUL character"),
    ]
    assert errors[0][3]["payload"].count("\\u0000") == 1  # what was sent, kept as text
    assert errors[6][3]["filename"] == "job\\x00.log"
    assert end_offset(kafka_bootstrap, pipeline.topics.dlq) == 0
    assert len(pipeline.checkins("job")) == 1
    assert len(pipeline.checkins("web-job")) == 1


def test_the_processing_error_of_an_unstorable_check_in_is_listed_by_the_api(pipeline: Pipeline) -> None:
    raw_check_in(pipeline, check_in_json(environment='"prod\\u0000"'))

    async def scenario() -> None:
        await pipeline.drain()
    pipeline.run(scenario)

    with psycopg.connect(pipeline.database_url, autocommit=True) as conn:
        token = create_token(conn, "acme")
    with TestClient(create_app(pipeline.database_url, pool_size=1)) as client:
        response = client.get("/api/0/organizations/acme/processing-errors/",
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    [error] = response.json()
    assert "environment: must not contain a NUL character" in str(error)
