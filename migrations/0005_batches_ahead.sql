-- A step whose batches commit side by side (a reset with `parallel_batches` above 1) can commit
-- a later batch before an earlier one. `checkpoint` stays the selection `seq` below which every
-- batch is done; `ahead` lists the batches done beyond it, as flattened `[from, upto, …]` pairs,
-- so that a resume skips them instead of doing them twice.
ALTER TABLE replay.step_runs ADD COLUMN ahead BIGINT[] NOT NULL DEFAULT '{}';
