"""Hostile sockets against the real ``cronpipe gateway`` and ``cronpipe api`` processes:
oversized headers, silent sockets, slowloris headers, endless bodies, idle keep-alive
connections and a connection flood all end within bounds (schemas/http_limits.py).

Every socket has a timeout, so a server that holds a connection fails the test instead of
hanging it; the waits are generous bounds on an outcome, not latency measurements.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.gateway_processes import Service, cronpipe, cronpipe_env, free_port

#: Tight limits so that the bounds fire within about a second.
TIGHT = {"CRONPIPE_HTTP_HEADER_TIMEOUT": "1", "CRONPIPE_HTTP_BODY_TIMEOUT": "1", "CRONPIPE_HTTP_IDLE_TIMEOUT": "1",
         "CRONPIPE_HTTP_MAX_HEADER_BYTES": "8192"}
CAPPED = {"CRONPIPE_HTTP_MAX_CONNECTIONS": "4"}
#: How long a test waits for the server to end a connection that a bound ends in ≈ 1 s.
BOUND_S = 20.0
KINDS = ["gateway", "api"]


@dataclass(frozen=True)
class Server:
    kind: str
    port: int
    post_path: str
    """A path that takes a POST body (the gateway's cron endpoint with a valid key)."""

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=BOUND_S)


@pytest.fixture(scope="module")
def stack_env(infra: Any, module_database_url: str) -> dict[str, str]:
    """One database and topic prefix for the module's (up to four) server processes."""
    env = cronpipe_env(infra.kafka_bootstrap, module_database_url, f"e2e{uuid.uuid4().hex[:8]}-")
    cronpipe(env, "org", "create", "acme")
    return env


@pytest.fixture(scope="module")
def servers(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Server]]:
    """(kind, "tight" | "capped") → a running server, started on first use, stopped at the end."""
    log_dir = tmp_path_factory.mktemp("limits")
    started: dict[tuple[str, str], tuple[Service, Server]] = {}

    class Lazy(dict[tuple[str, str], Server]):
        def __missing__(self, key: tuple[str, str]) -> Server:
            started[key] = _start(key[0], {**stack_env, **(TIGHT if key[1] == "tight" else CAPPED)}, log_dir)
            self[key] = started[key][1]
            return self[key]

    yield Lazy()
    for service, _ in started.values():
        assert service.terminate() == 0, service.tail()


def _start(kind: str, env: dict[str, str], log_dir: Path) -> tuple[Service, Server]:
    port = free_port()
    if kind == "gateway":
        env = {**env, "CRONPIPE_GATEWAY_PORT": str(port)}
        project = cronpipe(env, "project", "create", "--org", "acme", "--slug", f"p{port}")
        service = Service.start(f"gateway-{port}", env, ["gateway", "--workers", "1"], log_dir)
        server = Server(kind, port, f"/api/{project['id']}/cron/job/{project['public_key']}/")
    else:
        env = {**env, "CRONPIPE_API_PORT": str(port)}
        service = Service.start(f"api-{port}", env, ["api"], log_dir)
        server = Server(kind, port, "/api/0/organizations/acme/monitors/")
    service.wait_http(f"http://127.0.0.1:{port}/healthz")
    return service, server


def read_until_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or BOUND_S passes without a close (False)."""
    received = b""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, True
        except TimeoutError:
            return received, False
        if not chunk:
            return received, True
        received += chunk
    return received, False


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """Send what the server still takes; a server that closed on us is what some tests want."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (both servers always send one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before a whole response: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed in the middle of a response"
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("kind", KINDS)
def test_an_unterminated_header_over_the_limit_is_refused_with_431_and_closed(
    servers: dict[tuple[str, str], Server], kind: str
) -> None:
    server = servers[kind, "tight"]
    with server.connect() as sock:
        send_ignoring_close(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024)
        response, closed = read_until_closed(sock)
    assert closed
    assert status_of(response) in (431, None), response[:200]  # None: reset before the 431 was read


@pytest.mark.parametrize("kind", KINDS)
def test_a_complete_header_over_the_limit_is_refused_with_431(servers: dict[tuple[str, str], Server], kind: str) -> None:
    server = servers[kind, "tight"]
    with server.connect() as sock:
        send_ignoring_close(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        response, closed = read_until_closed(sock)
    assert closed
    assert status_of(response) in (431, None), response[:200]


@pytest.mark.parametrize("kind", KINDS)
def test_headers_under_the_limit_are_served_and_the_connection_kept_alive(
    servers: dict[tuple[str, str], Server], kind: str
) -> None:
    server = servers[kind, "tight"]
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 7000 + b"\r\n\r\n"
    with server.connect() as sock:
        for _ in range(2):
            sock.sendall(request)
            assert status_of(read_response(sock)) == 200


@pytest.mark.parametrize("kind", KINDS)
def test_a_socket_that_never_sends_a_byte_is_closed(servers: dict[tuple[str, str], Server], kind: str) -> None:
    with servers[kind, "tight"].connect() as sock:
        response, closed = read_until_closed(sock)
    assert closed
    assert status_of(response) in (408, None), response[:200]


@pytest.mark.parametrize("kind", KINDS)
def test_slowloris_sockets_dripping_headers_are_answered_408_and_closed(
    servers: dict[tuple[str, str], Server], kind: str
) -> None:
    server = servers[kind, "tight"]
    sockets = [server.connect() for _ in range(50)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        open_ones = list(sockets)
        deadline = time.monotonic() + BOUND_S
        while open_ones and time.monotonic() < deadline:  # one more header line each, every ~0.3 s
            time.sleep(0.3)
            for sock in list(open_ones):
                try:
                    sock.sendall(b"X-Drip: 1\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    open_ones.remove(sock)
        assert not open_ones, f"{len(open_ones)} of 50 dripping sockets still open after {BOUND_S}s"
        response, closed = read_until_closed(sockets[0])
        assert closed and status_of(response) in (408, None), response[:200]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_chunked_body_that_never_ends_is_cut_off(servers: dict[tuple[str, str], Server], kind: str) -> None:
    server = servers[kind, "tight"]
    with server.connect() as sock:
        sock.sendall(f"POST {server.post_path}?status=ok HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode())
        deadline = time.monotonic() + BOUND_S
        closed = False
        while not closed and time.monotonic() < deadline:  # a chunk every 0.3 s: progress, but never the end
            time.sleep(0.3)
            try:
                sock.sendall(b"1\r\nx\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        if not closed:
            _, closed = read_until_closed(sock)
    assert closed


@pytest.mark.parametrize("kind", KINDS)
def test_an_idle_keep_alive_connection_is_closed(servers: dict[tuple[str, str], Server], kind: str) -> None:
    with servers[kind, "tight"].connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response, closed = read_until_closed(sock)
    assert status_of(response) == 200
    assert closed


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_over_the_cap_gets_503_and_the_cap_frees_when_others_close(
    servers: dict[tuple[str, str], Server], kind: str
) -> None:
    server = servers[kind, "capped"]
    held = [server.connect() for _ in range(4)]
    try:
        for sock in held:  # each connection is surely accepted once it has an answer
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(read_response(sock)) == 200
        with server.connect() as extra:
            response, closed = read_until_closed(extra)
        assert closed
        assert status_of(response) == 503, response[:200]
        assert b'"detail"' in response
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + BOUND_S
    while True:  # the server notices the closes asynchronously
        with server.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response, _ = read_until_closed(sock)
        if status_of(response) == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status_of(response) == 200
