"""The local service launchers fail with one clear line naming the problem and the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cronpipe.local import kafka
from cronpipe.local.procs import ServiceError

CLI = [sys.executable, "-m", "cronpipe.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_a_missing_maven_is_named_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn on PATH
    layout = kafka.KafkaLayout(home=tmp_path / "kafka", port=_free_port())
    with pytest.raises(ServiceError, match=r"^java not found on PATH: install Java 17"):
        kafka.install(layout)


def test_an_occupied_kafka_port_is_reported_not_hijacked(tmp_path: Path, infra) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _run(["services", "start"], CRONPIPE_STATE_DIR=str(tmp_path),
                      CRONPIPE_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
                      CRONPIPE_DATABASE_URL=infra.admin_database_url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"cronpipe: error: port {port} on 127.0.0.1 is in use by a process cronpipe did not start: "
                     "stop it, or point CRONPIPE_KAFKA_BOOTSTRAP at a running broker"]


def test_an_unreachable_database_gives_one_line_and_exit_1() -> None:
    port = _free_port()
    result = _run(["migrate"], CRONPIPE_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/nothing")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cronpipe: error: database unreachable: ")
    assert "CRONPIPE_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr


def test_services_start_reports_an_unreachable_configured_database() -> None:
    port = _free_port()
    result = _run(["services", "start"], CRONPIPE_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/nothing")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cronpipe: error: cannot reach PostgreSQL at postgresql://nobody@127.0.0.1:{port}/nothing: ")
    assert "Connection refused" in lines[0]
    assert lines[0].endswith("; check CRONPIPE_DATABASE_URL")
