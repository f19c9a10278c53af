"""Where `cronpipe bench api` spends CPU: per-process CPU times from /proc and py-spy samples.

CPU per request is measured, not inferred from requests/s: the user+system time of the API
processes (the uvicorn supervisor and its workers) and of the PostgreSQL backends serving
the benchmark's database, read from ``/proc/PID/stat`` before and after a load phase, and
the benchmark process's own (the load client). On a shared machine this stays comparable
when requests/s does not.

``--profile DIR`` also samples the API processes with py-spy (a test extra; it reads other
processes' memory, so it needs root or ptrace permission) and sorts each sample into a
stage by its innermost frame that names one (:data:`STAGES`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

_TICK = os.sysconf("SC_CLK_TCK")

EVENT_LOOP = "event loop and sockets (uvloop, native)"
#: (stage, path fragments of a frame's file): a sample goes to the stage of its innermost
#: frame matching one. uvloop's C code shows as asyncio's ``run`` with nothing below it.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (EVENT_LOOP, ("asyncio/runners.py",)),
    ("stats buckets (api.stats.fill_buckets)", ("api/stats.py",)),
    ("JSON rendering (orjson)", ("api/responses.py", "orjson")),
    ("stats cache (api.stats_cache)", ("api/stats_cache.py",)),
    ("PostgreSQL client (psycopg, pool)", ("psycopg/", "psycopg_pool/")),
    ("token, scope and routes (api/)", ("api/resolve.py", "api/auth.py", "api/routes.py", "api/throttle.py",
                                        "api/params.py", "api/store.py")),
    ("API middleware (metrics, headers, NUL check)", ("api/metrics.py", "api/ui/headers.py", "api/app.py",
                                                      "prometheus_client/")),
    ("HTTP server (uvicorn, httptools, socket writes)", ("uvicorn/", "httptools", "schemas/http_limits.py")),
    ("FastAPI, Starlette, pydantic, anyio", ("fastapi/", "starlette/", "pydantic", "anyio/")),
)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process, or None when it is gone (or not visible here)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the uvicorn supervisor, its workers, the resource tracker)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def database_backends(url: str) -> list[int]:
    """Backend pids connected to the benchmark's database (the API's pools)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchall()
    return [int(r[0]) for r in rows]


@dataclass
class CpuSnapshot:
    api: dict[int, float]
    postgres: dict[int, float]
    client: float


def _times(pids: Iterable[int]) -> dict[int, float]:
    return {pid: t for pid in pids if (t := process_cpu_seconds(pid)) is not None}


class CpuMeter:
    """CPU per request of the API processes, their PostgreSQL backends and this process."""

    def __init__(self, server_pid: int, database_url: str) -> None:
        self.server_pid = server_pid
        self.database_url = database_url

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(_times(descendants(self.server_pid)), _times(database_backends(self.database_url)),
                           time.process_time())

    def per_request_ms(self, before: CpuSnapshot, requests: int) -> dict[str, float | None]:
        after = self.snapshot()
        if not requests:
            return {"api": None, "postgres": None, "client": None}

        def spent(start: dict[int, float], end: dict[int, float]) -> float:
            # A backend born during the phase (the pool grew) counts from zero.
            return sum(t - start.get(pid, 0.0) for pid, t in end.items())

        postgres = spent(before.postgres, after.postgres) if after.postgres else None
        return {"api": round(spent(before.api, after.api) * 1000 / requests, 3),
                "postgres": None if postgres is None else round(postgres * 1000 / requests, 3),
                "client": round((after.client - before.client) * 1000 / requests, 3)}


# --- py-spy -----------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy (pip install -e '.[test]')")
    return found


def start_profile(server_pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling the API processes for ``seconds`` into ``output`` (collapsed stacks)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([py_spy(), "record", "--pid", str(server_pid), "--subprocesses", "--nonblocking",
                             "--rate", "200", "--duration", str(max(1, int(seconds))), "--format", "raw",
                             "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, fragments in STAGES:
            if any(fragment in frame for fragment in fragments):
                return stage
    return "other (process start, multiprocessing)"


def breakdown(collapsed: Iterable[str]) -> dict[str, float]:
    """Share of the samples per stage (fractions adding up to 1), largest first."""
    counts: Counter[str] = Counter()
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {stage: round(n / total, 3) for stage, n in counts.most_common()}


def finish_profile(proc: subprocess.Popen[bytes], output: Path, api_ms: float | None) -> dict[str, object]:
    """Wait for py-spy; the stage shares, and each stage's ms of API CPU per request."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not output.exists():
        return {"error": f"py-spy wrote nothing (exit {proc.returncode}; it needs root or ptrace permission)"}
    shares = breakdown(output.read_text(errors="replace").splitlines())
    result: dict[str, object] = {"samples_file": str(output), "share": shares}
    if api_ms is not None:
        result["api_ms_per_request"] = {stage: round(share * api_ms, 3) for stage, share in shares.items()}
    return result
