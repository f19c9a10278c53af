"""`cronpipe up` / `cronpipe down`: the whole local stack, started and stopped by one command.

`up` starts Kafka and PostgreSQL (unless configured elsewhere), applies migrations,
creates the topics, starts the worker, gateway, read API and notifier as background processes
(pid files and logs under the state folder), creates a demo organization, project and
token once, then sends a demo job's check-ins through the gateway and waits until the
read API shows them: the proof that every stage works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cronpipe.local.procs import ServiceError, pid_alive, port_open, read_pid, stop_pid
from cronpipe.local.stack import start_services, stop_services
from schemas.settings import Settings

PROCESSES = {
    "worker": ["worker"],
    "gateway": ["gateway"],
    "api": ["api"],
    "notifier": ["notifier"],
}


def _say(msg: str) -> None:
    print(f"cronpipe up: {msg}", file=sys.stderr, flush=True)


def _run_dir(settings: Settings) -> Path:
    d = settings.state_dir / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _start_process(settings: Settings, name: str, env: dict[str, str]) -> int:
    run = _run_dir(settings)
    pid_file = run / f"{name}.pid"
    pid = read_pid(pid_file)
    if pid_alive(pid):
        assert pid is not None
        return pid
    log = open(run / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cronpipe.cli", *PROCESSES[name]], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _http_json(url: str, *, token: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def _wait_healthy(name: str, host: str, port: int, pid_file: Path, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not pid_alive(read_pid(pid_file)):
            raise ServiceError(f"{name} exited during start; see {pid_file.with_suffix('.log')}")
        try:
            _http_json(f"http://{host}:{port}/healthz", timeout=2)
            return
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.5)
    raise ServiceError(f"{name} did not answer on http://{host}:{port}/healthz within {timeout_s:.0f}s; "
                       f"see {pid_file.with_suffix('.log')}")


def _demo_credentials(settings: Settings, db_url: str) -> dict[str, Any]:
    """Create the demo org/project/token once; later runs reuse them from the state folder."""
    path = settings.state_dir / "demo.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    import psycopg

    from cronpipe.admin import create_org, create_project, create_token

    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        org_row = conn.execute("SELECT id FROM organizations WHERE slug = 'demo'").fetchone()
        if org_row is None:
            create_org(conn, "demo", "Demo organization")
        proj = conn.execute("SELECT p.id, k.public_key FROM projects p JOIN organizations o ON o.id = p.organization_id"
                            " JOIN project_keys k ON k.project_id = p.id AND k.is_active"
                            " WHERE o.slug = 'demo' AND p.slug = 'demo' LIMIT 1").fetchone()
        if proj is None:
            created = create_project(conn, "demo", "demo", name="Demo project")
            proj = (created.id, created.public_key)
        token = create_token(conn, "demo")
    creds = {"org": "demo", "project_id": proj[0], "project": "demo", "public_key": proj[1], "token": token}
    path.write_text(json.dumps(creds))
    path.chmod(0o600)
    return creds


def _send_demo(host: str, settings: Settings, creds: dict[str, Any]) -> str:
    """One job run through the curl-style endpoint: in_progress with a config, then ok."""
    base = f"http://{host}:{settings.gateway_port}/api/{creds['project_id']}/cron/demo-job/{creds['public_key']}/"
    check_in_id = uuid.uuid4().hex
    body = json.dumps({"status": "in_progress", "check_in_id": check_in_id,
                       "monitor_config": {"schedule": {"type": "crontab", "value": "*/5 * * * *"},
                                          "checkin_margin": 2, "max_runtime": 10, "timezone": "UTC"}}).encode()
    req = urllib.request.Request(base, data=body, headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    time.sleep(1.0)
    urllib.request.urlopen(f"{base}?status=ok&check_in_id={check_in_id}", timeout=10).read()
    return check_in_id


def _wait_for_checkin(host: str, settings: Settings, creds: dict[str, Any], check_in_id: str,
                      timeout_s: float = 90.0) -> dict[str, Any]:
    url = (f"http://{host}:{settings.api_port}/api/0/organizations/{creds['org']}"
           f"/monitors/demo-job/checkins/")
    want = str(uuid.UUID(check_in_id))
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            for row in _http_json(url, token=creds["token"]):
                if row.get("id") == want and row.get("status") == "ok":
                    return dict(row)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise ServiceError(f"the demo check-in did not reach the read API within {timeout_s:.0f}s; "
                       f"see the logs in {_run_dir(settings)}")


def up(settings: Settings, demo: bool = True) -> int:
    _say("starting Kafka and PostgreSQL (first run fetches the broker's jars from Maven Central)")
    services = start_services(settings)
    from schemas.migrate import apply_migrations
    from schemas.topics import Topics, ensure_topics

    apply_migrations(services.database_url)
    ensure_topics(services.kafka_bootstrap, Topics(prefix=settings.topic_prefix).specs())
    env = {**os.environ, "CRONPIPE_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
           "CRONPIPE_DATABASE_URL": services.database_url, "CRONPIPE_STATE_DIR": str(settings.state_dir),
           # A loopback development stack: its alert channels are local receivers.
           "CRONPIPE_NOTIFY_ALLOW_PRIVATE": "1"}
    host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    # The worker's liveness/readiness endpoint (consumers.health): next to the API's port by default.
    health_port = settings.worker_health_port or settings.api_port + 1
    env["CRONPIPE_WORKER_HEALTH_PORT"] = str(health_port)
    for port, what, variable in ((settings.gateway_port, "gateway", "GATEWAY_PORT"),
                                 (settings.api_port, "api", "API_PORT"),
                                 (health_port, "worker", "WORKER_HEALTH_PORT")):
        if port_open(host, port) and not pid_alive(read_pid(_run_dir(settings) / f"{what}.pid")):
            raise ServiceError(f"port {port} is in use by a process cronpipe did not start: free it or set "
                               f"CRONPIPE_{variable}")
    pids = {name: _start_process(settings, name, env) for name in PROCESSES}
    _say(f"started worker (pid {pids['worker']}), gateway (pid {pids['gateway']}), api (pid {pids['api']}),"
         f" notifier (pid {pids['notifier']})")
    run = _run_dir(settings)
    _wait_healthy("gateway", host, settings.gateway_port, run / "gateway.pid")
    _wait_healthy("api", host, settings.api_port, run / "api.pid")
    creds = _demo_credentials(settings, services.database_url)
    summary: dict[str, Any] = {
        "kafka": services.kafka_bootstrap,
        "database_url": services.database_url,
        "gateway": f"http://{host}:{settings.gateway_port}",
        "api": f"http://{host}:{settings.api_port}",
        "dashboard": f"http://{host}:{settings.api_port}/ui/",
        "worker_health": f"http://{host}:{health_port}/healthz",
        "dsn": f"http://{creds['public_key']}@{host}:{settings.gateway_port}/{creds['project_id']}",
        "token": creds["token"],
        "logs": str(run),
        "pids": pids,
    }
    if demo:
        _say("sending a demo job's check-ins (in_progress, then ok) through the gateway")
        check_in_id = _send_demo(host, settings, creds)
        summary["demo_checkin"] = _wait_for_checkin(host, settings, creds, check_in_id)
        _say("the demo check-in went gateway → Kafka → worker → PostgreSQL → read API")
    summary["try"] = [
        f"curl '{summary['gateway']}/api/{creds['project_id']}/cron/my-job/{creds['public_key']}/?status=ok'",
        f"curl -H 'Authorization: Bearer {creds['token']}' {summary['api']}/api/0/organizations/demo/monitors/",
        f"curl {summary['worker_health']}   # the worker: 200 while check-ins commit; alert on anything else",
        "cronpipe down",
    ]
    print(json.dumps(summary, indent=2), flush=True)
    return 0


def down(settings: Settings, clean: bool = False) -> int:
    run = settings.state_dir / "run"
    stopped = [name for name in reversed(list(PROCESSES)) if stop_pid(run / f"{name}.pid", name, timeout_s=30)]
    stopped += stop_services(settings)
    if clean:
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    print(json.dumps({"stopped": stopped, "cleaned": clean}), flush=True)
    return 0

