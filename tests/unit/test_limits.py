"""Hostile-input bounds (schemas.limits) as the check-in payload, the attachment message,
the monitor config and the crontab parser apply them: refused with a stable reason,
never a RecursionError or a ValueError from deep inside."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from typing import Any

import msgpack
import orjson
import pytest

from schemas import crontab
from schemas.checkin_payload import PayloadError, error_excerpt, parse_check_in_payload
from schemas.enums import ProcessingErrorType
from schemas.limits import (
    MAX_CRONTAB_LENGTH,
    MAX_JSON_DEPTH,
    LimitError,
    check_document,
)
from schemas.messages import CheckInAttachmentMessage, MessageDecodeError, MessageRejected, decode_ingest_message
from schemas.monitor_config import ConfigError, parse_monitor_config
from schemas.schedule import ScheduleError, parse_crontab

HOURLY = {"schedule": {"type": "crontab", "value": "0 * * * *"}}


def payload(**fields: Any) -> bytes:
    return orjson.dumps({"check_in_id": uuid.uuid4().hex, "monitor_slug": "job", "status": "ok", **fields})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def refusal(raw: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_check_in_payload(raw)
    return caught.value


# --------------------------------------------------------------------------- NUL


@pytest.mark.parametrize(("fields", "kind", "reason"), [
    ({"environment": "prod\x00"}, ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT,
     "environment: must not contain a NUL character"),
    ({"release": "1.0\x00"}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED, "release: must not contain a NUL character"),
    ({"monitor_slug": "job\x00"}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
     "monitor_slug: must not contain a NUL character"),
    ({"check_in_id": "\x00"}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED, "check_in_id: must not contain a NUL character"),
    ({"contexts": {"trace": {"trace_id": "\x00"}}}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
     "contexts.trace.trace_id: must not contain a NUL character"),
    ({"monitor_config": {**HOURLY, "timezone": "UTC\x00"}}, ProcessingErrorType.MONITOR_INVALID_CONFIG,
     "monitor_config.timezone: must not contain a NUL character"),
    ({"ignored": ["x", "\x00"]}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
     "ignored.1: must not contain a NUL character"),
    ({"ignored\x00": 1}, ProcessingErrorType.CHECKIN_VALIDATION_FAILED, "payload: a key must not contain a NUL character"),
])
def test_a_nul_anywhere_in_a_payload_is_refused_with_its_path(fields: dict[str, Any], kind: ProcessingErrorType,
                                                              reason: str) -> None:
    error = refusal(payload(**fields))

    assert (error.kind, error.reason) == (kind, reason)


def test_reasons_never_carry_a_nul_even_when_they_quote_the_input() -> None:
    assert PayloadError(ProcessingErrorType.CHECKIN_VALIDATION_FAILED, "status: not 'a\x00'").reason == "status: not 'a\\x00'"
    assert ConfigError("timezone: unknown timezone 'a\x00'").reason == "timezone: unknown timezone 'a\\x00'"


# --------------------------------------------------------------------------- depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 255, 256, 1000, 1024])
def test_a_deeply_nested_payload_is_refused_before_anything_recurses(depth: int) -> None:
    for where in (b'"ignored"', b'"monitor_config"', b'"environment"'):
        raw = payload()[:-1] + b"," + where + b":" + nested(depth) + b"}"

        error = refusal(raw)

        assert error.reason == f"payload: nested deeper than {MAX_JSON_DEPTH} levels"


def test_nesting_up_to_the_limit_is_not_a_depth_error() -> None:
    check_document(orjson.loads(nested(MAX_JSON_DEPTH)))
    with pytest.raises(LimitError):
        check_document(orjson.loads(nested(MAX_JSON_DEPTH + 1)))


def test_deep_nesting_is_checked_without_the_python_stack() -> None:
    deep: list[Any] = []
    for _ in range(sys.getrecursionlimit() * 5):
        deep = [deep]

    with pytest.raises(LimitError, match="nested deeper"):
        check_document({"a": deep})


# --------------------------------------------------------------------------- sizes


def test_a_release_longer_than_sentrys_column_is_refused() -> None:
    assert parse_check_in_payload(payload(release="r" * 250)).release == "r" * 250
    assert refusal(payload(release="r" * 251)).reason == "release: longer than 250 characters"


@pytest.mark.parametrize(("config", "reason"), [
    ({"schedule": {"type": "crontab", "value": "0," * 300 + "0 * * * *"}},
     "monitor_config.schedule.value: longer than 512 characters"),
    ({**HOURLY, "checkin_margin": "1" * 5000}, "monitor_config.checkin_margin: longer than 512 characters"),
    ({**HOURLY, "max_runtime": "9" * 4301}, "monitor_config.max_runtime: longer than 512 characters"),
    ({**HOURLY, "failure_issue_threshold": "1" * 4301}, "monitor_config.failure_issue_threshold: longer than 512 characters"),
    ({"schedule": ["1" * 4301, "day"], "schedule_type": "interval"}, "monitor_config.schedule.0: longer than 512 characters"),
])
def test_an_oversized_string_in_monitor_config_is_refused_as_invalid_config(config: dict[str, Any], reason: str) -> None:
    error = refusal(payload(monitor_config=config))

    assert (error.kind, error.reason) == (ProcessingErrorType.MONITOR_INVALID_CONFIG, reason)


@pytest.mark.parametrize(("config", "reason"), [
    ({**HOURLY, "checkin_margin": "1" * 5000}, "checkin_margin: must be an integer, not '1111111111111111111111111111111111111"),
    ({**HOURLY, "recovery_threshold": " " * 10 + "1" * 4400}, "recovery_threshold: must be an integer"),
    ({"schedule": {"type": "crontab", "value": "0/" + "1" * 5000 + " * * * *"}},
     "schedule: crontab longer than 512 characters"),
    ({"schedule": {"type": "interval", "value": "1" * 5000, "unit": "day"}},
     "schedule: interval value must be an integer, not '111"),
])
def test_integer_text_beyond_pythons_digit_limit_is_a_config_error_not_a_crash(config: dict[str, Any],
                                                                                reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_monitor_config(config)
    assert caught.value.reason.startswith(reason)


# --------------------------------------------------------------------------- crontab


def test_a_megabyte_crontab_is_refused_by_its_length_alone() -> None:
    huge = ",".join(["0"] * 500_000) + " * * * *"

    with pytest.raises(ScheduleError, match=f"^crontab longer than {MAX_CRONTAB_LENGTH} characters$"):
        parse_crontab(huge)


def test_a_crontab_listing_every_value_of_every_field_fits_the_bound() -> None:
    every = " ".join(",".join(str(v) for v in range(low, high + 1))
                     for low, high in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6)))

    assert len(every) <= MAX_CRONTAB_LENGTH
    assert parse_crontab(every).expression == every


def _deep_size(value: object, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, tuple | list | set | frozenset):
        size += sum(_deep_size(v, seen) for v in value)
    elif dataclasses.is_dataclass(value):
        size += sum(_deep_size(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return size


def test_the_largest_compiled_crontab_cache_entry_is_within_the_documented_bound() -> None:
    # Every value of every field, padded with spaces to the length limit: the most a key and
    # its value can keep. 4,096 entries of ≤ 12 KiB is the 48 MiB the cache may hold.
    every = " ".join(",".join(str(v) for v in range(low, high + 1))
                     for low, high in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7)))
    key = every.ljust(MAX_CRONTAB_LENGTH)
    compiled = crontab.compile_crontab(key)

    assert sys.getsizeof(key) + _deep_size(compiled) <= 12 * 1024
    assert crontab.compile_crontab.cache_info().maxsize == crontab.COMPILE_CACHE_ENTRIES == 4096


# --------------------------------------------------------------------------- attachments


def attachment_map(**overrides: Any) -> dict[str, Any]:
    return {"message_type": "check_in_attachment", "project_id": 1, "monitor_slug": "job",
            "check_in_id": uuid.uuid4().hex, "filename": "out.log", "content_type": "text/plain",
            "data": b"output", "start_time": 1.0, **overrides}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"filename": "out\x00.log"}, "filename: must not contain a NUL character"),
    ({"content_type": "text/plain\x00"}, "content_type: must not contain a NUL character"),
    ({"monitor_slug": "job\x00"}, "monitor_slug: must not contain a NUL character"),
    ({"filename": "f" * 256}, "filename: longer than 255 characters"),
    ({"monitor_slug": "j" * 51}, "monitor_slug: longer than 50 characters"),
    ({"data": b"x" * (100 * 1024 + 1)}, "data: larger than 102400 bytes (102401)"),
])
def test_an_attachment_with_unstorable_content_is_rejected_for_its_project_not_dead_lettered(
        overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(MessageRejected) as caught:
        decode_ingest_message(msgpack.packb(attachment_map(**overrides), use_bin_type=True))

    assert (caught.value.project_id, caught.value.kind, caught.value.reason) == (
        1, ProcessingErrorType.CHECKIN_VALIDATION_FAILED, reason)
    assert "\x00" not in orjson.dumps(caught.value.details).decode().replace("\\\\x00", "")


@pytest.mark.parametrize("overrides", [{"filename": 5}, {"project_id": "1", "filename": "a\x00"}, {"extra": 1}])
def test_an_attachment_of_the_wrong_shape_stays_a_dead_letter(overrides: dict[str, Any]) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_ingest_message(msgpack.packb(attachment_map(**overrides), use_bin_type=True))

    assert not isinstance(caught.value, MessageRejected)


def test_a_valid_attachment_still_decodes() -> None:
    decoded = decode_ingest_message(msgpack.packb(attachment_map(), use_bin_type=True))
    assert isinstance(decoded, CheckInAttachmentMessage) and decoded.filename == "out.log"


# --------------------------------------------------------------------------- error payloads


@pytest.mark.parametrize("raw", [
    payload(environment="a\x00"),
    payload()[:-1] + b',"x":' + nested(300) + b"}",
    b"\x00 not json",
    payload(ignored="x" * 20_000),
])
def test_the_payload_kept_with_a_processing_error_is_always_storable_json(raw: bytes) -> None:
    kept = error_excerpt(raw)

    assert len(orjson.dumps(kept)) < 20_000
    check_document(kept)  # no NUL, not deep: PostgreSQL's jsonb takes it


def test_a_storable_payload_is_kept_as_it_was_sent() -> None:
    raw = payload(environment="prod", release="1.0")
    assert error_excerpt(raw) == orjson.loads(raw)
