//! Where a run's writes go: committed batch by batch, or (dry-run) rehearsed inside a transaction
//! that is rolled back at the end. The steps run the same code over either.

use crate::engine::binds::audited;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};

use crate::engine::error::RunError;
use crate::engine::state;
use crate::plan::selection::quote_ident;

/// A source of transactions for the steps, and where the run's bookkeeping lands.
pub trait Writes: 'static {
    /// Table holding the frozen selection (`run_id, seq, event_id, event_type, payload`).
    fn selection_table(&self) -> &'static str;
    /// A transaction for one batch; committing it makes the batch durable (or, rehearsed, visible
    /// to the next steps only).
    async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error>;
    /// A transaction for a query that must not write (a wait condition): `READ ONLY` when it is a
    /// transaction of its own; inside a rehearsal, whatever it did is rolled back anyway.
    async fn begin_read_only(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error>;
    /// Records a step's checkpoint inside the batch's transaction, fenced by the lease's token
    /// (a lost lease fails it, so the batch rolls back); says whether `replay stop` asked the run
    /// to stop (read in the same transaction, so the stop lands on this boundary). A batch that
    /// wrote target rows also records its transaction id, for compare-and-restore.
    async fn checkpoint(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        lease: i64,
        at: &state::Checkpoint<'_>,
    ) -> Result<bool, RunError>;
    /// Where the run's executors claim batches, each doing its batch in a transaction of its own
    /// (see `steps::claimed`); `None` when every write goes through one transaction (a
    /// rehearsal), so batches go one by one.
    fn shared(&self) -> Option<PgPool>;
    /// Records the frozen selection's size and digest in the freeze's transaction.
    async fn record_selection(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        lease: i64,
        frozen: &crate::engine::freeze::Frozen,
    ) -> Result<(), RunError>;
    /// Proves, inside a transaction that writes the run's records (the frozen selection, a
    /// backup), that this executor still owns the run; a rehearsal owns nothing and proves nothing.
    async fn prove(conn: &mut PgConnection, run_id: uuid::Uuid, lease: i64)
    -> Result<(), RunError>;
    /// Snapshots rows (`SELECT key, row` query given) into the backup; returns (rows, checksum).
    async fn snapshot(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        table: &str,
        key_column: &str,
        select_rows: &str,
        binds: &[crate::plan::selection::Bind],
    ) -> Result<(i64, String), sqlx::Error>;
}

/// A `READ ONLY` transaction: a query in it cannot write, whatever it calls.
pub async fn begin_read_only(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Real writes: each batch commits with its checkpoint in the executor's schema.
pub struct Commit {
    pub pool: PgPool,
}

impl Writes for Commit {
    fn selection_table(&self) -> &'static str {
        state::SELECTION_TABLE
    }

    async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn begin_read_only(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        begin_read_only(&self.pool).await
    }

    async fn checkpoint(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        lease: i64,
        at: &state::Checkpoint<'_>,
    ) -> Result<bool, RunError> {
        let stop = state::checkpoint_step(&mut *conn, run_id, lease, at).await?;
        if at.wrote_rows {
            state::mark_written(conn, run_id, at.step).await?;
        }
        Ok(stop)
    }

    fn shared(&self) -> Option<PgPool> {
        Some(self.pool.clone())
    }

    async fn record_selection(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        lease: i64,
        frozen: &crate::engine::freeze::Frozen,
    ) -> Result<(), RunError> {
        state::record_selection(conn, run_id, lease, frozen).await
    }

    async fn prove(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        lease: i64,
    ) -> Result<(), RunError> {
        state::fence(conn, run_id, lease).await.map(|_| ())
    }

    async fn snapshot(
        conn: &mut PgConnection,
        run_id: uuid::Uuid,
        table: &str,
        key_column: &str,
        select_rows: &str,
        binds: &[crate::plan::selection::Bind],
    ) -> Result<(i64, String), sqlx::Error> {
        state::snapshot_backup(conn, run_id, table, key_column, select_rows, binds).await
    }
}

/// Rehearsed writes: one outer transaction, a savepoint per batch, everything rolled back at the end.
pub struct Rehearse {
    pub outer: Transaction<'static, Postgres>,
}

impl Rehearse {
    /// The rehearsal's batches table (empty).
    pub const BATCHES_TABLE: &'static str = "pg_temp.replay_batches";

    /// Opens the outer transaction and the temporary selection table (gone with the rollback).
    pub async fn start(pool: &PgPool) -> Result<Rehearse, sqlx::Error> {
        let mut outer = pool.begin().await?;
        // A rehearsal never waits on the live worker's row locks: it fails fast instead.
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *outer)
            .await?;
        sqlx::query(
            "CREATE TEMP TABLE replay_selection (run_id UUID NOT NULL, seq BIGINT NOT NULL, \
             event_id TEXT NOT NULL, event_type TEXT NOT NULL, payload JSONB, processed_at TIMESTAMPTZ, \
             PRIMARY KEY (run_id, seq)) \
             ON COMMIT DROP",
        )
        .execute(&mut *outer)
        .await?;
        // No batch of a rehearsal is ever done: `:done_event_ids` is empty.
        sqlx::query(
            "CREATE TEMP TABLE replay_batches (run_id UUID NOT NULL, step_id TEXT NOT NULL, \
             from_seq BIGINT NOT NULL, upto_seq BIGINT NOT NULL, done BOOLEAN NOT NULL) ON COMMIT DROP",
        )
        .execute(&mut *outer)
        .await?;
        Ok(Rehearse { outer })
    }

    pub async fn finish(self) -> Result<(), sqlx::Error> {
        self.outer.rollback().await
    }
}

impl Writes for Rehearse {
    fn selection_table(&self) -> &'static str {
        "pg_temp.replay_selection"
    }

    async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        self.outer.begin().await
    }

    async fn begin_read_only(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        // A savepoint cannot be made read-only without making the whole rehearsal so.
        self.outer.begin().await
    }

    async fn checkpoint(
        _conn: &mut PgConnection,
        _run_id: uuid::Uuid,
        _lease: i64,
        _at: &state::Checkpoint<'_>,
    ) -> Result<bool, RunError> {
        Ok(false)
    }

    fn shared(&self) -> Option<PgPool> {
        None
    }

    async fn record_selection(
        _conn: &mut PgConnection,
        _run_id: uuid::Uuid,
        _lease: i64,
        _frozen: &crate::engine::freeze::Frozen,
    ) -> Result<(), RunError> {
        Ok(())
    }

    async fn prove(
        _conn: &mut PgConnection,
        _run_id: uuid::Uuid,
        _lease: i64,
    ) -> Result<(), RunError> {
        Ok(())
    }

    async fn snapshot(
        conn: &mut PgConnection,
        _run_id: uuid::Uuid,
        _table: &str,
        _key_column: &str,
        select_rows: &str,
        binds: &[crate::plan::selection::Bind],
    ) -> Result<(i64, String), sqlx::Error> {
        let count = format!("SELECT count(*) FROM ({select_rows}) s");
        use sqlx::Row;
        let row = super::binds::bind_all(sqlx::query(audited(&count)), binds)
            .fetch_one(conn)
            .await?;
        Ok((row.try_get::<i64, _>(0)?, String::new()))
    }
}

/// The query that lists a backup table's rows as `(key, row_data)`.
pub fn backup_rows_query(table: &str, key: &str, condition: &str) -> String {
    format!(
        "SELECT t.{}::text AS key, to_jsonb(t) AS row_data FROM {} t WHERE {condition}",
        quote_ident(key),
        quote_ident(table)
    )
}
