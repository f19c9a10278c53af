"""The one ``multipart/form-data`` field the attachment endpoint reads, parsed without I/O.

Bodies are small (≤ 100 KiB plus headers), so the whole body is parsed in memory; only
what the endpoint needs is supported (``Content-Disposition`` name/filename and the
part's ``Content-Type``).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from ingest.gateway.errors import bad_request


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; raises GatewayError(400)."""
    header = _header_params("Content-Type", content_type)
    if header.get_content_type() != "multipart/form-data":
        raise bad_request("Content-Type: must be multipart/form-data with a 'file' field")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise bad_request("Content-Type: multipart boundary missing")
    return boundary.encode("latin-1")


def find_file(body: bytes, boundary: bytes, field: str = "file") -> FilePart:
    """The part named ``field``; raises GatewayError(400) when absent or malformed."""
    delimiter = b"--" + boundary
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        part = _parse_part(chunk)
        if part is not None and part[0] == field:
            return part[1]
    raise bad_request(f"multipart body has no {field!r} field")


def _parse_part(chunk: bytes) -> tuple[str, FilePart] | None:
    # Each part is CRLF, headers, CRLF CRLF, data, CRLF (before the next delimiter).
    head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
    if not sep:
        raise bad_request("multipart part without a header/body separator")
    headers = _part_headers(head.decode("utf-8", "replace"))
    disposition = _header_params("Content-Disposition", headers.get("content-disposition", ""))
    name = disposition.get_param("name", header="content-type")
    if not isinstance(name, str):
        return None
    filename = disposition.get_param("filename", header="content-type")
    part = FilePart(filename=filename if isinstance(filename, str) and filename else "attachment",
                    content_type=headers.get("content-type", "application/octet-stream"),
                    data=data.removesuffix(b"\r\n"))
    return name, part


def _part_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _header_params(name: str, value: str) -> Message:
    # email.message does RFC 2231/quoted parameter parsing correctly; reuse it.
    message = Message()
    message["content-type"] = value if name == "Content-Type" else f"x/x; {value.partition(';')[2]}"
    return message
