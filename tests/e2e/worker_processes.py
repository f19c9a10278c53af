"""A real ``cronpipe worker`` process for end-to-end tests, and what they read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

CRONPIPE = [sys.executable, "-m", "cronpipe.cli"]


class Worker:
    """``cronpipe worker`` with its output in ``log``; stopped by its own pid only."""

    def __init__(self, env: dict[str, str], log: Path, agents: str = "checkins") -> None:
        self.log = log
        self.health_port = int(env.get("CRONPIPE_WORKER_HEALTH_PORT", "0"))
        with open(log, "ab") as out:
            self.process = subprocess.Popen([*CRONPIPE, "worker", "--agents", agents], env={**os.environ, **env},
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def health(self, path: str = "/healthz") -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 180.0, *,
             alive: Worker | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if alive is not None and alive.process.poll() is not None:
            raise AssertionError(f"the worker exited with {alive.process.returncode} while waiting for {what}:\n"
                                 f"{alive.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{alive.tail()}" if alive else ""))
        time.sleep(0.3)


def scalar(database_url: str, sql: str, params: Any = None) -> int:
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            row = conn.execute(sql, params).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row and row[0] is not None else 0
