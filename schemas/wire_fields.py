"""What the ``ingest-monitors`` message and the check-in payload share: stable texts for
pydantic's validation errors, the field parsers both use (UUIDs, numbers, bytes) and
Sentry's monitor slug rule. One copy, so a reason reads the same wherever it is raised.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Final

from pydantic import (
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = ["MAX_SLUG_LENGTH", "custom_error", "describe_validation_error", "is_number", "parse_uuid",
           "slugify_monitor_slug", "to_bytes"]

#: Sentry's DEFAULT_SLUG_MAX_LENGTH; longer slugs are truncated, not rejected.
MAX_SLUG_LENGTH: Final = 50


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


def custom_error(kind: str, message: str) -> PydanticCustomError:
    # The message is passed pre-formatted and without context: pydantic only
    # substitutes ``{name}`` for keys given in the context, so user text is safe.
    return PydanticCustomError(kind, message)


def is_number(value: object) -> bool:
    # bool is an int subclass; True is never a duration or a timestamp.
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_bytes(value: object) -> object:
    """Normalize a ``payload`` to bytes: Relay sends bin, Sentry's example sends str."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def parse_uuid(value: object, kind: str) -> uuid.UUID:
    """Accept a UUID as 32 hex digits or hyphenated (anything ``uuid.UUID`` reads, as Sentry)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise custom_error(kind, "must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise custom_error(kind, f"not a valid UUID: {value[:40]!r}") from None


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
