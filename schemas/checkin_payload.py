"""The check-in payload: the JSON bytes inside a ``check_in`` message of ``ingest-monitors``.

:func:`parse_check_in_payload` validates them and raises :class:`PayloadError` carrying a
:class:`~schemas.enums.ProcessingErrorType`, which becomes a processing error that users
see in the API (never a dead letter: the message itself decoded, :mod:`schemas.messages`).
Unknown payload keys are ignored, as in Sentry.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

import orjson
from pydantic import (
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

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
from schemas.wire_fields import custom_error, describe_validation_error, is_number, parse_uuid, slugify_monitor_slug

__all__ = ["DEFAULT_ENVIRONMENT", "MAX_DURATION_MS", "MAX_DURATION_SECONDS", "MAX_ENVIRONMENT_LENGTH", "CheckInPayload",
           "PayloadError", "check_duration", "check_payload_limits", "error_excerpt", "parse_check_in_payload"]

#: Sentry's ENVIRONMENT_NAME_MAX_LENGTH.
MAX_ENVIRONMENT_LENGTH: Final = 64
DEFAULT_ENVIRONMENT: Final = "production"
#: Sentry stores durations as milliseconds in a signed 32-bit column.
MAX_DURATION_MS: Final = 2_147_483_647
MAX_DURATION_SECONDS: Final = MAX_DURATION_MS / 1000


class PayloadError(ValueError):
    """A decodable check-in whose payload breaks a rule; it becomes a processing error."""

    def __init__(self, kind: ProcessingErrorType, reason: str) -> None:
        # Reasons quote client input and are stored as text: never with a NUL.
        reason = storable_text(reason)
        super().__init__(reason)
        self.kind = kind
        self.reason = reason



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
        return parse_uuid(value, "invalid_guid")

    @field_validator("monitor_slug", mode="plain")
    @classmethod
    def _monitor_slug(cls, value: object) -> str:
        if not isinstance(value, str):
            raise custom_error("string_type", "must be a string")
        slug = slugify_monitor_slug(value)
        if not slug:
            raise custom_error("empty_slug", "must contain a letter or digit")
        return slug

    @field_validator("status", mode="plain")
    @classmethod
    def _status(cls, value: object) -> CheckInStatus:
        status = _INGEST_STATUSES.get(value) if isinstance(value, str) else None
        if status is None:
            raise custom_error("invalid_status", f"must be in_progress, ok or error, not {excerpt(value)}")
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
            raise custom_error("string_type", "must be a string")
        # Sentry's serializer trims surrounding whitespace and rejects a blank name.
        name = value.strip()
        if not name:
            raise custom_error("blank", "must not be blank")
        if len(name) > MAX_ENVIRONMENT_LENGTH:
            raise custom_error("invalid_environment", f"longer than {MAX_ENVIRONMENT_LENGTH} characters")
        if _ENVIRONMENT_FORBIDDEN.search(name):
            raise custom_error("invalid_environment", "must not contain a newline, form feed or '/'")
        return name

    @field_validator("release", mode="plain")
    @classmethod
    def _release(cls, value: object) -> str | None:
        if value is not None and not isinstance(value, str):
            raise custom_error("string_type", "must be a string")
        if value is not None and len(value) > MAX_RELEASE_LENGTH:
            raise custom_error("too_long", f"longer than {MAX_RELEASE_LENGTH} characters")
        return value

    @field_validator("trace_id", mode="plain")
    @classmethod
    def _trace_id(cls, value: object) -> uuid.UUID | None:
        # Sentry reads it with a UUID field: hex or hyphenated.
        return None if value is None else parse_uuid(value, "uuid_type")

    @field_validator("monitor_config", mode="plain")
    @classmethod
    def _monitor_config(cls, value: object) -> dict[str, Any] | None:
        if value is not None and not isinstance(value, dict):
            raise custom_error("invalid_config", "must be an object")
        return value


def _duration_seconds(value: object) -> float | None:
    """The one duration rule (JSON payloads and the gateway's query string); raises
    PydanticCustomError."""
    if value is None:
        return None
    if not is_number(value):
        raise custom_error("float_type", "must be a number")
    seconds = float(value)  # type: ignore[arg-type]  # _is_number checked it
    # Sentry truncates to whole milliseconds before its range check; so do we.
    # Written so that NaN and infinities fail too.
    if not (0 <= seconds and seconds * 1000 < MAX_DURATION_MS + 1):
        raise custom_error("invalid_duration", f"must be 0..{MAX_DURATION_SECONDS} seconds, not {value!r}")
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
