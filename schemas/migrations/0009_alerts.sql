-- Alerts out (issue 13): the incident outbox (written in the consumers' transactions,
-- drained to `monitors-incidents` by the relay), notification channels, the notifier's
-- delivery state and its delivery log.

-- One row per incident event, inserted in the same transaction as the incident change.
-- `payload` is the event without its `reason` (the relay completes it, see
-- schemas.incident_events). `sent_at` is set only after Kafka acknowledged the event.
CREATE TABLE incident_outbox (
    id                      bigserial PRIMARY KEY,
    event_id                uuid NOT NULL UNIQUE,
    monitor_environment_id  bigint NOT NULL,
    payload                 jsonb NOT NULL,
    date_added              timestamptz NOT NULL DEFAULT now(),
    sent_at                 timestamptz
);
CREATE INDEX incident_outbox_unsent ON incident_outbox (id) WHERE sent_at IS NULL;

-- Notification channels of an organization. `secret` signs webhook bodies
-- (X-Cronpipe-Signature); `routing_key` is PagerDuty's integration key. Neither is ever
-- returned after creation.
CREATE TABLE alert_channels (
    id                    bigserial PRIMARY KEY,
    guid                  uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    organization_id       bigint NOT NULL REFERENCES organizations (id),
    kind                  text NOT NULL CHECK (kind IN ('webhook', 'slack', 'pagerduty')),
    url                   text NOT NULL,
    secret                text NOT NULL,
    routing_key           text,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    is_failing            boolean NOT NULL DEFAULT false,
    date_created          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_channels_org ON alert_channels (organization_id);

-- Events the notifier consumed (one row per event id: duplicates from Kafka collapse).
CREATE TABLE alert_events (
    event_id       uuid PRIMARY KEY,
    payload        jsonb NOT NULL,
    date_received  timestamptz NOT NULL DEFAULT now()
);

-- Delivery state, one row per (event, channel); committed with the consumed offsets.
-- status: pending (due at next_attempt_at), delivered, failed (permanent), expired
-- (retried for the whole retry window), skipped (channel failing).
CREATE TABLE alert_deliveries (
    id               bigserial PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES alert_events (event_id),
    channel_id       bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    date_added       timestamptz NOT NULL DEFAULT now(),
    date_finished    timestamptz,
    UNIQUE (event_id, channel_id)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at, channel_id) WHERE status = 'pending';

-- Every attempt, success or not.
CREATE TABLE alert_delivery_log (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    channel_id   bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    event_id     uuid NOT NULL,
    attempt      integer NOT NULL,
    outcome      text NOT NULL,          -- delivered | retry | failed | expired | skipped | refused
    status_code  integer,
    latency_ms   integer,
    error        text,
    date_added   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_delivery_log_channel ON alert_delivery_log (channel_id, id DESC);
