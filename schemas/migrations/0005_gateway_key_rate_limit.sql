-- Per-key rate limit of the HTTP ingest gateway, as Sentry's ProjectKey.rate_limit_count /
-- rate_limit_window: at most `count` requests per `window` seconds per public key.
-- NULL means the gateway's default (CRONPIPE_GATEWAY_RATE_LIMIT, off unless set).
ALTER TABLE project_keys
    ADD COLUMN rate_limit_count  integer CHECK (rate_limit_count > 0),
    ADD COLUMN rate_limit_window integer CHECK (rate_limit_window > 0),
    ADD CONSTRAINT project_keys_rate_limit_both
        CHECK ((rate_limit_count IS NULL) = (rate_limit_window IS NULL));
