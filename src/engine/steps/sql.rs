//! `sql`: one statement with binds, once or once per batch, inside bounds on the rows it touches.

use crate::engine::binds::BindScope;
use crate::engine::binds::audited;
use crate::engine::binds::bind_all;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::model::{SqlEach, SqlStep};
use crate::plan::prepared::{PreparedSql, SqlSite};
use sqlx::PgConnection;

use super::StepContext;
use super::claimed::{self, BatchWork, Fault};

pub async fn run<W: Writes, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    clock: &mut C,
    step: &SqlStep,
    checkpoint: i64,
    touched: i64,
) -> Result<u64, RunError> {
    let total = ctx.limit as i64;
    let (batch, ranges): (i64, i64) = match step.each {
        SqlEach::Once => (total.max(1), 1),
        SqlEach::Batch => {
            let b = i64::from(ctx.plan.raw.rate_limit.batch_size);
            (b, (total + b - 1) / b)
        }
    };
    let statement = ctx
        .plan
        .sql
        .get(SqlSite::Step(crate::engine::canary::plan_step_id(&step.id)))
        .map_err(|e| ctx.failed(&step.id, checkpoint as u64, e.to_string()))?;
    let text = ctx.binds.text(statement);
    let selection = writes.selection_table();
    if let (SqlEach::Batch, Some(pool), Some(executor)) = (step.each, writes.shared(), ctx.executor)
        && total > 0
    {
        let work = Statement {
            text: &text,
            statement,
            binds: ctx.binds,
            selection,
            run_id: ctx.run_id,
            bounds: step.expect_rows.as_ref(),
        };
        return claimed::run(ctx, &pool, executor, clock, &step.id, batch, 1, &work).await;
    }
    let (mut done, mut touched) = (checkpoint, touched);
    let mut executed = if step.each == SqlEach::Once && checkpoint > 0 {
        1
    } else {
        done / batch.max(1)
    };
    while executed < ranges {
        let upto = match step.each {
            SqlEach::Once => total,
            SqlEach::Batch => (done + batch).min(total),
        };
        // Paced before the transaction opens, so no session idles inside one.
        if step.each == SqlEach::Batch {
            clock.pace((upto - done) as u64).await;
        }
        ctx.cancel.check()?;
        let fail = |message: String| ctx.failed(&step.id, done as u64, message);
        let mut tx = writes
            .begin()
            .await
            .map_err(|e| ctx.db_failed(&step.id, done as u64, e))?;
        let batch = if step.each == SqlEach::Batch {
            let ids: Vec<String> = sqlx::query_scalar(audited(&format!(
                "SELECT event_id FROM {selection} WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
            )))
            .bind(ctx.run_id)
            .bind(done)
            .bind(upto)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| ctx.db_failed(&step.id, done as u64, e))?;
            Some(ids)
        } else {
            None
        };
        let binds = ctx.binds.values(statement, batch).map_err(fail)?;
        let rows = bind_all(sqlx::query(audited(&text)), &binds)
            .execute(&mut *tx)
            .await
            .map_err(|e| ctx.db_failed(&step.id, done as u64, e))?
            .rows_affected();
        if let Some(outside) = outside_bounds(step.expect_rows.as_ref(), rows) {
            // Dropping the transaction rolls the statement back.
            drop(tx);
            return Err(fail(outside));
        }
        touched += rows as i64;
        executed += 1;
        let at = Checkpoint {
            step: &step.id,
            checkpoint: upto.max(1),
            touched,
            done: executed >= ranges,
            wrote_rows: true,
        };
        let stop = W::checkpoint(&mut tx, ctx.run_id, ctx.lease, &at).await?;
        ctx.note_stop(stop);
        tx.commit()
            .await
            .map_err(|e| ctx.db_failed(&step.id, done as u64, e))?;
        done = upto;
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: done as u64,
            total: total as u64,
        });
    }
    if ranges == 0 {
        // A batch step over an empty selection has nothing to run, and is done.
        ctx.checkpoint_alone(writes, Checkpoint::finished(&step.id, touched))
            .await?;
    }
    Ok(touched as u64)
}

/// One batch of a `sql` step with `each: batch`, done through claims.
struct Statement<'s> {
    text: &'s str,
    statement: &'s PreparedSql,
    binds: &'s BindScope,
    selection: &'s str,
    run_id: uuid::Uuid,
    bounds: Option<&'s crate::plan::model::ExpectRows>,
}

impl BatchWork for Statement<'_> {
    async fn run(&self, conn: &mut PgConnection, from: i64, upto: i64) -> Result<i64, Fault> {
        let ids: Vec<String> = sqlx::query_scalar(audited(&format!(
            "SELECT event_id FROM {} WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            self.selection
        )))
        .bind(self.run_id)
        .bind(from)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await
        .map_err(Fault::Db)?;
        let binds = self
            .binds
            .values(self.statement, Some(ids))
            .map_err(Fault::Plan)?;
        let rows = bind_all(sqlx::query(audited(self.text)), &binds)
            .execute(&mut *conn)
            .await
            .map_err(Fault::Db)?
            .rows_affected();
        match outside_bounds(self.bounds, rows) {
            Some(outside) => Err(Fault::Plan(outside)),
            None => Ok(rows as i64),
        }
    }
}

/// Why `rows` is outside the step's `expect_rows`, if it is.
fn outside_bounds(bounds: Option<&crate::plan::model::ExpectRows>, rows: u64) -> Option<String> {
    let bounds = bounds?;
    let low = bounds.min.is_some_and(|min| rows < min);
    let high = bounds.max.is_some_and(|max| rows > max);
    (low || high).then(|| {
        format!(
            "statement affected {rows} row(s); expected {}; rolled back",
            describe_bounds(bounds.min, bounds.max)
        )
    })
}

fn describe_bounds(min: Option<u64>, max: Option<u64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) if a == b => format!("exactly {a}"),
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => "any number".into(),
    }
}
