"""The message-time clock: ticks from partition positions, their dispatch, the tasks.

``ticks`` (positions → one tick per minute), ``dispatch`` (a tick → the tasks it makes
due), ``tasks`` (MISSED / TIMEOUT applied in batches), ``store`` (their SQL).
"""
