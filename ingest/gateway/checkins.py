"""Check-in payloads from HTTP requests, validated before anything reaches Kafka.

The payload published is Sentry's check-in JSON (DESIGN.md, "ingest-monitors v1"). It is
validated here with the same rules the processor applies (``schemas.messages``, with the
hostile-input bounds of ``schemas.limits``), so a malformed request gets a 400 with the
reason instead of becoming a processing error later.

A ``monitor_config`` is only checked against those bounds (NUL, depth, string lengths),
not for meaning: as Sentry, a config that is well-formed but invalid (a typo in the
timezone) is the processor's to judge — an existing monitor keeps its stored config and
records the check-in, and either way the user sees a MONITOR_INVALID_CONFIG processing
error instead of an SDK silently swallowing a 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ingest.gateway.errors import bad_request
from schemas.checkin_payload import PayloadError, check_duration, parse_check_in_payload
from schemas.json_object import NotAnObject, load_object
from schemas.limits import LimitError, check_document

#: ``check_in_id=latest`` (and Sentry's nil UUID): the newest in-progress check-in.
LATEST: Final = uuid.UUID(int=0)
#: Fields a cron request may set through the query string or the JSON body.
_CRON_FIELDS: Final = ("status", "check_in_id", "environment", "duration", "release")


@dataclass(frozen=True)
class CheckIn:
    """A validated check-in, ready to publish."""

    payload: bytes
    monitor_slug: str
    """As the processor will see it (slugified)."""
    check_in_id: uuid.UUID


def cron_check_in(monitor_slug: str, query: Mapping[str, str], body: Mapping[str, Any] | None, *,
                  with_output: bool = False) -> CheckIn:
    """Build the check-in of ``/api/{project}/cron/{slug}/{key}/`` from the query string and
    an optional JSON body (body fields win). Raises GatewayError(400).

    Without ``check_in_id``, an ``in_progress`` check-in gets a new id (returned to the
    caller so it can send the matching ``ok``); ``ok``/``error`` get the nil UUID, which
    pairs with the newest in-progress check-in — so Sentry's documented pair of curl
    calls without ids keeps working. A check-in that carries job output
    (``with_output``) needs an id of its own for the attachment to name: a new one when
    none is given, and "latest" is refused.
    """
    fields: dict[str, Any] = {name: query[name] for name in _CRON_FIELDS if name in query}
    fields.update(body or {})
    payload = {**fields, "monitor_slug": monitor_slug}
    payload["check_in_id"] = _cron_check_in_id(payload.get("check_in_id"), payload.get("status"), with_output)
    if isinstance(payload.get("duration"), str):
        payload["duration"] = _duration(payload["duration"])
    check_in = validate_check_in(orjson.dumps(payload))
    if with_output and check_in.check_in_id == LATEST:
        raise bad_request("check_in_id: job output needs the check-in's own id, not 'latest'")
    return check_in


def _cron_check_in_id(value: object, status: object, with_output: bool) -> str:
    if value is None or value == "":
        return uuid.uuid4().hex if status == "in_progress" or with_output else LATEST.hex
    if value == "latest":
        return LATEST.hex
    if not isinstance(value, str):
        raise bad_request("check_in_id: must be a UUID string")
    return value


def _duration(text: str) -> float:
    """A query-string duration, by the payload's rule: ``nan``, ``inf`` and ``1e309`` are
    refused here, as in JSON, rather than becoming null when the payload is serialized."""
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"duration: must be a number, not {text[:40]!r}") from None
    try:
        return check_duration(value)
    except PayloadError as exc:
        raise bad_request(exc.reason) from None


def validate_check_in(payload: bytes) -> CheckIn:
    """Validate a check-in JSON payload (an envelope item or a built one); raises GatewayError(400)."""
    try:
        parsed = parse_check_in_payload(payload)
    except PayloadError as exc:
        raise bad_request(exc.reason) from None
    return CheckIn(payload, parsed.monitor_slug, parsed.check_in_id)


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A cron request's JSON body; raises GatewayError(400) unless it is a JSON object."""
    try:
        value = load_object(body, "body", not_object="must be a JSON object")
    except NotAnObject as exc:
        raise bad_request(exc.reason) from None
    try:
        check_document(value, "body", body)  # before it is merged and serialized again
    except LimitError as exc:
        raise bad_request(exc.reason) from None
    return value


def looks_like_json(content_type: str, body: bytes) -> bool:
    """True when a cron POST body is meant as JSON fields rather than job output.

    ``curl --data-binary @job.log`` sends ``application/x-www-form-urlencoded``, so the
    content type alone cannot tell; a JSON content type, or a body that is a JSON object,
    is taken as fields.
    """
    if "json" in content_type:
        return True
    if not body.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False
