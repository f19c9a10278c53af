"""The check-in processor: ``ingest-monitors`` → check-ins, monitors, rollups, errors.

``runner`` (the confluent-kafka reader in the faust worker) → ``batch_process`` (where a
batch runs) → ``batch`` (one batch's pipeline and transaction) → ``processing`` (pure
decisions) → ``store`` (the batch's SQL); ``dlq`` holds dead letters and their limit.
"""
