-- Each snapshotted row's hash when its run ended, so a later rollback can tell rows that changed
-- after the run (someone else's writes) from rows the run itself changed.
ALTER TABLE replay.backup_rows ADD COLUMN after_hash TEXT;
