//! `publish`: each selected event (or one message) to the exchange, persistent, with publisher confirms.
//! The checkpoint advances only over confirmed messages.

use crate::engine::binds::audited;

use crate::engine::broker::Broker;
use crate::engine::error::{BrokerError, RunError};
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::writes::Writes;
use crate::plan::model::{PublishEach, PublishStep};

use super::StepContext;
use super::render::{EventRow, Renderer};

#[allow(clippy::too_many_arguments)]
pub async fn run<W: Writes, B: Broker, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    broker: &mut B,
    clock: &mut C,
    step: &PublishStep,
    checkpoint: i64,
    touched: i64,
) -> Result<u64, RunError> {
    let raw = &ctx.plan.raw;
    let mut renderer = Renderer::new(ctx.plan, step, ctx.run_id, ctx.started_at)
        .map_err(|m| ctx.failed(&step.id, 0, m))?;
    broker.check_exchange(renderer.exchange()).await?;

    if step.each == PublishEach::Once {
        if checkpoint == 0 {
            let message = renderer
                .render(None)
                .map_err(|m| ctx.failed(&step.id, 0, m))?;
            broker
                .publish(message)
                .await
                .map_err(|e| refused_or_lost(ctx, &step.id, 0, e))?;
            broker
                .flush()
                .await
                .map_err(|e| refused_or_lost(ctx, &step.id, 0, e))?;
        }
        record(ctx, writes, &step.id, 1, 1, true).await?;
        return Ok(1);
    }

    let total = ctx.limit as i64;
    let batch = i64::from(raw.rate_limit.batch_size);
    let selection = writes.selection_table();
    // `fetched` is how far messages were handed to the broker; `confirmed` how far every message
    // was confirmed. Only `confirmed` is checkpointed, so a crash republishes at most the messages
    // that were in flight (the confirm window), never skips one.
    let (mut fetched, mut confirmed) = (checkpoint, checkpoint);
    let base_touched = touched - checkpoint;
    let run_id = ctx.run_id;
    let first = (fetched + batch).min(total);
    let mut rows = fetch(writes, selection, run_id, fetched, first)
        .await
        .map_err(|e| ctx.db_failed(&step.id, confirmed as u64, e))?;
    while fetched < total {
        throttle(ctx, broker, clock, &step.id).await?;
        let upto = (fetched + batch).min(total);
        clock.pace((upto - fetched) as u64).await;
        if ctx.cancel.is_cancelled() {
            // A stop or a signal: wait for the confirms in flight and keep them, so a resume
            // republishes nothing.
            let settled = broker
                .flush()
                .await
                .map_err(|e| refused_or_lost(ctx, &step.id, confirmed, e))?;
            confirmed = settled.into_iter().fold(confirmed, i64::max);
            record(
                ctx,
                writes,
                &step.id,
                confirmed,
                base_touched + confirmed,
                false,
            )
            .await?;
            return Err(RunError::Interrupted);
        }
        // The next batch is read while this one is published, so the broker never waits on the
        // database.
        let current = std::mem::take(&mut rows);
        let next = (upto + batch).min(total);
        let step_id = step.id.as_str();
        let context: &StepContext<'_> = ctx;
        // Publishing yields how far confirms reached, and the error that stopped it, if any.
        let publishing = async {
            let mut confirmed = confirmed;
            for (seq, event_id, event_type, payload) in current {
                let row = EventRow {
                    seq,
                    event_id,
                    event_type,
                    payload,
                };
                let message = match renderer.render(Some(&row)) {
                    Ok(message) => message,
                    Err(m) => {
                        let e = context.failed(
                            step_id,
                            confirmed as u64,
                            format!("event `{}`: {m}", row.event_id),
                        );
                        return (confirmed, Some(e));
                    }
                };
                match broker.publish(message).await {
                    Ok(settled) => confirmed = settled.into_iter().fold(confirmed, i64::max),
                    Err(e) => {
                        return (
                            confirmed,
                            Some(refused_or_lost(context, step_id, confirmed, e)),
                        );
                    }
                }
            }
            (confirmed, None)
        };
        let prefetching = async {
            if upto < total {
                fetch(writes, selection, run_id, upto, next).await
            } else {
                Ok(Vec::new())
            }
        };
        let ((published, failure), prefetched) = tokio::join!(publishing, prefetching);
        confirmed = published;
        if let Some(e) = failure {
            // Keep what the broker confirmed before it went away (or refused a message): after a
            // broker blip only the unconfirmed window is published again.
            if let Err(lost) = record(
                ctx,
                writes,
                &step.id,
                confirmed,
                base_touched + confirmed,
                false,
            )
            .await
            {
                tracing::warn!(error = %lost, "cannot record the confirmed messages");
            }
            return Err(e);
        }
        rows = prefetched.map_err(|e| ctx.db_failed(&step.id, confirmed as u64, e))?;
        fetched = upto;
        if fetched >= total {
            confirmed = broker
                .flush()
                .await
                .map_err(|e| refused_or_lost(ctx, &step.id, confirmed, e))?
                .into_iter()
                .fold(confirmed, i64::max);
        }
        record(
            ctx,
            writes,
            &step.id,
            confirmed,
            base_touched + confirmed,
            confirmed >= total,
        )
        .await?;
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: confirmed as u64,
            total: total as u64,
        });
    }
    let touched = base_touched + confirmed;
    if total == 0 {
        record(ctx, writes, &step.id, 0, 0, true).await?;
    }
    Ok(touched as u64)
}

type Row = (i64, String, String, Option<String>);

/// One batch of the frozen selection, in order.
async fn fetch<W: Writes>(
    writes: &mut W,
    selection: &str,
    run_id: uuid::Uuid,
    after: i64,
    upto: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    let mut tx = writes.begin().await?;
    let rows = sqlx::query_as(audited(&format!(
        "SELECT seq, event_id, event_type, payload::text FROM {selection} \
         WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
    )))
    .bind(run_id)
    .bind(after)
    .bind(upto)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// A message the broker refused or could not route fails the step (and triggers the rollback); a
/// lost broker stops the run resumably.
fn refused_or_lost(ctx: &StepContext<'_>, step: &str, confirmed: i64, e: BrokerError) -> RunError {
    match e {
        BrokerError::Unroutable { .. } | BrokerError::Nacked { .. } => {
            ctx.failed(step, confirmed as u64, e.to_string())
        }
        other => RunError::Broker(other),
    }
}

async fn record<W: Writes>(
    ctx: &StepContext<'_>,
    writes: &mut W,
    step: &str,
    checkpoint: i64,
    touched: i64,
    done: bool,
) -> Result<(), RunError> {
    let fail = |e: sqlx::Error| ctx.db_failed(step, checkpoint as u64, e);
    let mut tx = writes.begin().await.map_err(fail)?;
    let stop = W::checkpoint(
        &mut tx, ctx.run_id, ctx.lease, step, checkpoint, touched, done,
    )
    .await?;
    ctx.note_stop(stop);
    tx.commit().await.map_err(fail)
}

/// Holds publishing while the worker's queue is deeper than the plan allows.
async fn throttle<B: Broker, C: Clock>(
    ctx: &mut StepContext<'_>,
    broker: &mut B,
    clock: &mut C,
    step: &str,
) -> Result<(), RunError> {
    let rate = &ctx.plan.raw.rate_limit;
    let (Some(limit), Some(queue)) = (rate.pause_when_queue_depth_above, rate.queue.clone()) else {
        return Ok(());
    };
    loop {
        // A stop ends the hold; the caller flushes and checkpoints before it returns.
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        let Some(depth) = broker.queue_depth(&queue).await? else {
            return Err(ctx.failed(
                step,
                0,
                format!("queue `{queue}` does not exist (it disappeared during the run)"),
            ));
        };
        if depth <= limit {
            return Ok(());
        }
        ctx.emit(RunEvent::Throttled {
            step: step.to_string(),
            queue: queue.clone(),
            depth,
            limit,
        });
        if !clock
            .poll_pause(std::time::Duration::from_millis(500))
            .await
        {
            return Ok(());
        }
    }
}
