-- Alerts, the rest of issue 13: per-monitor channel routing and the indexes the pruning of
-- the outbox, the deliveries and the delivery log walks.

-- A monitor routes to every channel of its organization unless `alert_channels_selected`:
-- then only to the channels listed in monitor_alert_channels (possibly none, when every
-- named channel was deleted). Both foreign keys carry the organization, so a monitor can
-- never be routed to another organization's channel, whatever wrote the row.
ALTER TABLE monitors ADD COLUMN alert_channels_selected boolean NOT NULL DEFAULT false;
ALTER TABLE monitors ADD CONSTRAINT monitors_id_organization UNIQUE (id, organization_id);
ALTER TABLE alert_channels ADD CONSTRAINT alert_channels_id_organization UNIQUE (id, organization_id);

CREATE TABLE monitor_alert_channels (
    monitor_id       bigint NOT NULL,
    channel_id       bigint NOT NULL,
    organization_id  bigint NOT NULL,
    PRIMARY KEY (monitor_id, channel_id),
    FOREIGN KEY (monitor_id, organization_id) REFERENCES monitors (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (channel_id, organization_id) REFERENCES alert_channels (id, organization_id) ON DELETE CASCADE
);
CREATE INDEX monitor_alert_channels_channel ON monitor_alert_channels (channel_id);

-- Pruning (consumers/maintenance): sent outbox rows by when they were sent, finished
-- deliveries by when they finished, log rows and consumed events by age. Unsent outbox
-- rows and pending deliveries are in none of the partial indexes: never candidates.
CREATE INDEX incident_outbox_sent ON incident_outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX alert_deliveries_finished ON alert_deliveries (date_finished) WHERE status <> 'pending';
CREATE INDEX alert_delivery_log_added ON alert_delivery_log (date_added);
CREATE INDEX alert_events_received ON alert_events (date_received);

-- The relay waits for this instead of polling (consumers/incidents/relay.py): a
-- transaction that wrote or released outbox rows NOTIFYs `cronpipe_outbox` when it
-- commits (never when it rolls back). Statement-level and without payload, so a batch
-- sends one notification, and PostgreSQL folds repeats within a transaction into one.
-- Cost: a notifying commit takes PostgreSQL's notify-queue lock for its commit, which
-- serializes commits of the few outbox writers (processor batches, clock tasks).
CREATE FUNCTION cronpipe_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cronpipe_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER incident_outbox_notify AFTER INSERT OR UPDATE OF held ON incident_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION cronpipe_outbox_notify();
