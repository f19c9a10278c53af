"""A private PostgreSQL cluster from Debian's packages, in a data folder cronpipe owns.

Used only when ``CRONPIPE_DATABASE_URL`` is not set. PostgreSQL refuses to run as root,
so when we are root the cluster belongs to Debian's ``postgres`` system user.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cronpipe.local.procs import ServiceError, port_open

log = logging.getLogger("cronpipe.local.postgres")

# Development settings: durable (fsync stays on, the crash tests rely on it), sized
# for a 2-core, 24 GiB machine running Kafka beside it.
CONF = """\
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
shared_buffers = 512MB
work_mem = 16MB
maintenance_work_mem = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = on
log_min_duration_statement = 2000
"""


@dataclass(frozen=True)
class PostgresLayout:
    home: Path
    port: int

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://cronpipe@127.0.0.1:{self.port}/cronpipe"


def layout_for(state_dir: Path, port: int) -> PostgresLayout:
    return PostgresLayout(home=state_dir / "postgres", port=port)


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def install() -> Path:
    """Return the PostgreSQL bin folder, installing Debian's ``postgresql`` when it is missing."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise ServiceError("PostgreSQL is not installed: run `sudo apt-get install -y postgresql`, or set CRONPIPE_DATABASE_URL")
    log.info("installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ServiceError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-300:]}")
    bindir = find_bindir()
    if bindir is None:
        raise ServiceError("apt-get installed postgresql but pg_ctl was not found under /usr/lib/postgresql")
    return bindir


def _run_as() -> list[str]:
    """Command prefix that runs PostgreSQL tools as a non-root user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--home-dir", "/var/lib/postgresql", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


def _owner_is_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam("postgres")
    for p in [path, *[q for q in path.rglob("*")]] if path.exists() else []:
        os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    # The postgres user must be able to reach the data folder; a checkout in a private
    # temp folder (mode 0700) would otherwise hide it. Grant traversal (x) only.
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def _pg(bindir: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_run_as(), str(bindir / tool), *args], capture_output=True, text=True)


def init_cluster(layout: PostgresLayout, bindir: Path) -> None:
    if (layout.data / "PG_VERSION").exists():
        return
    layout.home.mkdir(parents=True, exist_ok=True)
    _owner_is_postgres(layout.home)
    result = _pg(bindir, "initdb", "-D", str(layout.data), "-U", "cronpipe", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
    if result.returncode != 0:
        raise ServiceError(f"initdb failed in {layout.data}: {result.stderr.strip()[-400:]}")
    with open(layout.data / "postgresql.conf", "a") as fh:
        fh.write(CONF.format(port=layout.port, socket_dir=layout.home))
    _owner_is_postgres(layout.home)


def is_running(layout: PostgresLayout) -> bool:
    return (layout.data / "postmaster.pid").exists() and port_open("127.0.0.1", layout.port)


def start(layout: PostgresLayout) -> str:
    """Start the private cluster (idempotent) and make sure database ``cronpipe`` exists; return its URL."""
    bindir = install()
    if not is_running(layout):
        if port_open("127.0.0.1", layout.port):
            raise ServiceError(
                f"port {layout.port} is in use by a process cronpipe did not start: "
                "free it, set CRONPIPE_PG_PORT to another port, or set CRONPIPE_DATABASE_URL"
            )
        init_cluster(layout, bindir)
        _owner_is_postgres(layout.home)
        result = _pg(bindir, "pg_ctl", "-D", str(layout.data), "-l", str(layout.log_file), "-w", "-t", "60", "start")
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start (log {layout.log_file}): {result.stderr.strip()[-300:]}")
    _create_database(layout)
    return layout.url


def _create_database(layout: PostgresLayout) -> None:
    admin = f"postgresql://cronpipe@127.0.0.1:{layout.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'cronpipe'").fetchone() is None:
            conn.execute("CREATE DATABASE cronpipe")


def stop(layout: PostgresLayout, mode: str = "fast") -> bool:
    """``mode`` is pg_ctl's: ``fast`` (the default) or ``immediate`` (a crash, for fault tests)."""
    if not (layout.data / "postmaster.pid").exists():
        return False
    bindir = find_bindir()
    if bindir is None:
        return False
    result = _pg(bindir, "pg_ctl", "-D", str(layout.data), "-m", mode, "-w", "stop")
    if result.returncode != 0:
        log.warning("pg_ctl stop failed (exit %d): %s", result.returncode, (result.stdout + result.stderr).strip()[-400:])
    return result.returncode == 0


def check_url(url: str) -> None:
    """Raise ServiceError naming the problem when ``url`` cannot be reached."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"cannot reach PostgreSQL at {_redact(url)}: {first}; check CRONPIPE_DATABASE_URL") from None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
