-- The executor's own state, in its own schema of the target database.
CREATE SCHEMA IF NOT EXISTS replay;

-- One row per run of a plan (dry-runs are not recorded here).
CREATE TABLE replay.runs (
    id              UUID PRIMARY KEY,
    plan_name       TEXT NOT NULL,
    plan_hash       TEXT NOT NULL,
    params_hash     TEXT NOT NULL,
    params          JSONB NOT NULL,
    plan_document   JSONB NOT NULL,
    operator        TEXT NOT NULL,
    reason          TEXT NOT NULL,
    -- running | succeeded | failed | rolled_back | interrupted | stopped | abandoned
    status          TEXT NOT NULL,
    selected_count  BIGINT,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    error           TEXT,
    stop_requested  BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX runs_by_plan ON replay.runs (plan_name, started_at DESC);

-- Progress of each step of a run; `checkpoint` is the last selection `seq` done.
CREATE TABLE replay.step_runs (
    run_id       UUID NOT NULL REFERENCES replay.runs (id),
    step_id      TEXT NOT NULL,
    ordinal      INT NOT NULL,
    kind         TEXT NOT NULL,
    -- pending | running | done | failed
    status       TEXT NOT NULL DEFAULT 'pending',
    checkpoint   BIGINT NOT NULL DEFAULT 0,
    touched      BIGINT NOT NULL DEFAULT 0,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    error        TEXT,
    PRIMARY KEY (run_id, step_id)
);

-- The selection, frozen when the run starts; steps page through it by `seq`.
CREATE TABLE replay.selection (
    run_id      UUID NOT NULL REFERENCES replay.runs (id),
    seq         BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     JSONB,
    PRIMARY KEY (run_id, seq)
);

-- Values of `equals_before` verifications, captured before the first step.
CREATE TABLE replay.before_values (
    run_id  UUID NOT NULL REFERENCES replay.runs (id),
    name    TEXT NOT NULL,
    value   JSONB,
    PRIMARY KEY (run_id, name)
);

-- Backups: one row per snapshotted table, and the rows themselves.
CREATE TABLE replay.backups (
    run_id      UUID NOT NULL REFERENCES replay.runs (id),
    table_name  TEXT NOT NULL,
    key_column  TEXT NOT NULL,
    row_count   BIGINT NOT NULL,
    checksum    TEXT NOT NULL,
    dump_file   TEXT,
    taken_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, table_name)
);
CREATE TABLE replay.backup_rows (
    run_id      UUID NOT NULL,
    table_name  TEXT NOT NULL,
    key         TEXT NOT NULL,
    row_data    JSONB NOT NULL,
    PRIMARY KEY (run_id, table_name, key)
);

-- What happened during a run, in order.
CREATE TABLE replay.run_log (
    id       BIGSERIAL PRIMARY KEY,
    run_id   UUID NOT NULL REFERENCES replay.runs (id),
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind     TEXT NOT NULL,
    step_id  TEXT,
    detail   JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX run_log_by_run ON replay.run_log (run_id, id);

-- Verification results of a run.
CREATE TABLE replay.verifications (
    run_id    UUID NOT NULL REFERENCES replay.runs (id),
    ordinal   INT NOT NULL,
    name      TEXT NOT NULL,
    passed    BOOLEAN NOT NULL,
    actual    JSONB,
    expected  JSONB,
    PRIMARY KEY (run_id, ordinal)
);
