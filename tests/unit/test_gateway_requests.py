"""Pure request handling of the gateway: cron check-ins, multipart files, rate limits, key verdicts."""

from __future__ import annotations

import math
import uuid

import orjson
import pytest

from ingest.gateway.auth import judge
from ingest.gateway.checkins import LATEST, cron_check_in, looks_like_json, validate_check_in
from ingest.gateway.config import ConfigError, parse_rate_limit
from ingest.gateway.errors import GatewayError
from ingest.gateway.multipart import boundary_of, find_file
from ingest.gateway.ratelimit import KeyRateLimiter, RateLimit
from ingest.gateway.store import KeyRecord


def payload(check_in_bytes: bytes) -> dict[str, object]:
    return orjson.loads(check_in_bytes)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ cron check-ins


def test_a_query_string_becomes_a_sentry_check_in_payload() -> None:
    check_in_id = uuid.uuid4()
    built = cron_check_in("Nightly Job", {"status": "ok", "check_in_id": str(check_in_id), "duration": "2.5",
                                          "environment": "staging", "ignored": "x"}, None)
    assert payload(built.payload) == {"status": "ok", "check_in_id": str(check_in_id), "duration": 2.5,
                                      "environment": "staging", "monitor_slug": "Nightly Job"}
    assert (built.monitor_slug, built.check_in_id) == ("nightly-job", check_in_id)


def test_an_in_progress_check_in_without_an_id_gets_a_new_one() -> None:
    first = cron_check_in("job", {"status": "in_progress"}, None)
    second = cron_check_in("job", {"status": "in_progress"}, None)
    assert first.check_in_id != second.check_in_id and first.check_in_id.int != 0


@pytest.mark.parametrize("query", [{"status": "ok"}, {"status": "error"}, {"status": "ok", "check_in_id": "latest"}])
def test_a_final_check_in_without_an_id_pairs_with_the_latest_in_progress_one(query: dict[str, str]) -> None:
    assert cron_check_in("job", query, None).check_in_id == LATEST


def test_a_final_check_in_with_job_output_gets_an_id_of_its_own() -> None:
    assert cron_check_in("job", {"status": "error"}, None, with_output=True).check_in_id != LATEST


def test_job_output_for_the_latest_check_in_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        cron_check_in("job", {"status": "ok", "check_in_id": "latest"}, None, with_output=True)
    assert caught.value.status == 400 and "job output" in caught.value.detail


def test_json_body_fields_win_over_the_query_string() -> None:
    config = {"schedule": {"type": "crontab", "value": "0 * * * *"}, "max_runtime": 5}
    built = cron_check_in("job", {"status": "in_progress"}, {"status": "ok", "monitor_config": config})
    assert payload(built.payload)["status"] == "ok"
    assert payload(built.payload)["monitor_config"] == config


@pytest.mark.parametrize(("query", "body", "reason"), [
    ({}, None, "status: field required"),
    ({"status": "done"}, None, "status: must be in_progress, ok or error, not 'done'"),
    ({"status": "ok", "check_in_id": "nope"}, None, "check_in_id: not a valid UUID: 'nope'"),
    ({"status": "ok", "duration": "fast"}, None, "duration: must be a number, not 'fast'"),
    ({"status": "ok", "duration": "-1"}, None, "duration: must be 0..2147483.647 seconds, not -1.0"),
    ({"status": "ok"}, {"check_in_id": 5}, "check_in_id: must be a UUID string"),
    ({"status": "ok"}, {"monitor_config": {"schedule": {"type": "crontab", "value": "0," * 300 + "0 * * * *"}}},
     "monitor_config.schedule.value: longer than 512 characters"),
    ({"status": "ok", "environment": "prod\x00"}, None, "environment: must not contain a NUL character"),
    ({"status": "ok", "release": "1.0\x00"}, None, "release: must not contain a NUL character"),
    ({"status": "ok", "release": "r" * 251}, None, "release: longer than 250 characters"),
    ({"status": "ok", "duration": "nan"}, None, "duration: must be 0..2147483.647 seconds, not nan"),
    ({"status": "ok", "duration": "inf"}, None, "duration: must be 0..2147483.647 seconds, not inf"),
    ({"status": "ok", "duration": "-inf"}, None, "duration: must be 0..2147483.647 seconds, not -inf"),
    ({"status": "ok", "duration": "1e309"}, None, "duration: must be 0..2147483.647 seconds, not inf"),
])
def test_a_malformed_cron_check_in_is_a_400_with_the_reason(query: dict[str, str], body: dict[str, object] | None,
                                                          reason: str) -> None:
    with pytest.raises(GatewayError) as caught:
        cron_check_in("job", query, body)
    assert caught.value.status == 400
    assert caught.value.detail.startswith(reason)


def test_a_slug_without_letters_or_digits_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        cron_check_in("---", {"status": "ok"}, None)
    assert caught.value.status == 400 and "monitor_slug" in caught.value.detail


def test_an_envelope_check_in_is_validated_and_kept_byte_for_byte() -> None:
    raw = b'{"check_in_id":"83a7f1a1a4d34ac8a56abf2e09bdd1a2","monitor_slug":"job","status":"ok","type":"check_in"}'
    built = validate_check_in(raw)
    assert built.payload == raw
    assert built.check_in_id == uuid.UUID("83a7f1a1a4d34ac8a56abf2e09bdd1a2")


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", b"[]", True),
    ("application/x-www-form-urlencoded", b'{"status": "ok"}', True),
    ("application/x-www-form-urlencoded", b"backup done\n", False),
    ("text/plain", b"{ not json", False),
    ("", b"", False),
])
def test_a_post_body_is_json_fields_or_job_output(content_type: str, body: bytes, expected: bool) -> None:
    assert looks_like_json(content_type, body) is expected


# ------------------------------------------------------------------ multipart


def multipart(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: text/plain\r\n\r\n".encode()
                + data + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


def test_the_file_field_of_a_multipart_body_is_found_among_others() -> None:
    body = multipart("xyz", ("comment", None, b"hi"), ("file", "job.log", b"line 1\r\nline 2\r\n"))
    part = find_file(body, boundary_of('multipart/form-data; boundary="xyz"'))
    assert (part.filename, part.content_type, part.data) == ("job.log", "text/plain", b"line 1\r\nline 2\r\n")


def test_a_multipart_body_without_a_file_field_is_a_400() -> None:
    with pytest.raises(GatewayError) as caught:
        find_file(multipart("xyz", ("other", None, b"x")), b"xyz")
    assert caught.value.status == 400 and "'file'" in caught.value.detail


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", ""])
def test_a_non_multipart_content_type_is_a_400(content_type: str) -> None:
    with pytest.raises(GatewayError) as caught:
        boundary_of(content_type)
    assert caught.value.status == 400


# ------------------------------------------------------------------ rate limits and key verdicts


def test_a_key_may_burst_to_its_limit_then_waits_for_the_refill() -> None:
    limiter = KeyRateLimiter()
    limit = RateLimit(count=3, window=60.0)
    assert [limiter.acquire("k", limit, now=100.0) for _ in range(3)] == [None, None, None]
    assert limiter.acquire("k", limit, now=100.0) == pytest.approx(20.0)
    assert limiter.acquire("other", limit, now=100.0) is None
    assert limiter.acquire("k", limit, now=120.0) is None


def test_a_count_is_taken_all_at_once_or_not_at_all() -> None:
    limiter = KeyRateLimiter()
    limit = RateLimit(count=5, window=60.0)
    assert limiter.acquire("k", limit, now=100.0, count=3) is None
    assert limiter.acquire("k", limit, now=100.0, count=3) == pytest.approx(12.0)  # one more token needed
    assert limiter.acquire("k", limit, now=100.0, count=2) is None  # the refusal took nothing


def test_a_count_above_the_bucket_can_never_be_taken() -> None:
    limiter = KeyRateLimiter()
    assert limiter.acquire("k", RateLimit(count=2, window=60.0), now=100.0, count=3) == math.inf
    assert limiter.acquire("k", RateLimit(count=2, window=60.0), now=100.0, count=2) is None


def test_asking_without_taking_leaves_the_tokens() -> None:
    limiter = KeyRateLimiter()
    limit = RateLimit(count=1, window=60.0)
    assert limiter.acquire("k", limit, now=100.0, take=False) is None
    assert limiter.acquire("k", limit, now=100.0) is None
    assert limiter.acquire("k", limit, now=100.0, take=False) is not None


@pytest.mark.parametrize(("text", "limit"), [("", None), ("50", RateLimit(50, 1.0)), ("600/60", RateLimit(600, 60.0))])
def test_the_default_rate_limit_reads_count_or_count_per_seconds(text: str, limit: RateLimit | None) -> None:
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize("text", ["fast", "0", "10/0", "-1/5"])
def test_an_unreadable_default_rate_limit_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="CRONPIPE_GATEWAY_RATE_LIMIT"):
        parse_rate_limit(text)


@pytest.mark.parametrize(("record", "status"), [
    (KeyRecord(False, 1, True, None, None), 404),
    (KeyRecord(True, None, False, None, None), 401),
    (KeyRecord(True, 2, True, None, None), 403),
    (KeyRecord(True, 1, False, None, None), 403),
])
def test_a_bad_key_gets_the_status_that_says_why(record: KeyRecord, status: int) -> None:
    grant = judge(record, project_id=1, default_limit=None)
    assert grant.error is not None and grant.error.status == status


def test_a_key_with_its_own_limit_overrides_the_default() -> None:
    default = RateLimit(100, 1.0)
    assert judge(KeyRecord(True, 1, True, 5, 60), 1, default).rate_limit == RateLimit(5, 60.0)
    assert judge(KeyRecord(True, 1, True, None, None), 1, default).rate_limit == default
