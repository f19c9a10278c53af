"""A single-node Apache Kafka (KRaft) broker run from Maven Central jars on the machine's Java.

No Docker engine exists on the build machines, so cronpipe installs the broker itself:
Maven copies ``kafka_2.13`` and its runtime dependencies into a cache folder, the
storage is formatted once with ``kafka.tools.StorageTool`` and ``kafka.Kafka`` runs
as a combined broker+controller on 127.0.0.1.

Kafka 4.1.1 is pinned: 4.x is what current clients target, and 4.0.1+/4.1 restored the
old JoinGroup versions that aiokafka (faust's driver) still uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from cronpipe.local.procs import ServiceError, pid_alive, port_open, read_pid, stop_pid, wait_for_port
from schemas.settings import load

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
HERE = Path(__file__).resolve().parent
log = logging.getLogger("cronpipe.local.kafka")

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Topics are created by the application with their own settings.
auto.create.topics.enable=false
log.retention.hours=24
"""


@dataclass(frozen=True)
class KafkaLayout:
    home: Path
    host: str = "127.0.0.1"
    port: int = 9092

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def libs(self) -> Path:
        return self.home / f"libs-{KAFKA_VERSION}"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def layout_for(state_dir: Path, bootstrap: str) -> KafkaLayout:
    host, _, port = bootstrap.rpartition(":")
    return KafkaLayout(home=state_dir / "kafka", host=host or "127.0.0.1", port=int(port))


def _require_tool(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH: {fix}")
    return path


def install(layout: KafkaLayout) -> None:
    """Copy the broker jars from Maven Central into the cache folder (once)."""
    marker = layout.libs / ".complete"
    if marker.exists():
        return
    _require_tool("java", "install Java 17 (apt-get install -y openjdk-17-jre-headless)")
    mvn = _require_tool("mvn", "install Maven (apt-get install -y maven)")
    layout.home.mkdir(parents=True, exist_ok=True)
    pom = layout.home / "pom.xml"
    pom.write_text(
        (HERE / "kafka-pom.xml").read_text().replace("@KAFKA_VERSION@", KAFKA_VERSION).replace("@LOG4J_VERSION@", LOG4J_VERSION)
    )
    tmp = layout.home / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("fetching Kafka %s jars from Maven Central", KAFKA_VERSION)
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom),
         "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ServiceError("Maven could not fetch the Kafka jars (is Maven Central reachable?): " + " | ".join(tail))
    shutil.rmtree(layout.libs, ignore_errors=True)
    tmp.rename(layout.libs)
    marker.touch()


def _java(layout: KafkaLayout, *args: str, heap: bool = False) -> list[str]:
    cmd = ["java"]
    if heap:
        max_heap = load().kafka_heap
        cmd += ["-Xms256m", f"-Xmx{max_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    cmd += [f"-Dlog4j2.configurationFile=file:{HERE / 'kafka-log4j2.properties'}", "-cp", f"{layout.libs}/*", *args]
    return cmd


def format_storage(layout: KafkaLayout) -> None:
    """Write server.properties and format KRaft storage once; a formatted folder is kept."""
    layout.data.mkdir(parents=True, exist_ok=True)
    layout.properties.write_text(
        SERVER_PROPERTIES.format(host=layout.host, port=layout.port, controller_port=layout.controller_port, data=layout.data)
    )
    if (layout.data / "meta.properties").exists():
        return
    cluster_id = _kraft_cluster_id()
    result = subprocess.run(
        _java(layout, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(layout.properties)),
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka storage in {layout.data} failed: {result.stderr.strip()[-400:]}")


def _kraft_cluster_id() -> str:
    # StorageTool wants a base64url-encoded UUID without padding (22 chars).
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def is_running(layout: KafkaLayout) -> bool:
    return pid_alive(read_pid(layout.pid_file)) and port_open(layout.host, layout.port)


def start(layout: KafkaLayout, timeout_s: float = 90.0) -> str:
    """Start the broker unless the one we started is already up; return the bootstrap address.

    Raises ServiceError when a port is taken by something else or the broker does not come up.
    """
    if is_running(layout):
        return layout.bootstrap
    for port in (layout.port, layout.controller_port):
        if port_open(layout.host, port):
            raise ServiceError(
                f"port {port} on {layout.host} is in use by a process cronpipe did not start: "
                f"stop it, or point CRONPIPE_KAFKA_BOOTSTRAP at a running broker"
            )
    install(layout)
    format_storage(layout)
    log_fh = open(layout.log_file, "ab")
    proc = subprocess.Popen(
        _java(layout, "kafka.Kafka", str(layout.properties), heap=True),
        stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "KAFKA_HEAP_OPTS": ""},
    )
    layout.pid_file.write_text(str(proc.pid))
    if not wait_for_port(layout.host, layout.port, timeout_s, alive=lambda: proc.poll() is None):
        stop_pid(layout.pid_file, "kafka")
        tail = layout.log_file.read_text(errors="replace").strip().splitlines()[-5:]
        raise ServiceError(f"Kafka did not start (log {layout.log_file}): " + " | ".join(tail))
    return layout.bootstrap


def stop(layout: KafkaLayout) -> bool:
    """Stop the broker this project started (by its pid file); never touches other processes."""
    return stop_pid(layout.pid_file, "kafka", timeout_s=60.0)
