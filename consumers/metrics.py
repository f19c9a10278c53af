"""Metrics of the consumers, declared once (prometheus_client; scraped if a server runs)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
