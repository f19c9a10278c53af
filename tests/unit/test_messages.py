"""The ingest-monitors v1 wire contract: messages, payloads, golden examples."""

from __future__ import annotations

import uuid
from importlib.resources import files
from typing import Any

import jsonschema
import msgpack
import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.checkin_payload import PayloadError, parse_check_in_payload
from schemas.enums import CheckInStatus, ProcessingErrorType
from schemas.examples import example_names, load_example
from schemas.messages import (
    MAX_ATTACHMENT_BYTES,
    CheckInAttachmentMessage,
    CheckInMessage,
    ClockPulse,
    IngestMessage,
    MessageDecodeError,
    decode_ingest_message,
    encode_attachment,
    encode_check_in,
    encode_clock_pulse,
    encode_ingest_message,
)
from schemas.wire_fields import slugify_monitor_slug

INGEST_EXAMPLES = [
    "check_in",
    "check_in_in_progress",
    "check_in_attachment",
    "clock_pulse",
    "clock_pulse_with_partitions",
]
GUID_HEX = "a460c25ff2554577b920fcfacae4e5eb"
GUID_HYPHENATED = "a460c25f-f255-4577-b920-fcfacae4e5eb"
ZERO_HEX = "0" * 32


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def check_in_map(**overrides: Any) -> dict[str, Any]:
    """A valid check_in message map, as Relay would produce it."""
    message: dict[str, Any] = {
        "message_type": "check_in",
        "payload": orjson.dumps(payload_dict()),
        "start_time": 1714000000.5,
        "project_id": 1,
        "retention_days": 90,
        "sdk": "sentry.python/2.75.0",
    }
    message.update(overrides)
    return message


def payload_dict(**overrides: Any) -> dict[str, Any]:
    """A valid check-in payload; ``None`` overrides remove the key."""
    payload: dict[str, Any] = {"check_in_id": GUID_HEX, "monitor_slug": "my-job", "status": "ok"}
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def parse(**overrides: Any) -> Any:
    return parse_check_in_payload(orjson.dumps(payload_dict(**overrides)))


@pytest.fixture(scope="module")
def ingest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads((files("schemas") / "ingest-monitors.v1.schema.json").read_bytes())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


# --------------------------------------------------------------------------- golden examples


def test_every_shipped_example_is_covered_by_a_test() -> None:
    clock_examples = {"clock_tick", "mark_missing", "mark_timeout"}
    incident_examples = {"incident_opened", "incident_failure", "incident_resolved"}  # test_incident_events.py
    assert set(example_names()) == set(INGEST_EXAMPLES) | clock_examples | incident_examples


@pytest.mark.parametrize("name", INGEST_EXAMPLES)
def test_golden_example_round_trips_through_encode_and_decode(name: str) -> None:
    decoded = decode_ingest_message(pack(load_example(name)))

    assert decode_ingest_message(encode_ingest_message(decoded)) == decoded


@pytest.mark.parametrize("name", INGEST_EXAMPLES)
def test_golden_example_matches_the_json_schema(name: str, ingest_schema: dict[str, Any]) -> None:
    jsonschema.validate(load_example(name), ingest_schema)


@pytest.mark.parametrize("name", INGEST_EXAMPLES)
def test_encoded_messages_match_the_json_schema(name: str, ingest_schema: dict[str, Any]) -> None:
    encoded = encode_ingest_message(decode_ingest_message(pack(load_example(name))))

    jsonschema.validate(msgpack.unpackb(encoded, raw=False), ingest_schema)


@pytest.mark.parametrize(
    "message",
    [
        {"message_type": "clock_pulse", "extra": 1},
        {"message_type": "check_in", "payload": b"{}", "start_time": 1.0, "project_id": 1},
        {"message_type": "nope"},
    ],
    ids=["pulse-with-extra-key", "check-in-without-retention", "unknown-type"],
)
def test_json_schema_rejects_what_the_decoder_rejects(message: dict[str, Any], ingest_schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(message, ingest_schema)
    with pytest.raises(MessageDecodeError):
        decode_ingest_message(pack(message))


def test_sentrys_published_check_in_example_decodes_and_parses() -> None:
    message = decode_ingest_message(pack(load_example("check_in")))

    assert isinstance(message, CheckInMessage)
    assert (message.project_id, message.retention_days, message.start_time) == (1, 90, 1713973672.0)
    assert message.sdk == "sentry.javascript.node/7.44.1"
    assert message.payload.endswith(b"}\n")
    payload = parse_check_in_payload(message.payload)
    assert payload.check_in_id == uuid.UUID("19897db925604bdb888503948a180a5e")
    assert (payload.monitor_slug, payload.status, payload.duration) == ("my-example-monitor", CheckInStatus.OK, 100.0)
    # Sentry's example puts trace_id directly under contexts; Sentry only reads
    # contexts.trace.trace_id, so there is no trace here.
    assert payload.trace_id is None


def test_in_progress_example_carries_its_monitor_config_raw() -> None:
    message = decode_ingest_message(pack(load_example("check_in_in_progress")))

    assert isinstance(message, CheckInMessage)
    payload = parse_check_in_payload(message.payload)
    assert payload.status is CheckInStatus.IN_PROGRESS
    assert payload.environment == "staging"
    assert payload.release == "backup@2.3.0"
    assert payload.trace_id == uuid.UUID("8f431b7aa08441bbbd5a0100fd91f9fe")
    assert payload.monitor_config is not None
    assert payload.monitor_config["schedule"] == {"type": "crontab", "value": "30 2 * * *"}


def test_attachment_example_decodes_to_bytes_and_a_uuid() -> None:
    message = decode_ingest_message(pack(load_example("check_in_attachment")))

    assert isinstance(message, CheckInAttachmentMessage)
    assert message.check_in_id == uuid.UUID(GUID_HEX)
    assert message.data.startswith(b"2024-04-26T02:30:00Z backup started\n")


def test_load_example_names_the_known_examples_when_the_name_is_unknown() -> None:
    with pytest.raises(FileNotFoundError, match="check_in"):
        load_example("no_such_example")


# --------------------------------------------------------------------------- outer message


def test_payload_sent_as_bin_and_as_str_with_trailing_newline_decode_alike() -> None:
    body = orjson.dumps(payload_dict())
    as_bin = decode_ingest_message(pack(check_in_map(payload=body)))
    as_str = decode_ingest_message(pack(check_in_map(payload=body.decode() + "\n")))

    assert isinstance(as_bin, CheckInMessage) and isinstance(as_str, CheckInMessage)
    assert as_str.payload == body + b"\n"
    assert parse_check_in_payload(as_bin.payload) == parse_check_in_payload(as_str.payload)


def test_encode_check_in_writes_the_payload_as_msgpack_bin() -> None:
    raw = encode_check_in(payload_dict(), project_id=7, start_time=1714000000.25, sdk=None)

    fields = msgpack.unpackb(raw, raw=False)
    assert isinstance(fields["payload"], bytes)
    assert fields == {
        "message_type": "check_in",
        "payload": orjson.dumps(payload_dict()),
        "start_time": 1714000000.25,
        "project_id": 7,
        "retention_days": 90,
        "sdk": None,
    }


def test_encode_clock_pulse_is_a_one_key_map() -> None:
    assert msgpack.unpackb(encode_clock_pulse(), raw=False) == {"message_type": "clock_pulse"}


def test_clock_pulse_keeps_sentrys_optional_partition_ids() -> None:
    pulse = decode_ingest_message(encode_clock_pulse(partition_ids=(0, 3)))

    assert pulse == ClockPulse(partition_ids=(0, 3))


def test_check_in_message_ignores_unknown_top_level_keys() -> None:
    message = decode_ingest_message(pack(check_in_map(relay_extra="ignored")))

    assert isinstance(message, CheckInMessage)


def test_check_in_message_without_sdk_decodes_with_sdk_none() -> None:
    fields = check_in_map()
    del fields["sdk"]

    message = decode_ingest_message(pack(fields))

    assert isinstance(message, CheckInMessage) and message.sdk is None


def test_integer_start_time_is_accepted_as_a_number() -> None:
    message = decode_ingest_message(pack(check_in_map(start_time=1714000000)))

    assert isinstance(message, CheckInMessage) and message.start_time == 1714000000.0


def test_ingest_message_union_dispatches_on_message_type() -> None:
    adapter: TypeAdapter[IngestMessage] = TypeAdapter(IngestMessage)

    assert isinstance(adapter.validate_python({"message_type": "clock_pulse"}), ClockPulse)
    assert isinstance(adapter.validate_python(check_in_map()), CheckInMessage)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not msgpack: FormatError"),
        (pack({"message_type": "clock_pulse"})[:-3], "not msgpack: ValueError: Unpack failed: incomplete input"),
        (pack({"message_type": "clock_pulse"}) + b"x", "not msgpack: ExtraData: unpack(b) received extra data."),
        (pack([1, 2]), "not a map"),
        (pack("check_in"), "not a map"),
        (pack({"payload": b"{}"}), "message_type: field required"),
        (pack({"message_type": "x"}), "unknown message_type 'x'"),
        (pack({"message_type": 3}), "unknown message_type 3"),
        (pack({k: v for k, v in check_in_map().items() if k != "payload"}), "payload: field required"),
        (pack(check_in_map(payload=5)), "payload: must be bytes"),
        (pack(check_in_map(start_time="now")), "start_time: must be a number"),
        (pack(check_in_map(start_time=float("inf"))), "start_time: must be a finite number"),
        (pack(check_in_map(project_id="1")), "project_id: must be an integer"),
        (pack(check_in_map(project_id=True)), "project_id: must be an integer"),
        (pack(check_in_map(project_id=-1)), "project_id: must be >= 0"),
        (pack(check_in_map(retention_days=70000)), "retention_days: must be <= 65535"),
        (pack(check_in_map(sdk=5)), "sdk: must be a string"),
        (pack({"message_type": "clock_pulse", "ts": 60}), "ts: unexpected field"),
        (pack({"message_type": "clock_pulse", "partition_ids": [-1]}), "partition_ids.0: must be >= 0"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_decode_rejects_a_bad_message_with_a_specific_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_ingest_message(raw)

    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_decode_reports_every_missing_field_at_once() -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_ingest_message(pack({"message_type": "check_in"}))

    assert caught.value.reason == (
        "payload: field required; start_time: field required; "
        "project_id: field required; retention_days: field required"
    )


# --------------------------------------------------------------------------- attachment


def attachment_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "project_id": 1,
        "monitor_slug": "my-job",
        "check_in_id": GUID_HEX,
        "filename": "out.log",
        "content_type": "text/plain",
        "data": b"done\n",
        "start_time": 1714000000.0,
    }
    fields.update(overrides)
    return fields


def test_encode_attachment_writes_data_as_bin_and_the_id_as_hex() -> None:
    raw = encode_attachment(**attachment_fields(check_in_id=uuid.UUID(GUID_HYPHENATED)))

    fields = msgpack.unpackb(raw, raw=False)
    assert fields == {"message_type": "check_in_attachment", **attachment_fields()}


def test_attachment_of_exactly_100_kib_is_accepted() -> None:
    data = b"x" * MAX_ATTACHMENT_BYTES

    message = decode_ingest_message(encode_attachment(**attachment_fields(data=data)))

    assert isinstance(message, CheckInAttachmentMessage) and len(message.data) == MAX_ATTACHMENT_BYTES


def test_attachment_over_100_kib_is_rejected_on_decode_and_encode() -> None:
    fields = {"message_type": "check_in_attachment", **attachment_fields(data=b"x" * (MAX_ATTACHMENT_BYTES + 1))}

    with pytest.raises(MessageDecodeError, match=r"^data: larger than 102400 bytes \(102401\)$"):
        decode_ingest_message(pack(fields))
    with pytest.raises(ValidationError):
        encode_attachment(**attachment_fields(data=b"x" * (MAX_ATTACHMENT_BYTES + 1)))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"extra": 1}, "extra: unexpected field"),
        ({"check_in_id": "nope"}, "check_in_id: not a valid UUID: 'nope'"),
        ({"data": "text, not bytes"}, "data: must be bytes"),
        ({"filename": ""}, "filename: must not be empty"),
    ],
)
def test_attachment_message_is_strict(overrides: dict[str, Any], reason: str) -> None:
    fields = {"message_type": "check_in_attachment", **attachment_fields(**overrides)}

    with pytest.raises(MessageDecodeError) as caught:
        decode_ingest_message(pack(fields))

    assert caught.value.reason == reason


# --------------------------------------------------------------------------- payload


@pytest.mark.parametrize("check_in_id", [GUID_HEX, GUID_HYPHENATED, GUID_HEX.upper()])
def test_check_in_id_is_accepted_as_hex_or_hyphenated(check_in_id: str) -> None:
    payload = parse(check_in_id=check_in_id)

    assert payload.check_in_id == uuid.UUID(GUID_HEX)
    assert not payload.is_latest


@pytest.mark.parametrize("check_in_id", [ZERO_HEX, str(uuid.UUID(int=0))])
def test_zero_check_in_id_means_the_latest_in_progress_check_in(check_in_id: str) -> None:
    assert parse(check_in_id=check_in_id).is_latest


def test_a_minimal_payload_gets_the_documented_defaults() -> None:
    payload = parse()

    assert payload.environment == "production"
    assert (payload.duration, payload.release, payload.trace_id, payload.monitor_config) == (None, None, None, None)


def test_unknown_payload_keys_are_ignored() -> None:
    assert parse(future_field={"x": 1}, timestamp=1714000000) == parse()


def test_trace_id_is_read_from_contexts_trace() -> None:
    payload = parse(contexts={"trace": {"trace_id": "8f431b7aa08441bbbd5a0100fd91f9fe", "span_id": "ab"}})

    assert payload.trace_id == uuid.UUID("8f431b7aa08441bbbd5a0100fd91f9fe")


@pytest.mark.parametrize("contexts", [{}, {"trace_id": "8f431b7aa08441bbbd5a0100fd91f9fe"}, {"trace": {}}, {"os": {}}])
def test_contexts_without_a_trace_id_give_no_trace(contexts: dict[str, Any]) -> None:
    assert parse(contexts=contexts).trace_id is None


@pytest.mark.parametrize("status", ["in_progress", "ok", "error"])
def test_the_three_reportable_statuses_are_accepted(status: str) -> None:
    assert parse(status=status).status.name.lower() == status


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(0, 0.0), (1.5, 1.5), (100, 100.0), (2147483.647, 2147483.647)],
)
def test_duration_in_seconds_is_accepted_within_sentrys_bounds(duration: float, expected: float) -> None:
    assert parse(duration=duration).duration == expected


def test_monitor_config_is_kept_raw_for_later_validation() -> None:
    config = {"schedule": {"type": "crontab", "value": "not even a crontab"}, "owner": "team:1"}

    assert parse(monitor_config=config).monitor_config == config


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("my-job", "my-job"),
        ("My Job", "my-job"),
        ("  Nightly   Backup  ", "nightly-backup"),
        ("db.vacuum", "dbvacuum"),
        ("a/b\\c", "abc"),
        ("snake_case_job", "snake_case_job"),
        ("__private__", "private"),
        ("--edge--", "edge"),
        ("a - b", "a-b"),
        ("Über Größe", "uber-groe"),
        ("x" * 60, "x" * 50),
        ("a" * 49 + "-b", "a" * 49),
    ],
)
def test_monitor_slug_is_slugified_as_sentry_does(raw: str, slug: str) -> None:
    assert slugify_monitor_slug(raw) == slug
    assert parse(monitor_slug=raw).monitor_slug == slug


@pytest.mark.parametrize("environment", ["production", "staging-eu", "prod env", "a" * 64, "ünïcode"])
def test_valid_environment_names_are_kept(environment: str) -> None:
    assert parse(environment=environment).environment == environment


def test_surrounding_whitespace_is_trimmed_from_the_environment_as_sentry_does() -> None:
    assert parse(environment="  staging \n").environment == "staging"


def test_null_environment_means_production() -> None:
    assert parse_check_in_payload(orjson.dumps({**payload_dict(), "environment": None})).environment == "production"


VALIDATION_FAILED = ProcessingErrorType.CHECKIN_VALIDATION_FAILED
INVALID_GUID = ProcessingErrorType.CHECKIN_INVALID_GUID
INVALID_DURATION = ProcessingErrorType.CHECKIN_INVALID_DURATION
INVALID_ENVIRONMENT = ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT
BAD_ENV_CHARS = "environment: must not contain a newline, form feed or '/'"
BAD_DURATION = "duration: must be 0..2147483.647 seconds, not "


@pytest.mark.parametrize(
    ("raw", "kind", "reason"),
    [
        (b"{not json", VALIDATION_FAILED, "payload: not JSON: "),
        (b"[1, 2]", VALIDATION_FAILED, "payload: not a JSON object"),
        (b"", VALIDATION_FAILED, "payload: not JSON: "),
    ],
)
def test_payload_that_is_not_a_json_object_fails_validation(raw: bytes, kind: ProcessingErrorType, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_check_in_payload(raw)

    assert caught.value.kind is kind
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("overrides", "kind", "reason"),
    [
        ({"check_in_id": None}, VALIDATION_FAILED, "check_in_id: field required"),
        ({"check_in_id": "not-a-guid"}, INVALID_GUID, "check_in_id: not a valid UUID: 'not-a-guid'"),
        ({"check_in_id": "abc123"}, INVALID_GUID, "check_in_id: not a valid UUID: 'abc123'"),
        ({"check_in_id": 12}, INVALID_GUID, "check_in_id: must be a UUID string"),
        ({"monitor_slug": None}, VALIDATION_FAILED, "monitor_slug: field required"),
        ({"monitor_slug": "!!!"}, VALIDATION_FAILED, "monitor_slug: must contain a letter or digit"),
        ({"monitor_slug": 5}, VALIDATION_FAILED, "monitor_slug: must be a string"),
        ({"status": None}, VALIDATION_FAILED, "status: field required"),
        ({"status": "missed"}, VALIDATION_FAILED, "status: must be in_progress, ok or error, not 'missed'"),
        ({"status": "OK"}, VALIDATION_FAILED, "status: must be in_progress, ok or error, not 'OK'"),
        ({"duration": -1}, INVALID_DURATION, BAD_DURATION + "-1"),
        ({"duration": 2147483.648}, INVALID_DURATION, BAD_DURATION + "2147483.648"),
        ({"duration": 1e300}, INVALID_DURATION, BAD_DURATION + "1e+300"),
        ({"duration": "10"}, VALIDATION_FAILED, "duration: must be a number"),
        ({"duration": True}, VALIDATION_FAILED, "duration: must be a number"),
        ({"environment": "a" * 65}, INVALID_ENVIRONMENT, "environment: longer than 64 characters"),
        ({"environment": "prod/eu"}, INVALID_ENVIRONMENT, BAD_ENV_CHARS),
        ({"environment": "prod\neu"}, INVALID_ENVIRONMENT, BAD_ENV_CHARS),
        ({"environment": "prod\reu"}, INVALID_ENVIRONMENT, BAD_ENV_CHARS),
        ({"environment": "prod\feu"}, INVALID_ENVIRONMENT, BAD_ENV_CHARS),
        ({"environment": ""}, VALIDATION_FAILED, "environment: must not be blank"),
        ({"environment": "   "}, VALIDATION_FAILED, "environment: must not be blank"),
        ({"environment": 1}, VALIDATION_FAILED, "environment: must be a string"),
        ({"release": 2}, VALIDATION_FAILED, "release: must be a string"),
        ({"contexts": {"trace": {"trace_id": "xyz"}}}, VALIDATION_FAILED, "contexts.trace.trace_id: not a valid UUID: 'xyz'"),
        ({"monitor_config": ["0 * * * *"]}, ProcessingErrorType.MONITOR_INVALID_CONFIG, "monitor_config: must be an object"),
    ],
)
def test_payload_rejection_has_a_kind_and_a_stable_reason(
    overrides: dict[str, Any], kind: ProcessingErrorType, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(**overrides)

    assert (caught.value.kind, caught.value.reason) == (kind, reason)


def test_several_bad_fields_are_all_reported_with_the_first_ones_kind() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(check_in_id="bad", status="done", environment="a/b")

    assert caught.value.kind is ProcessingErrorType.CHECKIN_INVALID_GUID
    assert caught.value.reason == (
        "check_in_id: not a valid UUID: 'bad'; status: must be in_progress, ok or error, not 'done'; "
        "environment: must not contain a newline, form feed or '/'"
    )


def test_reason_does_not_interpret_braces_from_user_input() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(check_in_id="{ge}")

    assert caught.value.reason == "check_in_id: not a valid UUID: '{ge}'"
