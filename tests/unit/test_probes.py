"""The probes the benchmarks, scripts and tests share (cronpipe/probes.py): HTTP answers
against a real local server, and a server process that exits before answering."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cronpipe.probes import NoAnswer, free_port, http_status, wait_for_http


class _Answers(BaseHTTPRequestHandler):
    """``GET /<status>`` answers that status."""

    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status", [200, 204, 404, 503])
def test_http_status_is_the_answer_whatever_it_is(server: str, status: int) -> None:
    assert http_status(f"{server}/{status}") == status


def test_http_status_is_none_where_nothing_listens() -> None:
    assert http_status(f"http://127.0.0.1:{free_port()}/") is None


def test_any_answer_ends_the_wait_unless_a_status_is_asked_for(server: str) -> None:
    wait_for_http(f"{server}/503", timeout_s=5)
    wait_for_http(f"{server}/200", timeout_s=5, status=200)
    with pytest.raises(NoAnswer, match=r"^the gateway did not answer with 200 at http://.*/503 within 0.5 s$"):
        wait_for_http(f"{server}/503", timeout_s=0.5, status=200, name="the gateway")


def test_a_server_process_that_exits_ends_the_wait_with_its_exit_status() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    with pytest.raises(NoAnswer, match=r"^cronpipe api exited with 3 before answering at "):
        wait_for_http(f"http://127.0.0.1:{free_port()}/healthz", process=process, name="cronpipe api")
