"""The one exception type that turns into an HTTP error response."""

from __future__ import annotations


class GatewayError(Exception):
    """A request the gateway refuses; ``reason`` is a short stable label for metrics,
    ``detail`` the specific text returned to the client."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}


def bad_request(detail: str, reason: str = "malformed") -> GatewayError:
    """400: the request cannot be understood; ``detail`` says exactly why."""
    return GatewayError(400, reason, detail)


def too_large(what: str, limit: int) -> GatewayError:
    """413: a body or a file above its limit (bytes)."""
    return GatewayError(413, "too_large", f"{what} larger than {limit} bytes")
