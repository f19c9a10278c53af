"""`cronpipe api` as a real process: serves with a token, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psycopg
import pytest

from cronpipe.admin import create_org, create_token
from cronpipe.probes import free_port, wait_for_http

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("workers", [1, 2])
def test_cronpipe_api_serves_the_organization_and_exits_zero_on_sigterm(database_url: str, workers: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_org(conn, "acme")
        token = create_token(conn, "acme")
    port = free_port()
    env = {**os.environ, "CRONPIPE_DATABASE_URL": database_url, "CRONPIPE_API_PORT": str(port),
           "CRONPIPE_BIND": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "cronpipe.cli", "api", "--workers", str(workers)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", status=200, process=proc, name="cronpipe api")
        response = httpx.get(f"{base}/api/0/organizations/acme/monitors/", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()) == (200, [])
        assert httpx.get(f"{base}/api/0/organizations/acme/monitors/").status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
