"""The faust worker's consumers, one package per stream.

* ``checkins/`` — ``ingest-monitors`` → check-ins (pure rules, store, runner, DLQ).
* ``clock/`` — partition positions → ticks → tasks → MISSED/TIMEOUT.
* ``incidents/`` — incident thresholds and their rows, used by both of the above.

Shared by all of them, at this level: ``database`` (the psycopg boundary and the stored
offsets), ``metrics``, ``context`` (what every agent shares), ``app`` and ``worker``.
"""
