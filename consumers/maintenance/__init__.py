"""Partition maintenance and retention: create check-in partitions ahead, drop the
expired ones, trim shorter retentions and old rollups in bounded batches.

:mod:`.plan` decides (pure, time is an argument), :mod:`.store` is the SQL,
:mod:`.run` runs one pass (``cronpipe maintain`` and the worker's task in :mod:`.agent`).
"""
