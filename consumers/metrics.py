"""Metrics of the consumers, declared once (prometheus_client; scraped if a server runs)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

CHECKINS_ACCEPTED = Counter("cronpipe_checkins_accepted_total", "check-ins written or paired")
PROCESSING_ERRORS = Counter("cronpipe_processing_errors_total", "check-ins rejected as processing errors")
DEAD_LETTERS = Counter("cronpipe_dead_letters_total", "messages sent to the DLQ (undecodable, or poison)")
DEAD_LETTERS_OVER_BUDGET = Counter("cronpipe_dead_letters_over_budget_total",
                                   "dead letters of a project past its budget: sent, not counted toward the DLQ limit")
POISON_MESSAGES = Counter("cronpipe_poison_messages_total",
                          "messages whose processing raised an unexpected error, sent to the DLQ and skipped")
BATCH_RETRIES = Counter("cronpipe_batch_retries_total", "batches retried because the database was unavailable")
REDELIVERED = Counter("cronpipe_redelivered_total", "messages skipped because their offset was already stored")
BATCH_SECONDS = Histogram("cronpipe_batch_seconds", "time to process and commit one batch",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram("cronpipe_batch_messages", "messages per batch",
                       buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000))

# The volume-anomaly guard: the decision of the newest dispatched tick, one gauge per
# decision (1 for the current one), and that tick's deviation from its baseline.
VOLUME_DECISION = Gauge("cronpipe_volume_decision", "volume-anomaly guard decision of the newest tick (1 = current)",
                        ["decision"])
VOLUME_PCT_DEVIATION = Gauge("cronpipe_volume_pct_deviation",
                             "check-in volume of the newest evaluated minute against its 30-day baseline, percent")


def observe_decision(decision: Any, pct: float | None = None) -> None:
    for value in ("normal", "abnormal", "incident", "recovering"):
        VOLUME_DECISION.labels(value).set(1 if getattr(decision, "value", decision) == value else 0)
    if pct is not None:
        VOLUME_PCT_DEVIATION.set(pct)
