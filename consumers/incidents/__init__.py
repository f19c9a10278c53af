"""Incidents: ``rules`` (pure failure/recovery thresholds), ``store`` (their rows),
``outbox`` (their events, written in the same transactions) and ``relay`` (outbox → Kafka)."""
