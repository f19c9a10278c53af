-- cronpipe core schema. Times are timestamptz (UTC), durations integer milliseconds.
-- Status columns hold schemas.enums values (CheckInStatus, MonitorStatus).

CREATE TABLE organizations (
    id            bigserial PRIMARY KEY,
    slug          text NOT NULL UNIQUE,
    name          text NOT NULL,
    date_created  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id               bigint PRIMARY KEY,
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    slug             text NOT NULL,
    name             text NOT NULL,
    date_created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug)
);
-- Project ids may be chosen (`project create --id N`, Sentry's example uses project 1);
-- otherwise they come from this sequence.
CREATE SEQUENCE projects_id_seq OWNED BY projects.id;
ALTER TABLE projects ALTER COLUMN id SET DEFAULT nextval('projects_id_seq');

CREATE TABLE project_keys (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES projects (id),
    public_key    text NOT NULL UNIQUE,
    is_active     boolean NOT NULL DEFAULT true,
    date_created  timestamptz NOT NULL DEFAULT now()
);

-- Read-only API tokens; only a SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    id               bigserial PRIMARY KEY,
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    token_hash       bytea NOT NULL UNIQUE,
    token_prefix     text NOT NULL,
    date_created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE monitors (
    id               bigserial PRIMARY KEY,
    guid             uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    project_id       bigint NOT NULL REFERENCES projects (id),
    slug             text NOT NULL,
    name             text NOT NULL,
    status           smallint NOT NULL DEFAULT 0,          -- MonitorStatus: ACTIVE or DISABLED
    config           jsonb NOT NULL,                        -- schemas.monitor_config.config_to_json
    date_created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, slug)
);
CREATE INDEX monitors_org_slug ON monitors (organization_id, slug);

CREATE TABLE monitor_environments (
    id                        bigserial PRIMARY KEY,
    monitor_id                bigint NOT NULL REFERENCES monitors (id),
    environment               text NOT NULL,
    status                    smallint NOT NULL DEFAULT 0,  -- MonitorStatus: ACTIVE, OK, ERROR
    is_muted                  boolean NOT NULL DEFAULT false,
    last_checkin              timestamptz,
    next_checkin              timestamptz,
    next_checkin_latest       timestamptz,
    -- Incident bookkeeping: the current run of consecutive failures / successes.
    failure_run               integer NOT NULL DEFAULT 0,
    failure_run_start_id      bigint,                       -- checkins.id of the run's first failure
    failure_run_start_at      timestamptz,
    ok_run                    integer NOT NULL DEFAULT 0,
    -- Per-environment rate limit, keyed by the message minute.
    rate_minute               timestamptz,
    rate_count                integer NOT NULL DEFAULT 0,
    date_created              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (monitor_id, environment)
);
-- The clock's dispatch query: environments whose deadline has passed.
CREATE INDEX monitor_environments_deadline ON monitor_environments (next_checkin_latest)
    WHERE next_checkin_latest IS NOT NULL;

CREATE TABLE checkins (
    id                      bigserial PRIMARY KEY,
    guid                    uuid NOT NULL UNIQUE,
    project_id              bigint NOT NULL,
    monitor_id              bigint NOT NULL REFERENCES monitors (id),
    monitor_environment_id  bigint NOT NULL REFERENCES monitor_environments (id),
    status                  smallint NOT NULL,              -- CheckInStatus
    date_added              timestamptz NOT NULL,           -- when the job ran (start)
    date_updated            timestamptz NOT NULL,
    date_clock              timestamptz,                    -- message time that wrote it
    expected_time           timestamptz,
    timeout_at              timestamptz,
    duration_ms             integer,
    monitor_config          jsonb,
    trace_id                uuid,
    release                 text
);
CREATE INDEX checkins_env_date ON checkins (monitor_environment_id, date_added DESC);
CREATE INDEX checkins_monitor_date ON checkins (monitor_id, date_added DESC, id DESC);
-- "Latest in-progress" pairing (zero UUID) and the clock's timeout sweep.
CREATE INDEX checkins_in_progress ON checkins (monitor_environment_id, date_added DESC)
    WHERE status = 3;
CREATE INDEX checkins_timeout ON checkins (timeout_at) WHERE status = 3;

-- Job output attached to a check-in. Kept in PostgreSQL (≤ 100 KiB each) so that the
-- bytes commit in the same transaction as the offset that delivered them.
CREATE TABLE checkin_attachments (
    checkin_guid   uuid PRIMARY KEY,
    project_id     bigint NOT NULL,
    monitor_id     bigint NOT NULL REFERENCES monitors (id),
    filename       text NOT NULL,
    content_type   text NOT NULL,
    size           integer NOT NULL,
    data           bytea NOT NULL,
    date_added     timestamptz NOT NULL
);

CREATE TABLE incidents (
    id                      bigserial PRIMARY KEY,
    guid                    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    monitor_id              bigint NOT NULL REFERENCES monitors (id),
    monitor_environment_id  bigint NOT NULL REFERENCES monitor_environments (id),
    starting_checkin_id     bigint,
    starting_timestamp      timestamptz NOT NULL,
    resolving_checkin_id    bigint,
    resolving_timestamp     timestamptz,
    date_added              timestamptz NOT NULL DEFAULT now()
);
-- At most one open incident per monitor environment.
CREATE UNIQUE INDEX incidents_one_open ON incidents (monitor_environment_id)
    WHERE resolving_timestamp IS NULL;

CREATE TABLE processing_errors (
    id               bigserial PRIMARY KEY,
    guid             uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id  bigint,
    project_id       bigint,
    monitor_id       bigint,
    type             smallint NOT NULL,                     -- ProcessingErrorType
    reason           text NOT NULL,
    checkin          jsonb,                                 -- the offending payload, for users
    date_added       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '7 days'
);
CREATE INDEX processing_errors_org ON processing_errors (organization_id, date_added DESC);
CREATE INDEX processing_errors_project ON processing_errors (project_id, date_added DESC);
CREATE INDEX processing_errors_monitor ON processing_errors (monitor_id, date_added DESC);

-- Offsets stored with the data: a batch's effects and its consumed position commit in
-- one transaction, so a redelivered message (offset < next_offset) is skipped.
CREATE TABLE consumer_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Message-time clock: per-partition position (newest committed message timestamp,
-- floored to the minute) and the last tick produced.
CREATE TABLE partition_clocks (
    topic      text NOT NULL,
    partition  integer NOT NULL,
    ts         timestamptz NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE clock_state (
    name       text PRIMARY KEY,
    last_tick  timestamptz NOT NULL
);

-- Materialized stats: per monitor environment and bucket (resolution in seconds:
-- 3600 and 86400), counts per final status and duration sum/count. Updated in the
-- same transaction as the check-in writes; IN_PROGRESS is never counted, its final
-- status is counted when it arrives.
CREATE TABLE checkin_rollups (
    monitor_environment_id  bigint NOT NULL,
    resolution              integer NOT NULL,
    bucket                  timestamptz NOT NULL,
    ok                      integer NOT NULL DEFAULT 0,
    error                   integer NOT NULL DEFAULT 0,
    missed                  integer NOT NULL DEFAULT 0,
    timeout                 integer NOT NULL DEFAULT 0,
    unknown                 integer NOT NULL DEFAULT 0,
    duration_sum_ms         bigint NOT NULL DEFAULT 0,
    duration_count          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (monitor_environment_id, resolution, bucket)
);
