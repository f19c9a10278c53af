"""`cronpipe up` brings the whole stack up from nothing; `cronpipe down` leaves no process behind."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

from cronpipe.local.procs import pid_alive, port_open, read_pid

CLI = [sys.executable, "-m", "cronpipe.cli"]


def _free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports (Kafka needs port and port + 1)."""
    while True:
        first = random.randint(20000, 40000)
        ports = list(range(first, first + count))
        if not any(port_open("127.0.0.1", p) for p in ports):
            return ports


def _cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_up_starts_everything_shows_a_check_in_and_down_stops_every_process(tmp_path: Path) -> None:
    kafka_port, _controller, pg_port, gateway_port, api_port, health_port = _free_ports(6)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONPIPE_")}
    env.update(CRONPIPE_STATE_DIR=str(state), CRONPIPE_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_port}",
               CRONPIPE_PG_PORT=str(pg_port), CRONPIPE_GATEWAY_PORT=str(gateway_port),
               CRONPIPE_API_PORT=str(api_port))
    try:
        up = _cli(["up"], env, timeout=400)
        assert up.returncode == 0, up.stderr[-2000:]
        summary = json.loads(up.stdout)
        assert summary["demo_checkin"]["status"] == "ok"
        assert summary["demo_checkin"]["duration"] > 0
        assert summary["gateway"] == f"http://127.0.0.1:{gateway_port}"
        # The worker answers for itself (the gateway's /healthz knows nothing of it): API port + 1.
        assert summary["worker_health"] == f"http://127.0.0.1:{health_port}/healthz"
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/livez", timeout=10) as live:
            assert json.loads(live.read()) == {"live": True}
        pids = [*summary["pids"].values(), read_pid(state / "kafka" / "kafka.pid")]
        postmaster = (state / "postgres" / "data" / "postmaster.pid").read_text().splitlines()[0]
        pids.append(int(postmaster))
        assert all(pid_alive(p) for p in pids)

        again = _cli(["up", "--no-demo"], env, timeout=120)  # idempotent: finds what runs
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads(again.stdout)["pids"] == summary["pids"]
    finally:
        down = _cli(["down"], env, timeout=180)
    assert down.returncode == 0, down.stderr[-2000:]
    assert json.loads(down.stdout)["stopped"] == ["notifier", "api", "gateway", "worker", "kafka", "postgresql"], \
        down.stderr[-2000:]
    assert [p for p in pids if pid_alive(p)] == []
    assert not any(port_open("127.0.0.1", p) for p in (kafka_port, pg_port, gateway_port, api_port, health_port))
