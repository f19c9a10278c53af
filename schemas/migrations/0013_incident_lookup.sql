-- The incident an outbox event belongs to (consumers/incidents/outbox.py: the
-- environment's newest incident that started at or before the causing check-in) was
-- found by a sequential scan of all incidents, once per event: every batch cost grew
-- with the incidents ever opened (BENCHMARKS.md, "the outbox regression": 1,656
-- messages/s instead of ~5,000 after 20,000 incidents). This index answers it with one
-- probe; the API's incident listings of one environment use it too.
CREATE INDEX incidents_env_start ON incidents (monitor_environment_id, starting_timestamp DESC, id DESC);
