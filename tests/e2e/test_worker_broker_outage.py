"""A broker outage does not flood the worker's log (issue #18.5): the real `cronpipe worker`
(all agents) against a throwaway broker of its own (stopped here, never the shared one).
Before the filter a 35 s outage wrote ~1,300 aiokafka ERROR lines; now each kind of
repeated connection error is one line per 30 s, with a count."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from pathlib import Path

from cronpipe.local import kafka
from tests.e2e.gateway_processes import free_port
from tests.e2e.worker_processes import Worker, wait_for

OUTAGE_S = 25.0
_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+?): (.*)$")


def broker_complaints(log: Path, after: int) -> Counter[str]:
    """WARNING+ lines of the Kafka client libraries after byte ``after``, by logger and text
    with the numbers taken out (one kind of error, whatever node or attempt it names)."""
    kinds: Counter[str] = Counter()
    for line in log.read_text(errors="replace")[after:].splitlines():
        match = _LINE.match(line)
        if match and match.group(2).startswith(("aiokafka", "kafka", "faust", "mode")):
            kinds[f"{match.group(2)}: {re.sub(r'[0-9]+', 'N', match.group(3))[:120]}"] += 1
    return kinds


def test_a_broker_outage_writes_one_line_per_kind_of_connection_error_and_interval(
        own_broker: kafka.KafkaLayout, database_url: str, tmp_path: Path) -> None:
    worker = Worker({"CRONPIPE_KAFKA_BOOTSTRAP": own_broker.bootstrap, "CRONPIPE_DATABASE_URL": database_url,
                     "CRONPIPE_TOPIC_PREFIX": f"e2e{uuid.uuid4().hex[:8]}-",
                     "CRONPIPE_WORKER_HEALTH_PORT": str(free_port())},
                    tmp_path / "worker.log", agents="checkins,clock,clock_tasks")
    try:
        wait_for(lambda: (h := worker.health("/livez")) is not None and h.status_code == 200,
                 "the worker to run", 120, alive=worker)
        time.sleep(3)  # past the group joins
        before = len(worker.log.read_text(errors="replace"))
        assert kafka.stop(own_broker)
        time.sleep(OUTAGE_S)
        kafka.start(own_broker)
        time.sleep(5)
        assert worker.process.poll() is None, worker.tail()
        kinds = broker_complaints(worker.log, before)
    finally:
        worker.signal()
        if worker.wait(90) is None:
            worker.kill()
    assert kinds, "the outage left no trace in the log"
    # At most the first line and one summary per 30 s interval of each kind (+1 for the
    # interval boundary); before the filter each kind repeated several times a second.
    assert max(kinds.values()) <= 3, kinds.most_common(5)
