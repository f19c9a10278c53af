"""The ``ingest-monitors`` topic, version 1: msgpack maps as published in sentry-kafka-schemas.

Two layers, decoded separately because their failures go to different places:

* the **message** (the msgpack map): :func:`decode_ingest_message` raises
  :class:`MessageDecodeError`, which sends the raw bytes to the DLQ;
* the **check-in payload** (JSON bytes inside a ``check_in`` message):
  :func:`schemas.checkin_payload.parse_check_in_payload` raises ``PayloadError``
  carrying a :class:`~schemas.enums.ProcessingErrorType`, which becomes a processing
  error that users see in the API (that layer is :mod:`schemas.checkin_payload`).

Liberal where Sentry is: ``payload`` may be msgpack ``bin`` (Relay) or ``str`` (Sentry's
own example, with a trailing newline); ``check_in_id`` may be hex or hyphenated; unknown
payload keys and unknown top-level keys of a ``check_in`` map are ignored (the published
schema has ``additionalProperties: true`` there). Strict where the schema is: a
``clock_pulse`` carries nothing but ``message_type`` and Sentry's optional
``partition_ids``; our ``check_in_attachment`` extension forbids unknown keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

import msgpack
import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from schemas.enums import ProcessingErrorType
from schemas.limits import (
    storable_text,
)
from schemas.wire_fields import MAX_SLUG_LENGTH, custom_error, describe_validation_error, parse_uuid, to_bytes

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "MAX_ATTACHMENT_BYTES",
    "CheckInAttachmentMessage",
    "CheckInMessage",
    "ClockPulse",
    "IngestMessage",
    "MessageDecodeError",
    "MessageRejected",
    "decode_ingest_message",
    "encode_attachment",
    "encode_check_in",
    "encode_clock_pulse",
    "encode_ingest_message",
    "validate_attachment",
]

MAX_ATTACHMENT_BYTES: Final = 100 * 1024
#: What Relay sends when a project has no retention setting.
DEFAULT_RETENTION_DAYS: Final = 90
_MAX_U64: Final = 2**64 - 1
_MAX_U16: Final = 2**16 - 1


class MessageDecodeError(ValueError):
    """A message that cannot be decoded at all; it belongs in the DLQ.

    ``str(error)`` and ``error.reason`` are the specific, stable reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageRejected(MessageDecodeError):
    """A message that decodes but whose content breaks a rule (a NUL in an attachment's
    filename, a file over the size limit): a processing error of ``project_id``, like a
    bad check-in payload, not a dead letter. The gateway answers 400 with ``reason``."""

    def __init__(self, project_id: int, kind: ProcessingErrorType, reason: str, details: dict[str, Any]) -> None:
        super().__init__(reason)
        self.project_id = project_id
        self.kind = kind
        self.details = details



# --------------------------------------------------------------------------- messages


class CheckInMessage(BaseModel):
    """A ``check_in`` message; ``payload`` is the raw JSON, parsed later by
    :func:`parse_check_in_payload` so that a bad payload is not a bad message."""

    # additionalProperties is true in the published schema: Relay may add keys.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    message_type: Literal["check_in"] = "check_in"
    payload: bytes
    start_time: Annotated[float, Field(allow_inf_nan=False)]
    """When Relay received the envelope, unix seconds."""
    project_id: Annotated[StrictInt, Field(ge=0, le=_MAX_U64)]
    retention_days: Annotated[StrictInt, Field(ge=0, le=_MAX_U16)]
    sdk: str | None = None

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_as_bytes(cls, value: object) -> object:
        return to_bytes(value)


class ClockPulse(BaseModel):
    """A ``clock_pulse``: moves a partition's clock when no check-in arrives there."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    message_type: Literal["clock_pulse"] = "clock_pulse"
    # Not strict: msgpack yields a list, the frozen model keeps a tuple.
    partition_ids: Annotated[tuple[Annotated[StrictInt, Field(ge=0)], ...] | None, Field(strict=False)] = None
    """Sentry's newer producers name the partitions the pulse was sent to; informational."""


class CheckInAttachmentMessage(BaseModel):
    """cronpipe extension: a file (job output) attached to one check-in."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    message_type: Literal["check_in_attachment"] = "check_in_attachment"
    project_id: Annotated[StrictInt, Field(ge=0, le=_MAX_U64)]
    monitor_slug: Annotated[str, Field(min_length=1, max_length=MAX_SLUG_LENGTH)]
    check_in_id: uuid.UUID
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=1, max_length=255)]
    data: bytes
    start_time: Annotated[float, Field(allow_inf_nan=False)]

    @field_validator("check_in_id", mode="plain")
    @classmethod
    def _check_in_id(cls, value: object) -> uuid.UUID:
        return parse_uuid(value, "uuid_type")

    @field_validator("monitor_slug", "filename", "content_type")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise custom_error("nul_character", "must not contain a NUL character")
        return value

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: bytes) -> bytes:
        if len(value) > MAX_ATTACHMENT_BYTES:
            raise custom_error("too_large", f"larger than {MAX_ATTACHMENT_BYTES} bytes ({len(value)})")
        return value


IngestMessage = Annotated[
    CheckInMessage | ClockPulse | CheckInAttachmentMessage,
    Field(discriminator="message_type"),
]
"""Any message of the ``ingest-monitors`` topic, told apart by ``message_type``."""

INGEST_MESSAGE_ADAPTER: Final[TypeAdapter[IngestMessage]] = TypeAdapter(IngestMessage)

ModelT = TypeVar("ModelT", bound=BaseModel)

_MESSAGE_MODELS: Final[dict[str, type[CheckInMessage | ClockPulse | CheckInAttachmentMessage]]] = {
    "check_in": CheckInMessage,
    "clock_pulse": ClockPulse,
    "check_in_attachment": CheckInAttachmentMessage,
}


def decode_ingest_message(raw: bytes) -> CheckInMessage | ClockPulse | CheckInAttachmentMessage:
    """Decode one ``ingest-monitors`` value.

    Raises :class:`MessageDecodeError` with a specific reason: ``"not msgpack: ..."``,
    ``"not a map"``, ``"message_type: field required"``, ``"unknown message_type 'x'"``,
    or ``"<field>: <problem>"`` (e.g. ``"payload: field required"``).
    The check-in payload itself is not parsed here.
    """
    try:
        data = msgpack.unpackb(raw, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise MessageDecodeError(f"not msgpack: {detail}") from None
    if not isinstance(data, dict):
        raise MessageDecodeError("not a map")
    return _validate_message(data)


def _validate_message(data: dict[str, Any]) -> CheckInMessage | ClockPulse | CheckInAttachmentMessage:
    """Pick the model by ``message_type`` and validate; raises MessageDecodeError."""
    if data.get("message_type") == "check_in_attachment":
        return validate_attachment(data)
    return validate_tagged(data, "message_type", _MESSAGE_MODELS)


# Attachment errors about content rather than shape: the message still names its
# project, so the producer learns about them as a processing error.
_CONTENT_ERRORS: Final = frozenset({"nul_character", "string_too_long", "string_too_short", "too_large"})


def validate_attachment(data: dict[str, Any]) -> CheckInAttachmentMessage:
    """Validate a ``check_in_attachment`` map (``message_type`` may be left out).

    Raises :class:`MessageRejected` when only content rules fail (NUL or length of
    ``monitor_slug``/``filename``/``content_type``, ``data`` over the size limit) and the
    ``project_id`` is valid; :class:`MessageDecodeError` for anything else (a bad shape).
    """
    try:
        return CheckInAttachmentMessage.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        reason = describe_validation_error(exc)
        project_id = data.get("project_id")
        if all(error["type"] in _CONTENT_ERRORS for error in errors) and isinstance(project_id, int):
            details = {"check_in_id": storable_text(str(data.get("check_in_id"))[:64]),
                       "filename": storable_text(str(data.get("filename"))[:255])}
            raise MessageRejected(project_id, ProcessingErrorType.CHECKIN_VALIDATION_FAILED,
                                  storable_text(reason), details) from None
        raise MessageDecodeError(reason) from None


def validate_tagged(data: dict[str, Any], tag: str, models: Mapping[str, type[ModelT]]) -> ModelT:
    """Validate ``data`` with the model its ``tag`` field names (a discriminated union).

    Raises MessageDecodeError: ``"<tag>: field required"``, ``"unknown <tag> 'x'"`` or the
    model's first validation errors.
    """
    if tag not in data:
        raise MessageDecodeError(f"{tag}: field required")
    kind = data[tag]
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise MessageDecodeError(f"unknown {tag} {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MessageDecodeError(describe_validation_error(exc)) from None


def encode_ingest_message(message: CheckInMessage | ClockPulse | CheckInAttachmentMessage) -> bytes:
    """Serialize any ingest message to msgpack (bytes as ``bin``, ids as hex)."""
    # A pulse without partition_ids must stay a one-key map: the schema forbids null there.
    fields = message.model_dump(exclude_none=isinstance(message, ClockPulse))
    if isinstance(message, CheckInAttachmentMessage):
        fields["check_in_id"] = message.check_in_id.hex
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def encode_check_in(
    payload: bytes | Mapping[str, Any],
    *,
    project_id: int,
    start_time: float,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    sdk: str | None = None,
) -> bytes:
    """Build a ``check_in`` message as Relay does; ``payload`` is JSON bytes or a mapping
    (serialized with orjson). Raises pydantic's ValidationError for out-of-range fields."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    message = CheckInMessage(
        payload=body,
        project_id=project_id,
        start_time=start_time,
        retention_days=retention_days,
        sdk=sdk,
    )
    return encode_ingest_message(message)


def encode_clock_pulse(partition_ids: tuple[int, ...] | None = None) -> bytes:
    """Build a ``clock_pulse`` message (``{"message_type": "clock_pulse"}``)."""
    return encode_ingest_message(ClockPulse(partition_ids=partition_ids))


def encode_attachment(
    *,
    project_id: int,
    monitor_slug: str,
    check_in_id: uuid.UUID | str,
    filename: str,
    content_type: str,
    data: bytes,
    start_time: float,
) -> bytes:
    """Build a ``check_in_attachment`` message. Raises pydantic's ValidationError when
    ``data`` exceeds :data:`MAX_ATTACHMENT_BYTES` or a field is out of range."""
    message = CheckInAttachmentMessage.model_validate(
        {
            "project_id": project_id,
            "monitor_slug": monitor_slug,
            "check_in_id": check_in_id,
            "filename": filename,
            "content_type": content_type,
            "data": data,
            "start_time": start_time,
        }
    )
    return encode_ingest_message(message)
