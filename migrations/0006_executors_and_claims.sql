-- Several executors share one run. Each registers here; its heartbeat keeps `heartbeat_at` and
-- its claims alive. What it did is the batches it finished (`replay.executor_work`).
CREATE TABLE replay.executors (
    run_id        UUID NOT NULL REFERENCES replay.runs (id),
    id            UUID NOT NULL,
    -- host:pid, and the boot and PID namespace the pid means something in
    name          TEXT NOT NULL,
    origin        TEXT NOT NULL,
    joined_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    left_at       TIMESTAMPTZ,
    PRIMARY KEY (run_id, id)
);

-- The batches of each batch-wise step, laid out once when the step opens and claimed with
-- FOR UPDATE SKIP LOCKED. A claim lasts until `expires_at` (the claimer's heartbeat extends it);
-- `fence` grows with every claim, and a batch's transaction marks it done only under the fence
-- it claimed it with, so an executor that lost its claim (stalled past it) cannot write.
CREATE TABLE replay.batches (
    run_id      UUID NOT NULL,
    step_id     TEXT NOT NULL,
    from_seq    BIGINT NOT NULL,
    upto_seq    BIGINT NOT NULL,
    claimed_by  UUID,
    fence       BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ,
    -- A publish records here, under the fence, how far its confirms reached inside the batch: a
    -- batch taken over goes on from there (at most a confirm window published again).
    progress    BIGINT,
    done        BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, step_id, from_seq)
) WITH (fillfactor = 70);
CREATE INDEX batches_open ON replay.batches (run_id, step_id, from_seq) WHERE NOT done;
-- An executor's own claims: its heartbeat, its exit and its retries find them without a scan.
CREATE INDEX batches_claimed ON replay.batches (run_id, claimed_by) WHERE NOT done;

-- One rate for the run, whatever the number of executors: the instant from which the next
-- batch may start. A row of its own, so that reserving a slot never waits on the run's row
-- (which the heartbeat and the run's status changes update).
CREATE TABLE replay.pace (
    run_id   UUID PRIMARY KEY,
    next_at  TIMESTAMPTZ NOT NULL
);

-- Each executor with the batches it finished: a finished batch keeps the claim of the executor
-- that finished it, so the counts are derived, never kept.
CREATE VIEW replay.executor_work AS
SELECT e.run_id, e.id, e.name, e.joined_at, e.heartbeat_at, e.left_at,
       count(b.from_seq) AS batches_done,
       coalesce(sum(b.upto_seq - b.from_seq), 0)::bigint AS events_done
FROM replay.executors e
LEFT JOIN replay.batches b ON b.run_id = e.run_id AND b.claimed_by = e.id AND b.done
GROUP BY e.run_id, e.id, e.name, e.joined_at, e.heartbeat_at, e.left_at;
