-- The clock's own bookkeeping (issue 4).

-- Ticks won by compare-and-set on clock_state but not yet confirmed produced to
-- monitors-clock-tick. The winner inserts them in the CAS transaction, produces, then
-- deletes them; a row left behind (the producer crashed between CAS and produce) is
-- reclaimed once its claim is older than a lease and produced again, so no tick is lost.
CREATE TABLE clock_pending_ticks (
    name        text NOT NULL,            -- clock_state.name
    ts          timestamptz NOT NULL,
    claimed_at  timestamptz NOT NULL,     -- wall time of the last claim (a lease, not the clock)
    PRIMARY KEY (name, ts)
);

-- Where a bounded dispatch stopped: the next tick continues after (after_ts, after_id)
-- instead of re-sending tasks that are still in flight. NULL after_ts = start over.
CREATE TABLE clock_dispatch_cursors (
    consumer_group  text NOT NULL,
    kind            text NOT NULL,        -- 'missing' (next_checkin_latest, env id) or 'timeout' (timeout_at, check-in id)
    after_ts        timestamptz,
    after_id        bigint,
    PRIMARY KEY (consumer_group, kind)
);

-- Dispatch's missed sweep orders by (next_checkin_latest, id) for keyset pagination.
CREATE INDEX monitor_environments_deadline_id ON monitor_environments (next_checkin_latest, id)
    WHERE next_checkin_latest IS NOT NULL;
CREATE INDEX checkins_timeout_id ON checkins (timeout_at, id) WHERE status = 3;
