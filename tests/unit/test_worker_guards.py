"""The worker's operational guards, without Kafka or PostgreSQL: its health state and
endpoint, the stop deadline, the repeated-error log filter and the pools' capped back-off."""

from __future__ import annotations

import logging
import socket
import threading

import httpx
import pytest

from consumers.health import WorkerHealth, serve
from consumers.logfilter import RepeatedErrorFilter
from consumers.pools import _CappedAttempt
from consumers.shutdown import EXIT_ABANDONED, ShutdownGuard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_worker_is_ready_while_batches_commit_and_not_while_one_is_retried() -> None:
    health = WorkerHealth()
    health.set_agent("checkins", "running")
    health.committed({}, now=100.0)
    assert health.ready() and health.snapshot(now=130.0)["last_commit_age_s"] == 30.0

    health.retry("database unavailable: connection refused", now=140.0)
    state = health.snapshot(now=150.0)
    assert health.live() and not health.ready()
    assert state["retrying"].startswith("database unavailable") and state["retrying_for_s"] == 10.0

    health.recovered()  # the retried batch went through, with nothing left to commit
    assert health.ready()


@pytest.mark.parametrize("change", ["stop", "fail", "agent"])
def test_a_stopping_or_failed_worker_or_a_stopped_agent_is_not_live(change: str) -> None:
    health = WorkerHealth()
    health.set_agent("checkins", "running")
    if change == "stop":
        health.stop("SIGTERM")
    elif change == "fail":
        health.fail("DlqLimitExceeded: 1001 dead letters", dlq_exceeded=True)
    else:
        health.set_agent("checkins", "stopped")
    assert not health.live() and not health.ready()
    assert health.snapshot(now=0)["dlq"]["exceeded"] is (change == "fail")


def test_the_health_dlq_counts_each_project_up_to_its_budget_within_the_window() -> None:
    health = WorkerHealth(dlq_limit=1000, dlq_window_s=60, dlq_project_budget=100)
    health.committed({1: 500, None: 3}, now=0)
    health.committed({2: 7}, now=30)
    dlq = health.snapshot(now=50)["dlq"]
    assert (dlq["dead_letters"], dlq["counted"], dlq["projects_over_budget"]) == (510, 110, ["1"])
    assert health.snapshot(now=61)["dlq"]["dead_letters"] == 7


def test_the_health_endpoint_answers_liveness_readiness_and_metrics() -> None:
    health = WorkerHealth()
    health.set_agent("checkins", "running")
    port = free_port()
    with serve(health, "127.0.0.1", port, clock=lambda: 10.0):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/livez").json() == {"live": True}
        assert httpx.get(f"{base}/readyz").status_code == 200
        health.retry("database unavailable", now=5.0)
        answer = httpx.get(f"{base}/healthz")
        assert answer.status_code == 503 and answer.json()["status"] == "live"
        assert httpx.get(f"{base}/livez").status_code == 200
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and b"# HELP" in metrics.content
        assert httpx.get(f"{base}/nope").status_code == 404


def test_the_stop_deadline_abandons_the_stop_once_it_passes() -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit_process(code: int) -> None:
        exited.append(code)
        done.set()

    stopping = threading.Event()
    guard = ShutdownGuard(0.05, stopping, exit_process=exit_process)
    guard.signalled("SIGTERM")
    assert stopping.is_set()
    assert done.wait(10)
    assert exited == [EXIT_ABANDONED]


def test_a_second_signal_abandons_the_stop_at_once_and_a_finished_stop_never_exits() -> None:
    exited: list[int] = []
    guard = ShutdownGuard(3600, threading.Event(), exit_process=exited.append)
    guard.signalled("SIGTERM")
    assert exited == []
    guard.signalled("SIGINT")
    assert exited == [EXIT_ABANDONED]

    calm: list[int] = []
    finished = ShutdownGuard(0.01, threading.Event(), exit_process=calm.append)
    finished.begin("SIGTERM")
    finished.cancel()
    threading.Event().wait(0.1)
    assert calm == []


def record(msg: str, name: str = "aiokafka.conn", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("127.0.0.1:9092",), None)


def test_a_repeated_connection_error_is_logged_once_per_interval_with_a_count() -> None:
    now = [0.0]
    limiter = RepeatedErrorFilter(interval_s=30, clock=lambda: now[0])
    let_through = []
    for second in range(65):
        now[0] = float(second)
        for _ in range(10):  # ten attempts a second, as during a broker outage
            rec = record("Unable connect to %s")
            if limiter.filter(rec):
                let_through.append((second, rec.getMessage()))
    assert [s for s, _ in let_through] == [0, 30, 60]
    assert let_through[1][1] == "Unable connect to 127.0.0.1:9092 [299 more like this in the last 30s]"


def test_other_errors_and_info_lines_are_never_merged_or_dropped() -> None:
    limiter = RepeatedErrorFilter(interval_s=30, clock=lambda: 0.0)
    assert limiter.filter(record("Unable connect to %s"))
    assert limiter.filter(record("Heartbeat failed for %s"))
    assert limiter.filter(record("Unable connect to %s", name="aiokafka.consumer"))
    assert all(limiter.filter(record("Joined group %s", level=logging.INFO)) for _ in range(5))


def test_a_pools_reconnection_attempts_are_never_further_apart_than_the_cap() -> None:
    attempt = _CappedAttempt(timeout=3600, max_delay_s=2.0)
    delays = []
    for step in range(12):
        attempt.update_delay(now=float(step))
        delays.append(attempt.delay)
    assert max(delays) == 2.0 and delays[0] <= 1.1


def test_the_installed_filter_leaves_one_line_of_a_burst_of_aiokafka_errors_and_every_other_line() -> None:
    import io

    from consumers import logfilter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    installed = logfilter.install(interval_s=30)
    try:
        for _ in range(1300):
            logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 1, "refused")
            logging.getLogger("cronpipe.checkins").warning("batch of %d not committed", 5)
    finally:
        for each in root.handlers:
            each.removeFilter(installed)
        root.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines.count("Unable connect to node with id 1: refused") == 1
    assert lines.count("batch of 5 not committed") == 1300
