//! `wait`: poll a query or a queue until it holds, with a timeout.

use crate::engine::binds::audited;
use std::time::{Duration, Instant};

use crate::engine::binds::bind_all;
use crate::engine::broker::Broker;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::duration;
use crate::plan::model::WaitStep;
use crate::plan::prepared::SqlSite;

use super::StepContext;

pub async fn run<W: Writes, B: Broker, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    broker: &mut B,
    clock: &mut C,
    step: &WaitStep,
) -> Result<u64, RunError> {
    let timeout = duration::parse(&step.timeout).map_err(|m| ctx.failed(&step.id, 0, m))?;
    let interval = duration::parse(&step.poll_interval).unwrap_or(Duration::from_secs(1));
    // The `until` query, prepared at compile time, with its text and values for this run.
    let until = match &step.until {
        Some(_) => {
            let statement = ctx
                .plan
                .sql
                .get(SqlSite::Step(crate::engine::canary::plan_step_id(&step.id)))
                .map_err(|e| ctx.failed(&step.id, 0, e.to_string()))?;
            let binds = ctx
                .binds
                .values(statement, None)
                .map_err(|m| ctx.failed(&step.id, 0, m))?;
            Some((ctx.binds.text(statement), binds))
        }
        None => None,
    };
    let started = Instant::now();
    loop {
        ctx.cancel.check()?;
        let holds = match (&until, &step.queue_empty) {
            (Some((text, binds)), _) => {
                let fail = |e: sqlx::Error| match crate::engine::error::wrote_in_read_only(&e) {
                    // The condition tried to write: the plan's fault.
                    true => ctx.failed(&step.id, 0, crate::engine::error::describe_sqlx(&e)),
                    false => ctx.db_failed(&step.id, 0, e),
                };
                let mut tx = writes.begin_read_only().await.map_err(fail)?;
                let row = bind_all(sqlx::query(audited(text)), binds)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                use sqlx::Row;
                match row {
                    Some(row) => row
                        .try_get::<Option<bool>, _>(0)
                        .map_err(|e| {
                            ctx.failed(
                                &step.id,
                                0,
                                format!("the `until` query must return a boolean: {e}"),
                            )
                        })?
                        .unwrap_or(false),
                    None => false,
                }
            }
            (None, Some(queue)) => match broker.queue_depth(queue).await? {
                Some(depth) => depth == 0,
                None => {
                    return Err(ctx.failed(
                        &step.id,
                        0,
                        format!("queue `{queue}` does not exist (it disappeared during the run)"),
                    ));
                }
            },
            (None, None) => true,
        };
        let elapsed = started.elapsed();
        ctx.emit(RunEvent::Waiting {
            step: step.id.clone(),
            elapsed_secs: elapsed.as_secs(),
            holds: Some(holds),
        });
        if holds {
            break;
        }
        if elapsed >= timeout {
            return Err(ctx.failed(
                &step.id,
                0,
                format!("condition still false after {}", duration::format(timeout)),
            ));
        }
        if !clock.poll_pause(interval).await {
            // A rehearsal does not wait; a run whose guard stopped it stops here, the wait
            // not done.
            ctx.cancel.check()?;
            break;
        }
    }
    ctx.checkpoint_alone(writes, Checkpoint::finished(&step.id, 0))
        .await?;
    Ok(0)
}
