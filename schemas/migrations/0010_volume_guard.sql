-- The volume-anomaly guard (issue 14, Sentry's system incidents): accepted check-ins per
-- message minute, the clock's decision per tick, and notifications held while a tick's
-- decision is pending (abnormal or recovering).

-- Written by the check-in processor in each batch's transaction (one upsert per batch).
-- Kept 30 days (the baseline is the same minute of day on the previous 30 days).
CREATE TABLE checkin_volume (
    minute  timestamptz PRIMARY KEY,
    count   bigint NOT NULL DEFAULT 0
);

-- One row per tick, written by the tick's dispatch before it sends any task.
-- `metric` is what minute tick-1 looked like (normal|abnormal|incident, or NULL with too
-- little history); `decision` is normal|abnormal|incident|recovering; `resolved` is set
-- on a pending tick (abnormal, recovering) when a later tick decides what it was
-- (normal: its held notifications were released; incident: it was back-dated).
CREATE TABLE clock_volume_decisions (
    tick           timestamptz PRIMARY KEY,
    metric         text,
    pct_deviation  double precision,
    decision       text NOT NULL CHECK (decision IN ('normal', 'abnormal', 'incident', 'recovering')),
    resolved       text CHECK (resolved IN ('normal', 'incident')),
    date_added     timestamptz NOT NULL DEFAULT now()
);

-- Synthetic failures (MISSED, TIMEOUT) written during a pending tick, so that the tick's
-- resolution can release or undo them.
CREATE TABLE clock_volume_held (
    tick                    timestamptz NOT NULL,
    checkin_id              bigint NOT NULL,
    monitor_environment_id  bigint NOT NULL,
    PRIMARY KEY (tick, checkin_id)
);

-- Outbox rows caused by a pending tick's synthetic failure: `held` until the tick resolves
-- (the relay skips them); released (held = false) on normal, deleted on incident.
ALTER TABLE incident_outbox ADD COLUMN tick timestamptz;
ALTER TABLE incident_outbox ADD COLUMN held boolean NOT NULL DEFAULT false;
CREATE INDEX incident_outbox_held ON incident_outbox (tick) WHERE held;
