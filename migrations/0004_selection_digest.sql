-- The selection's digest is computed once, by the statement that freezes it, and kept with its
-- size: a resume reads it instead of hashing the whole selection again.
ALTER TABLE replay.runs ADD COLUMN selection_digest TEXT;

-- The freeze writes the selection in a transaction that proves (FOR SHARE) this executor's lease
-- on the run, so the run exists; runs are never deleted. The per-row foreign-key trigger cost
-- more than a third of the freeze (406 ms of 1,090 ms for 100,000 events).
ALTER TABLE replay.selection DROP CONSTRAINT IF EXISTS selection_run_id_fkey;
