-- Monitor management through the API (issue 12).
-- monitors.is_muted: muted as a whole; new environments of a muted monitor start muted
-- (the API's isMuted is "every environment muted", or this flag when there are none).
-- monitors.is_upserting: the last config came from a check-in ("managed in code"), false
-- once the API wrote it. pending_deletion: deleted through the API; the slug (or the
-- environment name) was renamed at once so it is free, and the rows go in bounded
-- batches driven by monitor_deletions (api/deletions.py).
ALTER TABLE monitors
    ADD COLUMN is_muted boolean NOT NULL DEFAULT false,
    ADD COLUMN is_upserting boolean NOT NULL DEFAULT true,
    ADD COLUMN pending_deletion boolean NOT NULL DEFAULT false;
ALTER TABLE monitor_environments
    ADD COLUMN pending_deletion boolean NOT NULL DEFAULT false;

CREATE TABLE monitor_deletions (
    id              bigserial PRIMARY KEY,
    monitor_id      bigint NOT NULL,
    -- NULL: the whole monitor; otherwise only this environment.
    environment_id  bigint,
    requested_at    timestamptz NOT NULL DEFAULT now()
);
