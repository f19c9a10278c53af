-- Check-in processor: the hot path writes check-ins with COPY, one batch per transaction.
--
-- The two foreign keys of checkins are checked row by row by triggers; measured on the
-- 2-core development machine they make the COPY 4x slower (16-27k rows/s with them,
-- ~90k rows/s without). Every writer of check-ins (the processor, the clock tasks)
-- takes monitor and environment ids from rows it reads and locks in the same
-- transaction, and nothing deletes monitors or environments, so the keys guard nothing
-- that can happen. The indexes stay.
ALTER TABLE checkins DROP CONSTRAINT IF EXISTS checkins_monitor_id_fkey;
ALTER TABLE checkins DROP CONSTRAINT IF EXISTS checkins_monitor_environment_id_fkey;
