"""Incidents: ``rules`` (pure failure/recovery thresholds) and ``store`` (their rows)."""
