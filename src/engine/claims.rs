//! The store's tables for a run that several executors share: who takes part
//! (`replay.executors`), the batches they claim (`replay.batches`) and the run's one pace
//! (`replay.pace`). Coordination goes through PostgreSQL only: batches are claimed with
//! `FOR UPDATE SKIP LOCKED`, each claim has an expiry (renewed by its executor's heartbeat) and a
//! fencing token, and a batch's transaction marks it done only under the token it was claimed
//! with.

use std::time::Duration;

use serde_json::json;
use sqlx::{PgPool, Row};

use crate::engine::error::RunError;
use crate::engine::state::{self, Batch};
use crate::engine::status::RunStatus;
use crate::engine::steps::Cancel;

/// One executor taking part in a run: the process that started it, or one that joined.
#[derive(Debug, Clone)]
pub struct Executor {
    pub run_id: uuid::Uuid,
    pub id: uuid::Uuid,
    /// `host:pid`.
    pub name: String,
    /// How long its claims last without a heartbeat.
    pub ttl: Duration,
}

/// A batch this executor holds: selection `seq` in `from + 1 ..= upto`, under `fence`.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub from: i64,
    pub upto: i64,
    pub fence: i64,
    /// How far an earlier holder's publish got inside the batch (`from` when nothing is recorded).
    pub progress: i64,
}

/// Registers this process as an executor of the run. Claims held by executors of the run that
/// died on this machine (killed, crashed) are released at once instead of being waited out.
pub async fn register(
    pool: &PgPool,
    run_id: uuid::Uuid,
    ttl: Duration,
) -> Result<Executor, RunError> {
    release_the_dead(pool, run_id).await?;
    let executor = Executor {
        run_id,
        id: uuid::Uuid::new_v4(),
        name: state::executor_name(),
        ttl,
    };
    sqlx::query("INSERT INTO replay.executors (run_id, id, name, origin) VALUES ($1, $2, $3, $4)")
        .bind(run_id)
        .bind(executor.id)
        .bind(&executor.name)
        .bind(state::origin())
        .execute(pool)
        .await
        .map_err(RunError::db("registering the executor"))?;
    Ok(executor)
}

/// Releases the claims of the run's executors that ran on this machine, in this boot and PID
/// namespace, and whose process is gone.
pub async fn release_the_dead(pool: &PgPool, run_id: uuid::Uuid) -> Result<(), RunError> {
    let holders: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT e.id, e.name FROM replay.executors e WHERE e.run_id = $1 AND e.origin = $2 \
         AND e.left_at IS NULL AND EXISTS (SELECT 1 FROM replay.batches b \
             WHERE b.run_id = e.run_id AND b.claimed_by = e.id AND NOT b.done)",
    )
    .bind(run_id)
    .bind(state::origin())
    .fetch_all(pool)
    .await
    .map_err(RunError::db("looking for executors that died"))?;
    let dead: Vec<uuid::Uuid> = holders
        .into_iter()
        .filter(|(_, name)| state::died_here(name))
        .map(|(id, _)| id)
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE replay.batches SET expires_at = NULL WHERE run_id = $1 AND claimed_by = ANY($2) AND NOT done",
    )
    .bind(run_id)
    .bind(&dead)
    .execute(pool)
    .await
    .map_err(RunError::db("releasing the claims of executors that died"))?;
    sqlx::query(
        "UPDATE replay.executors SET left_at = clock_timestamp() WHERE run_id = $1 AND id = ANY($2)",
    )
    .bind(run_id)
    .bind(&dead)
    .execute(pool)
    .await
    .map_err(RunError::db("releasing the claims of executors that died"))?;
    Ok(())
}

impl Executor {
    /// Keeps the executor's claims and heartbeat alive every third of its lease. When it cannot
    /// before they may have run out, it stops the executor: its claims may be someone else's.
    pub fn heartbeat(&self, pool: PgPool, cancel: Cancel) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(me.ttl / 3).await;
                let sent = tokio::time::Instant::now();
                match tokio::time::timeout(me.ttl / 3, me.renew(&pool)).await {
                    Ok(Ok(())) => renewed = sent,
                    _ if renewed.elapsed() >= me.ttl * 2 / 3 => {
                        tracing::error!(executor = %me.name, "cannot renew this executor's claims before they run out; stopping");
                        cancel.cancel();
                        return;
                    }
                    _ => tracing::warn!(executor = %me.name, "cannot renew this executor's claims"),
                }
            }
        })
    }

    async fn renew(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        // A batch being recorded right now (its row locked) is skipped: it is about to be done,
        // and a heartbeat must never queue behind a batch's transaction.
        sqlx::query(
            "UPDATE replay.batches SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' \
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM replay.batches \
                WHERE run_id = $1 AND claimed_by = $2 AND NOT done AND expires_at IS NOT NULL \
                FOR UPDATE SKIP LOCKED))",
        )
        .bind(self.run_id)
        .bind(self.id)
        .bind(self.ttl.as_millis() as f64)
        .execute(pool)
        .await?;
        sqlx::query(
            "UPDATE replay.executors SET heartbeat_at = clock_timestamp() \
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM replay.executors WHERE run_id = $1 AND id = $2 \
                FOR UPDATE SKIP LOCKED))",
        )
        .bind(self.run_id)
        .bind(self.id)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Leaves the run: its claims not done go back at once (a clean exit, or a stop).
    pub async fn leave(&self, pool: &PgPool) {
        let _ = sqlx::query(
            "UPDATE replay.batches SET expires_at = NULL WHERE run_id = $1 AND claimed_by = $2 AND NOT done",
        )
        .bind(self.run_id)
        .bind(self.id)
        .execute(pool)
        .await;
        let _ = sqlx::query(
            "UPDATE replay.executors SET left_at = clock_timestamp() WHERE run_id = $1 AND id = $2",
        )
        .bind(self.run_id)
        .bind(self.id)
        .execute(pool)
        .await;
    }
}

/// Lays out a batch-wise step's batches once, whichever executor opens it first: the ranges not
/// done yet (from the step's checkpoint and the ranges done beyond it), cut at `batch` events.
/// Returns how many events of the step are not done yet.
pub async fn open_step(
    pool: &PgPool,
    run_id: uuid::Uuid,
    step: &str,
    batch: i64,
    total: i64,
) -> Result<i64, RunError> {
    let doing = || format!("opening step `{step}` to the run's executors");
    let mut tx = pool.begin().await.map_err(RunError::db(doing()))?;
    let row = sqlx::query(
        "SELECT checkpoint, ahead, EXISTS (SELECT 1 FROM replay.batches WHERE run_id = $1 AND step_id = $2) \
         FROM replay.step_runs WHERE run_id = $1 AND step_id = $2 FOR UPDATE",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db(doing()))?;
    if !row.get::<bool, _>(2) {
        // A batch size an operator set while the run ran (`replay set RUN batch=N`) holds for
        // the steps opened after it.
        let live: Option<i32> =
            sqlx::query_scalar("SELECT batch_size FROM replay.pace WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(RunError::db(doing()))?
                .flatten();
        let batch = live.map_or(batch, i64::from);
        lay_out(&mut tx, run_id, step, &row, batch, total)
            .await
            .map_err(RunError::db(doing()))?;
    }
    let left: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(upto_seq - from_seq), 0)::bigint FROM replay.batches \
         WHERE run_id = $1 AND step_id = $2 AND NOT done",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db(doing()))?;
    tx.commit().await.map_err(RunError::db(doing()))?;
    Ok(left)
}

async fn lay_out(
    tx: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    step: &str,
    row: &sqlx::postgres::PgRow,
    batch: i64,
    total: i64,
) -> Result<(), sqlx::Error> {
    let ahead = state::pairs(&row.get::<Vec<i64>, _>(1));
    let ranges = crate::engine::batches::ranges_to_do(row.get(0), &ahead, batch, total);
    let (from, upto): (Vec<i64>, Vec<i64>) = ranges.into_iter().unzip();
    sqlx::query(
        "INSERT INTO replay.batches (run_id, step_id, from_seq, upto_seq) \
         SELECT $1, $2, f, u FROM unnest($3::bigint[], $4::bigint[]) AS r(f, u)",
    )
    .bind(run_id)
    .bind(step)
    .bind(&from)
    .bind(&upto)
    .execute(tx)
    .await
    .map(|_| ())
}

/// Whether a step's batches are laid out (an executor that joins works on a step only then).
pub async fn is_open(pool: &PgPool, run_id: uuid::Uuid, step: &str) -> Result<bool, RunError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM replay.batches WHERE run_id = $1 AND step_id = $2)",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading the step's batches"))
}

/// Claims the first batch of the step that is neither done nor held under a live claim, with a
/// new fencing token; nothing once the run is no longer running or a stop was requested. A batch whose claim ran out (its executor died or stalled) is taken over,
/// and the run log says so (one given back cleanly is not news).
pub async fn claim(
    pool: &PgPool,
    executor: &Executor,
    step: &str,
) -> Result<Option<Claim>, sqlx::Error> {
    let mut tx = coordination(pool).await?;
    let row = sqlx::query(
        "WITH free AS ( \
            SELECT from_seq, claimed_by, expires_at FROM replay.batches \
            WHERE run_id = $1 AND step_id = $2 AND NOT done \
              AND (expires_at IS NULL OR expires_at <= clock_timestamp()) \
              AND EXISTS (SELECT 1 FROM replay.runs r \
                          WHERE r.id = $1 AND r.status = 'running' AND NOT r.stop_requested) \
            ORDER BY from_seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
         UPDATE replay.batches b SET claimed_by = $3, fence = b.fence + 1, \
                expires_at = clock_timestamp() + $4 * interval '1 millisecond' \
         FROM free WHERE b.run_id = $1 AND b.step_id = $2 AND b.from_seq = free.from_seq \
         RETURNING b.from_seq, b.upto_seq, b.fence, \
                   CASE WHEN free.expires_at IS NOT NULL THEN free.claimed_by END, \
                   coalesce(b.progress, b.from_seq)",
    )
    .bind(executor.run_id)
    .bind(step)
    .bind(executor.id)
    .bind(executor.ttl.as_millis() as f64)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let claim = Claim {
        from: row.get(0),
        upto: row.get(1),
        fence: row.get(2),
        progress: row.get(4),
    };
    if let Some(before) = row
        .get::<Option<uuid::Uuid>, _>(3)
        .filter(|b| *b != executor.id)
    {
        tracing::warn!(
            step,
            from = claim.from + 1,
            upto = claim.upto,
            "taking over a batch whose claim ran out"
        );
        state::log(
            pool,
            executor.run_id,
            "batch_taken_over",
            Some(step),
            json!({"from": claim.from + 1, "upto": claim.upto, "from_executor": before, "by": executor.name, "fence": claim.fence}),
        )
        .await;
    }
    Ok(Some(claim))
}

/// A transaction for the executors' coordination (a claim, a slot of the run's pace) that
/// commits without waiting for its WAL to reach the disk: such a write lost in a server crash
/// is harmless (the batch is unclaimed, or its claim's fence is older, so the batch's own
/// transaction, which does wait, fails its fence and is retried), and a batch's durable commit
/// flushes it anyway. It saves a disk flush per batch.
async fn coordination(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The size of the step's next batch to claim now (neither done nor under a live claim), if
/// there is one: a lane waits for its turn in the run's pace only then, for that many events.
pub async fn claimable(
    pool: &PgPool,
    run_id: uuid::Uuid,
    step: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT upto_seq - from_seq FROM replay.batches WHERE run_id = $1 AND step_id = $2 AND NOT done \
         AND (expires_at IS NULL OR expires_at <= clock_timestamp()) ORDER BY from_seq LIMIT 1",
    )
    .bind(run_id)
    .bind(step)
    .fetch_optional(pool)
    .await
}

/// Gives a claimed batch back without doing it (a stop came before it started).
pub async fn release(pool: &PgPool, executor: &Executor, step: &str, claim: Claim) {
    let _ = sqlx::query(
        "UPDATE replay.batches SET expires_at = NULL \
         WHERE run_id = $1 AND step_id = $2 AND from_seq = $3 AND fence = $4 AND NOT done",
    )
    .bind(executor.run_id)
    .bind(step)
    .bind(claim.from)
    .bind(claim.fence)
    .execute(pool)
    .await;
}

/// Gives back every claim this executor holds on the step and has not done: called before its
/// lanes start on the step, when none of them is in flight, so that what an earlier attempt of
/// this process claimed (and a passing fault ended) is not waited out.
pub async fn release_mine(
    pool: &PgPool,
    executor: &Executor,
    step: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE replay.batches SET expires_at = NULL \
         WHERE run_id = $1 AND step_id = $2 AND claimed_by = $3 AND NOT done",
    )
    .bind(executor.run_id)
    .bind(step)
    .bind(executor.id)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Batches of the step not done yet (by anyone).
pub async fn open_batches(
    pool: &PgPool,
    run_id: uuid::Uuid,
    step: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM replay.batches WHERE run_id = $1 AND step_id = $2 AND NOT done",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(pool)
    .await
}

/// What a batch, a publish's record or an idle executor may do, given the run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Going {
    /// Only while the run is running (a batch that writes rows, an executor that waits).
    Running,
    /// Also once another executor recorded it stopped or interrupted (a publish's record: it
    /// writes down what the broker already has), and then this executor stops too.
    Recording,
}

/// The run's status against what the caller may do: whether `replay stop` was requested (or this
/// executor must stop), or the error naming a status that ends its part.
async fn check_run(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    going: Going,
) -> Result<bool, RunError> {
    let (status, stop): (RunStatus, bool) =
        sqlx::query_as("SELECT status, stop_requested FROM replay.runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(RunError::db("checking the run's status"))?;
    match (status, going) {
        (RunStatus::Running, _) => Ok(stop),
        (RunStatus::Stopped | RunStatus::Interrupted, Going::Recording) => Ok(true),
        (status, _) => Err(RunError::NotRunning {
            run_id: run_id.to_string(),
            status,
        }),
    }
}

/// Opens a batch's transaction (or a publish's record, with [`Going::Recording`]): the run's
/// batch lock is held shared until it commits, so the run's status cannot change under a batch in
/// flight, and the status must allow it (a rollback or a stop recorded by another executor ends
/// the batches). Says whether `replay stop` was requested (or this executor must stop).
pub async fn begin_batch(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    going: Going,
) -> Result<bool, RunError> {
    state::share_run(&mut *conn, run_id)
        .await
        .map_err(RunError::db("checking the run's status"))?;
    check_run(conn, run_id, going).await
}

/// Whether the run still runs (an error naming its status when it does not) and a stop was
/// requested: asked by an executor that has nothing to claim (claims stop with the run, or with
/// a requested stop), so that it stops too instead of waiting for batches nobody will do.
pub async fn still_running(pool: &PgPool, run_id: uuid::Uuid) -> Result<bool, RunError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(RunError::db("checking the run's status"))?;
    check_run(&mut conn, run_id, Going::Running).await
}

/// Events of the step in batches not done yet (by anyone).
pub async fn events_left(
    pool: &PgPool,
    run_id: uuid::Uuid,
    step: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(upto_seq - from_seq), 0)::bigint FROM replay.batches \
         WHERE run_id = $1 AND step_id = $2 AND NOT done",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(pool)
    .await
}

/// Marks the claimed batch done, inside its transaction, under the fencing token it was claimed
/// with (a batch taken over by another executor fails here, and rolls back); records it in the
/// step's checkpoint, and the transaction as one of the run's writes. (The batch stays claimed
/// by this executor once done: that is what its counts are made of.)
pub async fn complete(
    conn: &mut sqlx::PgConnection,
    executor: &Executor,
    claim: Claim,
    batch: &Batch<'_>,
) -> Result<(), RunError> {
    let doing = || format!("checkpointing step `{}`", batch.step);
    let fenced = sqlx::query(
        "UPDATE replay.batches SET done = true \
         WHERE run_id = $1 AND step_id = $2 AND from_seq = $3 AND fence = $4 AND claimed_by = $5 AND NOT done",
    )
    .bind(executor.run_id)
    .bind(batch.step)
    .bind(claim.from)
    .bind(claim.fence)
    .bind(executor.id)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(doing()))?
    .rows_affected();
    if fenced != 1 {
        return Err(RunError::ClaimLost {
            step: batch.step.to_string(),
            first: claim.from + 1,
            last: claim.upto,
        });
    }
    state::mark_written(conn, executor.run_id, batch.step).await?;
    // Last before the commit: the step's row is what every executor's batches queue on.
    state::record_batch(conn, executor.run_id, batch).await
}

/// Records, inside the recording transaction and under the claim's fence, that a publish's
/// confirms reached selection `seq` inside the claimed batch.
pub async fn record_progress(
    conn: &mut sqlx::PgConnection,
    executor: &Executor,
    step: &str,
    claim: Claim,
    seq: i64,
) -> Result<(), RunError> {
    let fenced = sqlx::query(
        "UPDATE replay.batches SET progress = $6 \
         WHERE run_id = $1 AND step_id = $2 AND from_seq = $3 AND fence = $4 AND claimed_by = $5 AND NOT done",
    )
    .bind(executor.run_id)
    .bind(step)
    .bind(claim.from)
    .bind(claim.fence)
    .bind(executor.id)
    .bind(seq)
    .execute(conn)
    .await
    .map_err(RunError::db(format!("checkpointing step `{step}`")))?
    .rows_affected();
    if fenced != 1 {
        return Err(RunError::ClaimLost {
            step: step.to_string(),
            first: claim.from + 1,
            last: claim.upto,
        });
    }
    Ok(())
}

/// The run's next slot, as `reserve` gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Start the batch after this wait.
    After(Duration),
    /// An operator paused the run (`replay pause`): no slot was taken; ask again later.
    Paused,
}

/// Reserves the run's next slot for `events`, shared by all its executors, at the rate an
/// operator set (`replay set RUN rate=N`) or else `per_second`: returns how long to wait before
/// starting them, or that the run is paused.
pub async fn reserve(
    pool: &PgPool,
    run_id: uuid::Uuid,
    events: u64,
    per_second: u32,
) -> Result<Slot, sqlx::Error> {
    let mut tx = coordination(pool).await?;
    let (paused, wait): (bool, f64) = sqlx::query_as(
        "INSERT INTO replay.pace AS p (run_id, next_at) \
         VALUES ($1, clock_timestamp() + $2 / $3 * interval '1 second') \
         ON CONFLICT (run_id) DO UPDATE \
         SET next_at = CASE WHEN p.paused THEN p.next_at \
             ELSE greatest(p.next_at, clock_timestamp()) \
                  + $2 / coalesce(p.per_second, $3) * interval '1 second' END \
         RETURNING p.paused, \
                   extract(epoch FROM next_at - clock_timestamp())::float8 \
                   - $2 / coalesce(p.per_second, $3)",
    )
    .bind(run_id)
    .bind(events as f64)
    .bind(f64::from(per_second.max(1)))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match paused {
        true => Slot::Paused,
        false => Slot::After(Duration::from_secs_f64(wait.max(0.0))),
    })
}

/// An executor as `replay status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutorSummary {
    pub name: String,
    pub joined_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// Seconds since its last heartbeat.
    pub silent_secs: f64,
    pub left: bool,
    pub batches_done: i64,
    pub events_done: i64,
    /// Events a second over the time it took part.
    pub rate: f64,
}

/// The run's executors, in the order they joined.
pub async fn executors(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<Vec<ExecutorSummary>, RunError> {
    let rows = sqlx::query(
        "SELECT name, joined_at, heartbeat_at, \
                extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, left_at IS NOT NULL, \
                batches_done, events_done, \
                events_done / greatest(extract(epoch FROM coalesce(left_at, heartbeat_at) - joined_at)::float8, 0.001) \
         FROM replay.executor_work WHERE run_id = $1 ORDER BY joined_at, name",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the run's executors"))?;
    Ok(rows
        .iter()
        .map(|r| ExecutorSummary {
            name: r.get(0),
            joined_at: r.get(1),
            heartbeat_at: r.get(2),
            silent_secs: r.get(3),
            left: r.get(4),
            batches_done: r.get(5),
            events_done: r.get(6),
            rate: r.get(7),
        })
        .collect())
}

/// How many executors took part in the run.
pub async fn count(pool: &PgPool, run_id: uuid::Uuid) -> Result<i64, RunError> {
    sqlx::query_scalar("SELECT count(*) FROM replay.executors WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(pool)
        .await
        .map_err(RunError::db("counting the run's executors"))
}

/// The batches and events this executor did in the run.
pub async fn done_by(pool: &PgPool, executor: &Executor) -> Result<Option<(u64, u64)>, RunError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT batches_done, events_done FROM replay.executor_work WHERE run_id = $1 AND id = $2",
    )
    .bind(executor.run_id)
    .bind(executor.id)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("reading what this executor did"))?;
    Ok(row.map(|(b, e)| (b as u64, e as u64)))
}
