"""Sentry envelopes and Sentry auth, parsed without I/O.

An envelope (https://develop.sentry.dev/sdk/data-model/envelopes/) is a JSON header
line followed by items; each item is a JSON header line (``type``, optional ``length``)
and a payload: exactly ``length`` bytes when given, else everything up to the next
newline. Every function raises :class:`~ingest.gateway.errors.GatewayError` with the
specific reason when the input is malformed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ingest.gateway.errors import GatewayError, bad_request, too_large
from schemas.json_object import NotAnObject, load_object


@dataclass(frozen=True)
class Item:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers["type"])


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: list[Item]


# ----------------------------------------------------------------------------- bodies


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip, deflate), refusing more than ``limit``
    decompressed bytes (413) so a small compressed bomb cannot exhaust memory."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, limit)
    if encoding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate anyway.
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except GatewayError as exc:
            if exc.status == 413:
                raise
            return _inflate(body, -zlib.MAX_WBITS, limit)
    raise GatewayError(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}: use gzip or deflate")


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"body cannot be decompressed: {exc}") from None
    if len(data) > limit:
        raise too_large("decompressed body", limit)
    if not inflater.eof:
        raise bad_request("body cannot be decompressed: truncated stream")
    return data


# ----------------------------------------------------------------------------- envelopes


def parse_envelope(data: bytes) -> Envelope:
    """Split an envelope into its header and items; raises GatewayError(400)."""
    header_line, position = _read_line(data, 0)
    headers = _json_object(header_line, "envelope header")
    items: list[Item] = []
    while position < len(data):
        line, position = _read_line(data, position)
        if not line.strip():
            continue  # blank lines between items and a trailing newline are harmless
        item_headers = _item_headers(line, len(items))
        payload, position = _read_payload(data, position, item_headers, len(items))
        items.append(Item(item_headers, payload))
    return Envelope(headers, items)


def _read_line(data: bytes, start: int) -> tuple[bytes, int]:
    end = data.find(b"\n", start)
    if end < 0:
        return data[start:], len(data)
    return data[start:end], end + 1


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return load_object(raw, what)
    except NotAnObject as exc:
        raise bad_request(exc.brief) from None  # without orjson's words (line and column of the envelope's)


def _item_headers(line: bytes, index: int) -> dict[str, Any]:
    headers = _json_object(line, f"item {index} header")
    if not isinstance(headers.get("type"), str):
        raise bad_request(f"item {index} header: type must be a string")
    length = headers.get("length")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 0):
        raise bad_request(f"item {index} header: length must be a non-negative integer")
    return headers


def _read_payload(data: bytes, start: int, headers: dict[str, Any], index: int) -> tuple[bytes, int]:
    length = headers.get("length")
    if length is None:
        return _read_line(data, start)
    end = start + length
    if end > len(data):
        raise bad_request(f"item {index}: length {length} runs past the end of the envelope")
    if end < len(data) and data[end:end + 1] != b"\n":
        raise bad_request(f"item {index}: payload is not followed by a newline")
    return data[start:end], end + 1


# ----------------------------------------------------------------------------- auth


def parse_auth_header(value: str) -> dict[str, str]:
    """``Sentry sentry_key=abc, sentry_version=7`` → ``{"sentry_key": "abc", ...}``."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "sentry":
        rest = value  # some clients omit the scheme
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    return fields


def public_key_from_dsn(dsn: object) -> str | None:
    """The public key of a DSN (``http://<key>@host/<project>``), or None."""
    if not isinstance(dsn, str):
        return None
    try:
        return urlsplit(dsn).username or None
    except ValueError:
        return None


def sdk_name(headers: dict[str, Any]) -> str | None:
    """``"sentry.python/2.75.0"`` from an envelope header's ``sdk`` object, if any."""
    sdk = headers.get("sdk")
    if isinstance(sdk, dict) and isinstance(sdk.get("name"), str):
        version = sdk.get("version")
        return f"{sdk['name']}/{version}" if isinstance(version, str) else sdk["name"]
    return None
