"""The check-in processor: ``ingest-monitors`` → check-ins, monitors, rollups, errors.

``runner`` (the faust agent and one batch's pipeline) → ``processing`` (pure decisions)
→ ``store`` (the batch's SQL); ``dlq`` holds dead letters and their limit.
"""
