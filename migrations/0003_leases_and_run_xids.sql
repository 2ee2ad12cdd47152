-- Leases instead of a session advisory lock (which a transaction-pooling PgBouncer cannot hold):
-- an executor owns a run while its lease is live, renews it with a heartbeat, and every
-- checkpoint proves its fencing token in the batch's own transaction.
ALTER TABLE replay.runs
    ADD COLUMN lease_owner      TEXT,
    ADD COLUMN lease_token      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_expires_at TIMESTAMPTZ,
    -- Boot and PID namespace of the holder: only a holder of the same boot and namespace can be
    -- seen to have died through its pid (containers may share a hostname).
    ADD COLUMN lease_origin     TEXT;

-- The transaction ids of a run's committed batches. A row whose `xmin` is one of them is still as
-- the run left it; any other changed row was written since (by the worker, by anyone) and a
-- rollback keeps it.
CREATE TABLE replay.run_xids (
    run_id  UUID NOT NULL REFERENCES replay.runs (id),
    xid     BIGINT NOT NULL,
    PRIMARY KEY (run_id, xid)
);

-- Superseded by run_xids: a row's hash at the end of the run could not tell the worker's writes
-- during the run from the run's own.
ALTER TABLE replay.backup_rows DROP COLUMN after_hash;

-- When each selected event was processed, so that reports summarise the selection by day without
-- joining the events table again.
ALTER TABLE replay.selection ADD COLUMN processed_at TIMESTAMPTZ;
