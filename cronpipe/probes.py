"""Questions the benchmarks, scripts and tests ask a running stack: a free port to start a
server on, whether that server answers HTTP yet, how many messages a topic holds.

Standard library and confluent-kafka only (no test dependency), so `cronpipe bench`,
``scripts/`` and the tests share one copy; tests import it, never the other way round.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

__all__ = ["NoAnswer", "free_port", "high_watermarks", "http_status", "wait_for_http"]

# Straight to the address asked for: an http_proxy in the environment must not answer for it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NoAnswer(RuntimeError):
    """The server did not answer in time, or its process exited first; ``str()`` says which."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    """The status ``url`` answers a GET with (4xx and 5xx included); None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, http.client.HTTPException):
        return None


def wait_for_http(url: str, *, timeout_s: float = 60.0, status: int | None = None,
                  process: subprocess.Popen[Any] | None = None, name: str = "the server") -> None:
    """Poll ``url`` until it answers (with ``status``, when given: 200 for a health check).

    Raises NoAnswer after ``timeout_s``, or as soon as ``process`` (the server's) exits.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise NoAnswer(f"{name} exited with {process.returncode} before answering at {url}")
        answer = http_status(url)
        if answer is not None and (status is None or answer == status):
            return
        time.sleep(0.2)
    wanted = "" if status is None else f" with {status}"
    raise NoAnswer(f"{name} did not answer{wanted} at {url} within {timeout_s:g} s")


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``: how many messages each ever got."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]) for p in partitions}
    finally:
        consumer.close()
