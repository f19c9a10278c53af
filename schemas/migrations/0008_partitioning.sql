-- Retention and time partitioning (issue 15).
--
-- checkins becomes a table partitioned by RANGE (date_added), one partition per UTC day
-- named checkins_pYYYYMMDD. A day is the unit retention works in ("within one day"):
-- a partition whose rows have all expired is detached (CONCURRENTLY) and dropped by
-- `cronpipe maintain`; rows of a shorter retention in a partition that stays are deleted
-- in bounded batches. There is no default partition: PostgreSQL refuses DETACH
-- CONCURRENTLY while one exists. A row for a day without a partition gets one on demand
-- (cronpipe_ensure_checkins_partitions, called by every writer before it inserts).
--
-- PostgreSQL requires the partition key in every unique index, so the guid's uniqueness
-- lives in checkin_guids (not partitioned): one row per check-in, written by a
-- statement-level trigger for every INSERT or COPY into checkins, whoever writes. It is
-- also the guid lookup: guid -> (id, date_added) -> one partition by its primary key.
--
-- This migration rewrites checkins once, in one transaction, under the migration
-- advisory lock: a second runner waits for it, then finds nothing to do. While it runs,
-- checkins is locked (ACCESS EXCLUSIVE): ingestion and the API wait. BENCHMARKS.md
-- gives the time per million rows.

ALTER TABLE checkins RENAME TO checkins_unpartitioned;
ALTER INDEX checkins_pkey RENAME TO checkins_unpartitioned_pkey;
ALTER INDEX checkins_guid_key RENAME TO checkins_unpartitioned_guid_key;
DROP INDEX checkins_env_date, checkins_monitor_date, checkins_in_progress, checkins_timeout, checkins_timeout_id;

CREATE TABLE checkins (
    id                      bigint NOT NULL DEFAULT nextval('checkins_id_seq'),
    guid                    uuid NOT NULL,
    project_id              bigint NOT NULL,
    monitor_id              bigint NOT NULL,
    monitor_environment_id  bigint NOT NULL,
    status                  smallint NOT NULL,              -- CheckInStatus
    date_added              timestamptz NOT NULL,           -- when the job ran (start): the partition key
    date_updated            timestamptz NOT NULL,
    date_clock              timestamptz,
    expected_time           timestamptz,
    timeout_at              timestamptz,
    duration_ms             integer,
    monitor_config          jsonb,
    trace_id                uuid,
    release                 text,
    -- Days the check-in is kept after the day it ran (the message's retention_days, or
    -- CRONPIPE_RETENTION_DAYS_DEFAULT when the producer sent none).
    retention_days          integer NOT NULL DEFAULT 90 CHECK (retention_days > 0),
    PRIMARY KEY (id, date_added)
) PARTITION BY RANGE (date_added);
ALTER SEQUENCE checkins_id_seq OWNED BY checkins.id;

-- Global uniqueness of the check-in guid, and the guid lookup.
CREATE TABLE checkin_guids (
    guid        uuid PRIMARY KEY,
    checkin_id  bigint NOT NULL,
    date_added  timestamptz NOT NULL
);

-- A dropped day's guid rows are deleted by date_added range, in batches.
CREATE INDEX checkin_guids_date ON checkin_guids (date_added);

-- Which retentions each day's partition holds, maintained by the same trigger: the
-- maintenance reads the longest one to know when a partition may be dropped, and the
-- shorter ones to know when a batch delete is due, without scanning the partition.
CREATE TABLE checkin_retention_days (
    day             date NOT NULL,
    retention_days  integer NOT NULL,
    PRIMARY KEY (day, retention_days)
);

CREATE FUNCTION cronpipe_checkins_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO checkin_guids (guid, checkin_id, date_added)
    SELECT guid, id, date_added FROM inserted;
    INSERT INTO checkin_retention_days (day, retention_days)
    SELECT DISTINCT (date_added AT TIME ZONE 'UTC')::date, retention_days FROM inserted
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- The day partition's name; days are UTC.
CREATE FUNCTION cronpipe_checkins_partition_name(day date) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'checkins_p' || to_char(day, 'YYYYMMDD')
$$;

-- Create (and attach) the partitions of ``days`` that do not exist; returns how many it
-- created. Safe to call from any transaction and from concurrent writers: creation is
-- serialized by an advisory lock, existence is checked again under it. CREATE TABLE
-- ... PARTITION OF would lock the whole table (ACCESS EXCLUSIVE); a table attached with
-- ATTACH PARTITION only takes SHARE UPDATE EXCLUSIVE, which ingestion and reads pass.
-- A table of that name that exists but is not attached is a partition being dropped by
-- the maintenance: that is an error the caller retries (the drop finishes in seconds).
CREATE FUNCTION cronpipe_ensure_checkins_partitions(days date[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d        date;
    part     text;
    created  integer := 0;
    locked   boolean := false;
BEGIN
    FOR d IN SELECT DISTINCT x FROM unnest(days) AS x WHERE x IS NOT NULL ORDER BY 1 LOOP
        part := cronpipe_checkins_partition_name(d);
        IF cronpipe_checkins_partition_attached(part) THEN
            CONTINUE;
        END IF;
        IF NOT locked THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('cronpipe:checkins-partitions', 0));
            locked := true;
            IF cronpipe_checkins_partition_attached(part) THEN
                CONTINUE;
            END IF;
        END IF;
        IF to_regclass(format('public.%I', part)) IS NOT NULL THEN
            RAISE EXCEPTION 'partition % of checkins is being dropped; retry', part
                USING ERRCODE = 'lock_not_available';
        END IF;
        EXECUTE format('CREATE TABLE public.%I (LIKE checkins INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                       ' INCLUDING STORAGE INCLUDING COMPRESSION)', part);
        EXECUTE format('ALTER TABLE checkins ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                       part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

CREATE FUNCTION cronpipe_checkins_partition_attached(part text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_inherits i
                    WHERE i.inhparent = 'public.checkins'::regclass
                      AND i.inhrelid = to_regclass(format('public.%I', part))
                      AND NOT i.inhdetachpending)
$$;

-- Move the existing rows: one partition per day that has any, then the rows, then the
-- indexes (built once per partition, faster than maintaining them row by row).
SELECT cronpipe_ensure_checkins_partitions(ARRAY(
    SELECT DISTINCT (date_added AT TIME ZONE 'UTC')::date FROM checkins_unpartitioned));
SELECT cronpipe_ensure_checkins_partitions(ARRAY(
    SELECT (now() AT TIME ZONE 'UTC')::date + n FROM generate_series(-1, 7) AS n));

INSERT INTO checkins (id, guid, project_id, monitor_id, monitor_environment_id, status, date_added,
                      date_updated, date_clock, expected_time, timeout_at, duration_ms, monitor_config,
                      trace_id, release)
SELECT id, guid, project_id, monitor_id, monitor_environment_id, status, date_added, date_updated,
       date_clock, expected_time, timeout_at, duration_ms, monitor_config, trace_id, release
  FROM checkins_unpartitioned;

INSERT INTO checkin_guids (guid, checkin_id, date_added) SELECT guid, id, date_added FROM checkins;
INSERT INTO checkin_retention_days (day, retention_days)
SELECT DISTINCT (date_added AT TIME ZONE 'UTC')::date, retention_days FROM checkins;

DROP TABLE checkins_unpartitioned;

CREATE INDEX checkins_env_date ON checkins (monitor_environment_id, date_added DESC);
CREATE INDEX checkins_monitor_date ON checkins (monitor_id, date_added DESC, id DESC);
-- "Latest in-progress" pairing (zero UUID) and the clock's timeout sweep.
CREATE INDEX checkins_in_progress ON checkins (monitor_environment_id, date_added DESC) WHERE status = 3;
CREATE INDEX checkins_timeout_id ON checkins (timeout_at, id) WHERE status = 3;

-- After the bulk copy: the copy itself wrote checkin_guids and checkin_retention_days above.
CREATE TRIGGER checkins_inserted AFTER INSERT ON checkins REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION cronpipe_checkins_inserted();

-- Hourly rollups are pruned in bounded batches once older than
-- CRONPIPE_ROLLUP_HOURLY_RETENTION_DAYS, daily ones after CRONPIPE_ROLLUP_DAILY_RETENTION_DAYS.
CREATE INDEX checkin_rollups_age ON checkin_rollups (resolution, bucket);

-- Attachments go with their check-in (by guid); one whose check-in never arrived is
-- pruned by age.
CREATE INDEX checkin_attachments_age ON checkin_attachments (date_added);
