-- An attachment belongs to one monitor's check-in (issue #10.2). Keyed by the check-in id
-- alone, an upload naming another tenant's check-in id replaced that tenant's file, and an
-- upload made first made the real owner's file unreachable. The processor now rejects an
-- upload whose check-in belongs to another monitor; an upload made before its check-in
-- exists is kept under the uploading monitor only, where no other monitor can reach it.
ALTER TABLE checkin_attachments DROP CONSTRAINT checkin_attachments_pkey;
ALTER TABLE checkin_attachments ADD PRIMARY KEY (monitor_id, checkin_guid);

-- Retention and the monitor purge delete attachments by check-in guid alone.
CREATE INDEX checkin_attachments_guid ON checkin_attachments (checkin_guid);
