-- The volume guard's undo recounts failure runs exactly (issue 14): each held synthetic
-- failure remembers the failure run it was counted in, as the run's first check-in
-- (monitor_environments.failure_run_start_id right after it was applied). NULL: it was not
-- counted (a TIMEOUT after a newer finished run, which never fails the environment).
ALTER TABLE clock_volume_held ADD COLUMN run_start_id bigint;
