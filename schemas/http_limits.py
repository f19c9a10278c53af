"""Bounds for both HTTP servers (gateway and read API): uvicorn's httptools protocol plus
the limits uvicorn 0.54 does not enforce, and the uvicorn config that installs it.

What uvicorn 0.54 with httptools enforces by itself (``uvicorn/protocols/http/httptools_impl.py``):

- no header size limit: httptools concatenates a header across reads
  (``_current_header_name += field``), so an unterminated 32 MiB header costs 32 MiB and
  quadratic copying; ``h11_max_incomplete_event_size`` only exists for the (pure Python,
  ≈ 3x slower) h11 protocol;
- ``timeout_keep_alive`` is armed only after a response is complete and cancelled by any
  byte received: a socket that never sends a byte, one that stops in the middle of its
  headers (slowloris), one whose body never ends, is held forever;
- ``limit_concurrency`` answers 503 only once a request's headers are complete and counts
  idle keep-alive sockets, so it neither refuses connections nor frees them.

:class:`LimitedHttpToolsProtocol` adds each bound for the cost of a float per request
phase: a per-loop sweeper, not a timer per request, closes what is overdue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from schemas.settings import Settings

log = logging.getLogger("cronpipe.http")

#: How often overdue connections are looked for; a bound fires at most this much late.
SWEEP_INTERVAL_S = 0.5
_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class HttpLimits:
    """Per server process. Every field is a ``CRONPIPE_HTTP_*`` setting (README)."""

    max_header_bytes: int = 64 * 1024
    """Request line plus headers; more is a 431 and the connection is closed."""
    header_timeout: float = 10.0
    """Seconds from a connection's opening (or a request's first byte) to the end of its headers."""
    body_timeout: float = 15.0
    """Seconds from the end of the headers to the end of the body; also how long a response
    may stay unsent because the client does not read."""
    idle_timeout: int = 30
    """Seconds a keep-alive connection may sit between requests."""
    max_connections: int = 1024
    """Open connections per server process; one more is answered 503 and closed at once."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        limits = cls(settings.http_max_header_bytes, settings.http_header_timeout, settings.http_body_timeout,
                     settings.http_idle_timeout, settings.http_max_connections)
        for name, value in vars(limits).items():
            if value <= 0:
                raise ValueError(f"CRONPIPE_HTTP_{name.upper()}={value}: must be greater than zero")
        return limits


class LimitedConfig(uvicorn.Config):
    """A uvicorn Config whose connections are :class:`LimitedHttpToolsProtocol` under ``limits``.

    The limits travel as an attribute of the config, which uvicorn pickles into each
    worker process of ``--workers N``.
    """

    def __init__(self, app: Any, *, limits: HttpLimits,
                 protocol: type[LimitedHttpToolsProtocol] | None = None, **kwargs: Any) -> None:
        super().__init__(app, http=protocol or LimitedHttpToolsProtocol, timeout_keep_alive=limits.idle_timeout,
                         **kwargs)
        self.limits = limits


class _Refusal(Exception):
    """Raised inside a parser callback to answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, header/body/send timeouts and
    a connection cap. Error bodies are ``{"detail": ...}`` plus :attr:`error_fields`."""

    error_fields: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "limits", None) or HttpLimits()
        self._deadline: float | None = None  # loop time the current phase must end by
        self._phase = "headers"  # what the deadline waits for: "headers", "body" or "send"
        self._header_bytes = 0  # bytes received since the current request's headers began
        self._counting = True  # between the end of one message and the end of the next headers

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # connection_lost() closes it
            _refusals.note("connection cap")
            transport.write(self._error(503, f"more than {self.limits.max_connections} open connections",
                                        b"retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._deadline = self.loop.time() + self.limits.header_timeout
        _sweeper_for(self.server_state, self.loop).ensure()

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the header budget and the refusals raised by callbacks.
        self._unset_keepalive_if_required()
        if self._counting:
            self._header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refusal):
                self._refuse(exc.__context__.status, exc.__context__.detail, "headers")
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._counting and self._header_bytes > self.limits.max_header_bytes:
            _refusals.note("header size")
            self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes", "headers")
        elif self._deadline is None and self.timeout_keep_alive_task is None and self._between_requests():
            # Bytes that start no request (blank lines) cancelled the keep-alive timer; bound them.
            self._arm("headers", self.limits.header_timeout)

    def _bad_request(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm("headers", self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            _refusals.note("header size")
            raise _Refusal(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
        self._counting = False
        self._header_bytes = 0
        self._arm("body", self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._counting = True
        self._deadline = None

    # ------------------------------------------------------------------ sending

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._deadline is None:
            self._arm("send", self.limits.body_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._phase == "send":
            self._deadline = None

    # ------------------------------------------------------------------ deadlines

    def _arm(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + seconds

    def expire_if_due(self, now: float) -> None:
        """Called by the sweeper: end the connection if its current phase is overdue."""
        if self._deadline is None or now < self._deadline or self.transport.is_closing():
            return
        _refusals.note(f"{self._phase} timeout")
        if self._phase == "headers":
            self._refuse(408, f"request headers not received within {self.limits.header_timeout:g}s", "headers")
        elif self._phase == "body":
            self._refuse(408, f"request body not received within {self.limits.body_timeout:g}s", "body")
        else:
            self.transport.close()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _refuse(self, status: int, detail: str, phase: str) -> None:
        """Answer ``status`` unless a response is already on its way, and close."""
        self._deadline = None
        cycle = self.cycle
        if phase == "body" and cycle is not None and not cycle.response_started:
            # The app may be waiting for the body: it now reads a disconnect and sends nothing.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(self._error(status, detail))
        elif phase == "headers" and self._between_requests():
            self.transport.write(self._error(status, detail))
        self.transport.close()

    def _error(self, status: int, detail: str, extra_headers: bytes = b"") -> bytes:
        body = json.dumps({"detail": detail, **self.error_fields}).encode()
        return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]), b"content-type: application/json\r\n",
                         b"content-length: %d\r\n" % len(body), extra_headers, b"connection: close\r\n\r\n", body])


class _Sweeper:
    """Every SWEEP_INTERVAL_S, while connections are open: expire the overdue ones."""

    def __init__(self, connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._connections = connections
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def ensure(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        for connection in list(self._connections):
            if isinstance(connection, LimitedHttpToolsProtocol):
                connection.expire_if_due(now)
        if self._connections:
            self.ensure()


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


def _sweeper_for(state: ServerState, loop: asyncio.AbstractEventLoop) -> _Sweeper:
    sweeper = _sweepers.get(state)
    if sweeper is None:
        sweeper = _sweepers[state] = _Sweeper(state.connections, loop)
    return sweeper


class _RefusalLog:
    """One warning line per interval with counts, not one per refused connection (a flood
    of them is exactly when a line each would hurt)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._last = 0.0

    def note(self, reason: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last >= _LOG_EVERY_S:
            self._last = now
            summary = ", ".join(f"{count} × {why}" for why, count in sorted(self._counts.items()))
            log.warning("HTTP connections ended by limits (since the last line): %s", summary)
            self._counts.clear()


_refusals = _RefusalLog()
