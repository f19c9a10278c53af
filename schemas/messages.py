"""The ``ingest-monitors`` topic, version 1: msgpack maps as published in sentry-kafka-schemas.

Two layers, decoded separately because their failures go to different places:

* the **message** (the msgpack map): :func:`decode_ingest_message` raises
  :class:`MessageDecodeError`, which sends the raw bytes to the DLQ;
* the **check-in payload** (JSON bytes inside a ``check_in`` message):
  :func:`parse_check_in_payload` raises :class:`PayloadError` carrying a
  :class:`~schemas.enums.ProcessingErrorType`, which becomes a processing error that
  users see in the API.

Liberal where Sentry is: ``payload`` may be msgpack ``bin`` (Relay) or ``str`` (Sentry's
own example, with a trailing newline); ``check_in_id`` may be hex or hyphenated; unknown
payload keys and unknown top-level keys of a ``check_in`` map are ignored (the published
schema has ``additionalProperties: true`` there). Strict where the schema is: a
``clock_pulse`` carries nothing but ``message_type`` and Sentry's optional
``partition_ids``; our ``check_in_attachment`` extension forbids unknown keys.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

import msgpack
import orjson
from pydantic import (
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from schemas.enums import CheckInStatus, ProcessingErrorType
from schemas.json_object import NotAnObject, load_object
from schemas.limits import (
    MAX_ERROR_PAYLOAD_BYTES,
    MAX_RELEASE_LENGTH,
    LimitError,
    check_config_text,
    check_document,
    excerpt,
    storable_text,
)

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_RETENTION_DAYS",
    "MAX_ATTACHMENT_BYTES",
    "MAX_DURATION_SECONDS",
    "MAX_ENVIRONMENT_LENGTH",
    "MAX_SLUG_LENGTH",
    "CheckInAttachmentMessage",
    "CheckInMessage",
    "CheckInPayload",
    "ClockPulse",
    "IngestMessage",
    "MessageDecodeError",
    "MessageRejected",
    "PayloadError",
    "check_duration",
    "check_payload_limits",
    "decode_ingest_message",
    "encode_attachment",
    "encode_check_in",
    "encode_clock_pulse",
    "encode_ingest_message",
    "error_excerpt",
    "parse_check_in_payload",
    "slugify_monitor_slug",
    "validate_attachment",
]

#: Sentry's DEFAULT_SLUG_MAX_LENGTH; longer slugs are truncated, not rejected.
MAX_SLUG_LENGTH: Final = 50
#: Sentry's ENVIRONMENT_NAME_MAX_LENGTH.
MAX_ENVIRONMENT_LENGTH: Final = 64
DEFAULT_ENVIRONMENT: Final = "production"
#: Sentry stores durations as milliseconds in a signed 32-bit column.
MAX_DURATION_MS: Final = 2_147_483_647
MAX_DURATION_SECONDS: Final = MAX_DURATION_MS / 1000
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


class PayloadError(ValueError):
    """A decodable check-in whose payload breaks a rule; it becomes a processing error."""

    def __init__(self, kind: ProcessingErrorType, reason: str) -> None:
        # Reasons quote client input and are stored as text: never with a NUL.
        reason = storable_text(reason)
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --------------------------------------------------------------------------- helpers


# Pydantic's built-in messages vary between versions; the ones a producer may
# trigger are spelled here so reasons stay stable.
_ERROR_TEXTS: Final[dict[str, str]] = {
    "missing": "field required",
    "extra_forbidden": "unexpected field",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bytes_type": "must be bytes",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "literal_error": "unexpected value",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "string_too_short": "must not be empty",
    "string_too_long": "longer than {max_length} characters",
    "value_error": "{error}",
}


def _describe_error(error: ErrorDetails) -> str:
    """Render one pydantic error as ``"field.path: reason"``."""
    template = _ERROR_TEXTS.get(error["type"])
    if template is None:
        text = error["msg"]
    else:
        text = template.format(**error.get("ctx", {}))
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {text}" if where else text


def describe_validation_error(exc: ValidationError) -> str:
    """All errors of ``exc`` as ``"field: reason"``, joined with ``"; "``, in field order.

    Shared with ``schemas.clock`` so every decode error of cronpipe reads the same way.
    """
    return "; ".join(_describe_error(error) for error in exc.errors(include_url=False))


def _custom(kind: str, message: str) -> PydanticCustomError:
    # The message is passed pre-formatted and without context: pydantic only
    # substitutes ``{name}`` for keys given in the context, so user text is safe.
    return PydanticCustomError(kind, message)


def _is_number(value: object) -> bool:
    # bool is an int subclass; True is never a duration or a timestamp.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _to_bytes(value: object) -> object:
    """Normalize a ``payload`` to bytes: Relay sends bin, Sentry's example sends str."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _parse_uuid(value: object, kind: str) -> uuid.UUID:
    """Accept a UUID as 32 hex digits or hyphenated (anything ``uuid.UUID`` reads, as Sentry)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise _custom(kind, "must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _custom(kind, f"not a valid UUID: {value[:40]!r}") from None


# Django's slugify, which Sentry applies to monitor slugs: fold to ASCII, drop what is
# not a word character, space or hyphen, collapse runs of spaces/hyphens into one '-'.
_SLUG_DROP = re.compile(r"[^\w\s-]")
_SLUG_SEPARATORS = re.compile(r"[-\s]+")
# Already a slug: what the slow path would return unchanged (no edge '_' or '-', no '--').
_CLEAN_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9_]|-(?=[a-z0-9_]))*(?<!_)")


def slugify_monitor_slug(value: str) -> str:
    """Return ``value`` slugified exactly as Sentry does for check-in monitor slugs.

    ``"My Job.daily"`` → ``"my-jobdaily"``, ``"Über Backup"`` → ``"uber-backup"``;
    the result is at most :data:`MAX_SLUG_LENGTH` characters and may be empty.
    """
    if len(value) <= MAX_SLUG_LENGTH and _CLEAN_SLUG.fullmatch(value):
        return value  # the common case: already a slug, skip the unicode work
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_SEPARATORS.sub("-", _SLUG_DROP.sub("", folded.lower())).strip("-_")
    return slug[:MAX_SLUG_LENGTH].strip("-")


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
        return _to_bytes(value)


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
        return _parse_uuid(value, "uuid_type")

    @field_validator("monitor_slug", "filename", "content_type")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise _custom("nul_character", "must not contain a NUL character")
        return value

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: bytes) -> bytes:
        if len(value) > MAX_ATTACHMENT_BYTES:
            raise _custom("too_large", f"larger than {MAX_ATTACHMENT_BYTES} bytes ({len(value)})")
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


# --------------------------------------------------------------------------- payload

_ENVIRONMENT_FORBIDDEN = re.compile(r"[\n\r\f/]")
_INGEST_STATUSES: Final[dict[str, CheckInStatus]] = {
    "in_progress": CheckInStatus.IN_PROGRESS,
    "ok": CheckInStatus.OK,
    "error": CheckInStatus.ERROR,
}
# Custom pydantic error types that are not plain validation failures.
_ERROR_KINDS: Final[dict[str, ProcessingErrorType]] = {
    "invalid_guid": ProcessingErrorType.CHECKIN_INVALID_GUID,
    "invalid_duration": ProcessingErrorType.CHECKIN_INVALID_DURATION,
    "invalid_environment": ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT,
    "invalid_config": ProcessingErrorType.MONITOR_INVALID_CONFIG,
}


class CheckInPayload(BaseModel):
    """The JSON a job sends for one check-in, validated; unknown keys are ignored.

    Validation errors carry pydantic error types that :func:`parse_check_in_payload`
    maps to a :class:`ProcessingErrorType`; build it through that function.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    check_in_id: uuid.UUID
    """The check-in's id; the zero UUID means "the newest in-progress one" (:attr:`is_latest`)."""
    monitor_slug: str
    """Slugified as Sentry does (:func:`slugify_monitor_slug`), never empty."""
    status: CheckInStatus
    """IN_PROGRESS, OK or ERROR: the only statuses a job may report."""
    duration: float | None = None
    """Seconds, 0..:data:`MAX_DURATION_SECONDS`; None lets the pairing compute it."""
    environment: str = DEFAULT_ENVIRONMENT
    release: str | None = None
    trace_id: uuid.UUID | None = Field(
        default=None, validation_alias=AliasPath("contexts", "trace", "trace_id")
    )
    """From ``contexts.trace.trace_id``; absent when the payload has no trace context."""
    monitor_config: dict[str, Any] | None = None
    """Kept raw: it is validated by ``schemas.monitor_config`` only when upserting."""

    @property
    def is_latest(self) -> bool:
        """True for the zero UUID: update the newest IN_PROGRESS check-in instead."""
        return self.check_in_id.int == 0

    @field_validator("check_in_id", mode="plain")
    @classmethod
    def _check_in_id(cls, value: object) -> uuid.UUID:
        return _parse_uuid(value, "invalid_guid")

    @field_validator("monitor_slug", mode="plain")
    @classmethod
    def _monitor_slug(cls, value: object) -> str:
        if not isinstance(value, str):
            raise _custom("string_type", "must be a string")
        slug = slugify_monitor_slug(value)
        if not slug:
            raise _custom("empty_slug", "must contain a letter or digit")
        return slug

    @field_validator("status", mode="plain")
    @classmethod
    def _status(cls, value: object) -> CheckInStatus:
        status = _INGEST_STATUSES.get(value) if isinstance(value, str) else None
        if status is None:
            raise _custom("invalid_status", f"must be in_progress, ok or error, not {excerpt(value)}")
        return status

    @field_validator("duration", mode="plain")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return _duration_seconds(value)

    @field_validator("environment", mode="plain")
    @classmethod
    def _environment(cls, value: object) -> str:
        if value is None:
            return DEFAULT_ENVIRONMENT
        if not isinstance(value, str):
            raise _custom("string_type", "must be a string")
        # Sentry's serializer trims surrounding whitespace and rejects a blank name.
        name = value.strip()
        if not name:
            raise _custom("blank", "must not be blank")
        if len(name) > MAX_ENVIRONMENT_LENGTH:
            raise _custom("invalid_environment", f"longer than {MAX_ENVIRONMENT_LENGTH} characters")
        if _ENVIRONMENT_FORBIDDEN.search(name):
            raise _custom("invalid_environment", "must not contain a newline, form feed or '/'")
        return name

    @field_validator("release", mode="plain")
    @classmethod
    def _release(cls, value: object) -> str | None:
        if value is not None and not isinstance(value, str):
            raise _custom("string_type", "must be a string")
        if value is not None and len(value) > MAX_RELEASE_LENGTH:
            raise _custom("too_long", f"longer than {MAX_RELEASE_LENGTH} characters")
        return value

    @field_validator("trace_id", mode="plain")
    @classmethod
    def _trace_id(cls, value: object) -> uuid.UUID | None:
        # Sentry reads it with a UUID field: hex or hyphenated.
        return None if value is None else _parse_uuid(value, "uuid_type")

    @field_validator("monitor_config", mode="plain")
    @classmethod
    def _monitor_config(cls, value: object) -> dict[str, Any] | None:
        if value is not None and not isinstance(value, dict):
            raise _custom("invalid_config", "must be an object")
        return value


def _duration_seconds(value: object) -> float | None:
    """The one duration rule (JSON payloads and the gateway's query string); raises
    PydanticCustomError."""
    if value is None:
        return None
    if not _is_number(value):
        raise _custom("float_type", "must be a number")
    seconds = float(value)  # type: ignore[arg-type]  # _is_number checked it
    # Sentry truncates to whole milliseconds before its range check; so do we.
    # Written so that NaN and infinities fail too.
    if not (0 <= seconds and seconds * 1000 < MAX_DURATION_MS + 1):
        raise _custom("invalid_duration", f"must be 0..{MAX_DURATION_SECONDS} seconds, not {value!r}")
    return seconds


def check_duration(value: float) -> float:
    """``value`` if it is a valid check-in duration in seconds, for callers that build a
    payload from text (``duration=nan`` in a query string must not become JSON null).
    Raises PayloadError(CHECKIN_INVALID_DURATION) with the payload's reason."""
    try:
        seconds = _duration_seconds(value)
    except PydanticCustomError as exc:
        raise PayloadError(ProcessingErrorType.CHECKIN_INVALID_DURATION, f"duration: {exc.message()}") from None
    assert seconds is not None
    return seconds


def parse_check_in_payload(raw: bytes) -> CheckInPayload:
    """Parse and validate the JSON payload of a ``check_in`` message.

    Raises :class:`PayloadError`; ``.kind`` is CHECKIN_INVALID_GUID for a bad
    ``check_in_id``, CHECKIN_INVALID_DURATION for an out-of-range duration,
    MONITOR_INVALID_ENVIRONMENT for a forbidden environment name, MONITOR_INVALID_CONFIG
    for a ``monitor_config`` that is not an object, and CHECKIN_VALIDATION_FAILED for
    anything else (bad JSON, missing or mistyped fields). When several fields are bad,
    the kind is that of the first in field order and ``.reason`` lists them all.

    The hostile-input bounds (:func:`check_payload_limits`: depth, NUL anywhere,
    monitor_config string lengths) are checked first and alone.
    """
    try:
        data = load_object(raw, "payload")
    except NotAnObject as exc:
        raise PayloadError(ProcessingErrorType.CHECKIN_VALIDATION_FAILED, exc.reason) from None
    check_payload_limits(data, raw)
    try:
        return CheckInPayload.model_validate(data)
    except ValidationError as exc:
        raise _payload_error(exc) from None


# Which processing error a broken bound becomes, by the payload field it is in.
_LIMIT_KINDS: Final[dict[str, ProcessingErrorType]] = {
    "environment": ProcessingErrorType.MONITOR_INVALID_ENVIRONMENT,
    "monitor_config": ProcessingErrorType.MONITOR_INVALID_CONFIG,
}


def check_payload_limits(data: dict[str, Any], raw: bytes | None = None) -> None:
    """The hostile-input bounds of ``schemas.limits`` over a parsed payload (depth, NUL,
    monitor_config string lengths), before pydantic or anything else walks it.
    ``raw`` is the JSON text ``data`` came from (a faster NUL check). Raises PayloadError;
    a valid payload costs one pass over its containers."""
    try:
        check_document(data, raw=raw)
        config = data.get("monitor_config")
        if isinstance(config, dict):
            check_config_text(config, raw=raw)
    except LimitError as exc:
        field = exc.reason.split(":", 1)[0].split(".", 1)[0]
        raise PayloadError(_LIMIT_KINDS.get(field, ProcessingErrorType.CHECKIN_VALIDATION_FAILED), exc.reason) from None


def error_excerpt(raw: bytes) -> dict[str, Any]:
    """A rejected check-in's payload as it is stored with its processing error (jsonb):
    the JSON object itself when it is one, at most :data:`MAX_ERROR_PAYLOAD_BYTES` and
    within the bounds of ``schemas.limits``; otherwise ``{"payload": <first KiB as text>}``
    with NUL spelled ``\\x00``, so that the error is always storable."""
    if len(raw) <= MAX_ERROR_PAYLOAD_BYTES:
        try:
            data = orjson.loads(raw)
            check_document(data)
        except (orjson.JSONDecodeError, LimitError):
            data = None
        if isinstance(data, dict):
            return data
    return {"payload": storable_text(raw[:1024].decode("utf-8", "replace"))}


def _payload_error(exc: ValidationError) -> PayloadError:
    """Turn a CheckInPayload ValidationError into a PayloadError of the first error's kind."""
    first = exc.errors(include_url=False)[0]["type"]
    kind = _ERROR_KINDS.get(first, ProcessingErrorType.CHECKIN_VALIDATION_FAILED)
    return PayloadError(kind, describe_validation_error(exc))
