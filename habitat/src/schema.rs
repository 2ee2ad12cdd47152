//! The Habitat tables (`processed_events` and the domain tables its handlers write), created idempotently.

use sqlx::PgPool;

/// The tables of the Habitat world, in the order [`reset`] and the generator list them.
pub const TABLES: [&str; 6] = [
    "processed_events",
    "contributions",
    "allocation_periods",
    "allocations",
    "payments",
    "audit_log",
];

/// Column names follow the runbook's queries exactly, because replay plans are written
/// against them. No foreign keys: Habitat's handlers run out of order during replays, and
/// the runbook's own recovery steps delete and re-insert rows independently.
const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS processed_events (
    id            BIGSERIAL PRIMARY KEY,
    event_type    TEXT NOT NULL,
    event_id      TEXT NOT NULL UNIQUE,
    payload       JSONB NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'processed', 'error')),
    retry_count   INT NOT NULL DEFAULT 0,
    error_message TEXT,
    processed_at  TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS contributions (
    id         UUID PRIMARY KEY,
    member_id  UUID,
    period_id  UUID,
    type       TEXT,
    amount     NUMERIC,
    status     TEXT,
    created_at TIMESTAMPTZ
);
-- "Replay allocations for member" filters on both.
CREATE INDEX IF NOT EXISTS contributions_member_period_idx
    ON contributions (member_id, period_id);

CREATE TABLE IF NOT EXISTS allocation_periods (
    id         UUID PRIMARY KEY,
    status     TEXT CHECK (status IN ('open', 'closed')),
    start_date DATE,
    end_date   DATE,
    closed_at  TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS allocations (
    id         UUID PRIMARY KEY,
    period_id  UUID,
    member_id  UUID,
    amount     NUMERIC,
    status     TEXT,
    created_at TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS allocations_period_member_idx
    ON allocations (period_id, member_id);

CREATE TABLE IF NOT EXISTS payments (
    id            UUID PRIMARY KEY,
    allocation_id UUID,
    amount        NUMERIC,
    status        TEXT,
    created_at    TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE IF NOT EXISTS audit_log (
    id           BIGSERIAL PRIMARY KEY,
    action       TEXT,
    details      TEXT,
    performed_by TEXT,
    created_at   TIMESTAMPTZ DEFAULT now()
);
"#;

/// Secondary indexes of `processed_events`, kept apart so the generator can build them after
/// its bulk load.
pub(crate) const EVENT_INDEXES: &str = r#"
-- "Find failed events in the last 24 hours" and the stuck-event reset filter on both.
CREATE INDEX IF NOT EXISTS processed_events_status_processed_at_idx
    ON processed_events (status, processed_at);
-- Date-range replays select one event type at a time.
CREATE INDEX IF NOT EXISTS processed_events_event_type_idx
    ON processed_events (event_type);
-- The worker polls `pending` rows in id order; without this every poll sorts all of them.
CREATE INDEX IF NOT EXISTS processed_events_pending_idx
    ON processed_events (id) WHERE status = 'pending';
"#;

/// Drops what [`EVENT_INDEXES`] creates.
pub(crate) const DROP_EVENT_INDEXES: &str = "DROP INDEX IF EXISTS \
     processed_events_status_processed_at_idx, processed_events_event_type_idx, \
     processed_events_pending_idx";

/// Creates the Habitat tables and indexes in the `public` schema; safe to call repeatedly.
pub async fn apply(pool: &PgPool) -> Result<(), sqlx::Error> {
    // Concurrent `CREATE ... IF NOT EXISTS` can still race on the catalog, so callers that
    // start several workers at once serialise here.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('replay.habitat.schema'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(DDL).execute(&mut *tx).await?;
    sqlx::raw_sql(EVENT_INDEXES).execute(&mut *tx).await?;
    tx.commit().await
}

/// Empties every Habitat table and restarts its id sequences, so a generator run after it
/// reproduces the same `id`s.
pub async fn reset(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(TRUNCATE).execute(pool).await?;
    Ok(())
}

/// Empties every table of [`TABLES`] and restarts its id sequences.
pub(crate) const TRUNCATE: &str = "TRUNCATE processed_events, contributions, allocation_periods, \
     allocations, payments, audit_log RESTART IDENTITY";
