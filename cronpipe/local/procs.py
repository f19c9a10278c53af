"""Small process and port helpers shared by the local Kafka and PostgreSQL launchers."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service cannot be installed or started. ``str()`` names the problem and the fix."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline_s: float, *, alive: Callable[[], bool] | None = None) -> bool:
    """Poll until ``host:port`` accepts connections; give up early when ``alive()`` turns false."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open(host, port):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.2)
    return False


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def stop_pid(pid_file: Path, name: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM the process recorded in ``pid_file`` (and only it), SIGKILL after ``timeout_s``.

    Returns True when something was stopped.
    """
    pid = read_pid(pid_file)
    if not pid_alive(pid):
        pid_file.unlink(missing_ok=True)
        return False
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    pid_file.unlink(missing_ok=True)
    return True
