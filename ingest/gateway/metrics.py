"""The gateway's Prometheus metrics, declared once.

With several worker processes ``server.serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
the workers start, and ``/metrics`` of any worker reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Produce → acknowledgement: linger (5 ms) plus the broker's acks=all round trip.
_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One set of metrics on its own registry (tests run several gateways in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter("cronpipe_gateway_accepted", "Messages handed to Kafka and acknowledged, by kind",
                                ["kind"], registry=self.registry)
        self.rejected = Counter("cronpipe_gateway_rejected", "Requests refused, by reason",
                                ["reason"], registry=self.registry)
        self.produce_seconds = Histogram("cronpipe_gateway_produce_seconds",
                                         "Time from queueing a message to Kafka's acknowledgement",
                                         buckets=_PRODUCE_BUCKETS, registry=self.registry)
        self.database_up = Gauge("cronpipe_gateway_database_up",
                                 "1 while PostgreSQL answers key lookups, 0 from a failed lookup until it answers again",
                                 registry=self.registry, multiprocess_mode="livemin")
        self.database_up.set(1)
        self.stale_keys = Counter("cronpipe_gateway_key_stale_answers",
                                  "Requests judged by an expired key answer because PostgreSQL was down",
                                  registry=self.registry)
        self.accepted_check_ins = self.accepted.labels("check_in")
        self.accepted_attachments = self.accepted.labels("check_in_attachment")

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        # prometheus_client's own variable (set by ingest.gateway.server for --workers N).
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
