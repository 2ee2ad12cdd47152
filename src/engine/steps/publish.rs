//! `publish`: each selected event (or one message) to the exchange, persistent, with publisher confirms.
//! The checkpoint advances only over confirmed messages, and the publisher never gets more than
//! `confirms_in_flight` messages ahead of it: a crash republishes at most that many.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use tokio::sync::Notify;

use crate::engine::binds::audited;

use crate::engine::broker::Broker;
use crate::engine::claims::{self, Claim, Executor};
use crate::engine::error::{BrokerError, RunError};
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::{self, Batch, Checkpoint};
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
        let at = Checkpoint {
            checkpoint: 1,
            ..Checkpoint::finished(&step.id, 1)
        };
        ctx.checkpoint_alone(writes, at).await?;
        return Ok(1);
    }

    let total = ctx.limit as i64;
    let batch = i64::from(raw.rate_limit.batch_size).max(1);
    let window = i64::from(raw.rate_limit.confirms_in_flight).max(1);
    let span = |from, base_touched| Span {
        from,
        total,
        batch,
        window,
        base_touched,
    };
    // Committed writes go through claims, so that every executor of the run shares the step.
    let (pool, executor) = match (writes.shared(), ctx.executor) {
        (Some(pool), Some(executor)) if total > 0 => (pool, executor),
        _ => {
            if checkpoint >= total {
                let at = Checkpoint {
                    checkpoint,
                    ..Checkpoint::finished(&step.id, touched)
                };
                ctx.checkpoint_alone(writes, at).await?;
                return Ok(touched as u64);
            }
            let span = span(checkpoint, touched - checkpoint);
            return stream(ctx, writes, broker, clock, &mut renderer, step, span, None).await;
        }
    };
    let opening = || format!("opening step `{}`", step.id);
    let mut left = claims::open_step(&pool, ctx.run_id, &step.id, batch, total).await?;
    claims::release_mine(&pool, executor, &step.id)
        .await
        .map_err(RunError::db(opening()))?;
    // A pass streams the batches this executor can claim, one after another; the step ends for
    // it once every batch is done, by whichever executor (the barrier before the next step).
    let mut polls = 0u32;
    loop {
        let claimed = Claimed {
            pool: pool.clone(),
            executor,
            segments: VecDeque::new(),
            positions: 0,
            before: total - left,
            exhausted: false,
        };
        let streamed = stream(
            ctx,
            writes,
            broker,
            clock,
            &mut renderer,
            step,
            span(0, 0),
            Some(claimed),
        )
        .await;
        if let Err(e) = streamed {
            // What this executor claimed and did not publish goes back to the others at once.
            let _ = claims::release_mine(&pool, executor, &step.id).await;
            return Err(e);
        }
        left = claims::events_left(&pool, ctx.run_id, &step.id)
            .await
            .map_err(RunError::db(opening()))?;
        if left == 0 {
            // What the step published, by every executor.
            return state::step_touched(&pool, ctx.run_id, &step.id)
                .await
                .map_err(RunError::db(opening()));
        }
        // Nothing is claimed once a stop is requested or the run ended: stop with it.
        ctx.note_stop(claims::still_running(&pool, ctx.run_id).await?);
        ctx.cancel.check()?;
        // Held by other executors: wait for them, or for a claim of theirs to run out; now and
        // then, give back at once the claims of executors of this machine that died.
        polls += 1;
        if polls.is_multiple_of(20) {
            claims::release_the_dead(&pool, ctx.run_id).await?;
        }
        tokio::time::sleep(HELD_BY_OTHERS).await;
    }
}

/// Publishes a stretch of the selection with a sliding window of confirms, recording its
/// checkpoint as confirms come: from the step's checkpoint to its end, or (claimed) the batches
/// this executor can claim until none is left to claim. Returns the rows touched (the first case).
#[allow(clippy::too_many_arguments)]
async fn stream<W: Writes, B: Broker, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    broker: &mut B,
    clock: &mut C,
    renderer: &mut Renderer,
    step: &PublishStep,
    span: Span,
    claimed: Option<Claimed<'_>>,
) -> Result<u64, RunError> {
    let (window, base_touched) = (span.window, span.base_touched);
    let progress = Progress::new(span.from);
    // One batch waits ready while the publisher sends the current one.
    let (ready, batches) = tokio::sync::mpsc::channel(1);
    let shared = Shared {
        ctx: RefCell::new(ctx),
        progress: &progress,
    };
    let keeping = keep(&shared, writes, &step.id, ready, span, claimed);
    let sending = send(&shared, broker, clock, renderer, step, batches, window);
    let (sent, kept) = tokio::join!(sending, keeping);
    // A checkpoint that could not be written outranks what the publisher saw: the run stops there.
    kept?;
    sent?;
    Ok((base_touched + progress.checkpointed.get()) as u64)
}

/// The batches this executor claimed for the publisher, in the order it publishes them.
struct Claimed<'e> {
    pool: sqlx::PgPool,
    executor: &'e Executor,
    /// Claimed batches whose messages are handed to the publisher and not all recorded yet.
    segments: VecDeque<Segment>,
    /// The stream position of the last message handed to the publisher.
    positions: i64,
    /// Events of the step done before this executor came to it.
    before: i64,
    /// No batch of the step is left to claim.
    exhausted: bool,
}

/// One claimed batch in the stream: its messages have positions `first..=last`, and the first
/// is the event after selection `seq` `start`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    claim: Claim,
    start: i64,
    first: i64,
    last: i64,
}

/// What the next claim gave the publisher.
enum Next {
    Rows(Vec<Row>),
    /// No batch of the step is left to claim now (done, or held: this pass ends).
    Exhausted,
}

impl Claimed<'_> {
    /// Claims the next batch and reads its events from where an earlier holder's confirms got.
    async fn next(&mut self, selection: &str, step: &str) -> Result<Next, sqlx::Error> {
        let Some(claim) = claims::claim(&self.pool, self.executor, step).await? else {
            return Ok(Next::Exhausted);
        };
        let start = claim.progress.max(claim.from);
        let mut rows: Vec<Row> = {
            let mut conn = self.pool.acquire().await?;
            fetch_rows(
                &mut conn,
                selection,
                self.executor.run_id,
                start,
                claim.upto,
            )
            .await?
        };
        let first = self.positions + 1;
        for row in &mut rows {
            self.positions += 1;
            row.0 = self.positions;
        }
        self.segments.push_back(Segment {
            claim,
            start,
            first,
            last: self.positions,
        });
        Ok(Next::Rows(rows))
    }

    /// Records the claimed batches whose messages are all confirmed up to stream position
    /// `confirmed` (each marked done under its fence), and how far the confirms reached in the
    /// one after; in one transaction that holds the run's batch lock. Says whether `replay stop`
    /// was requested.
    async fn record(&mut self, confirmed: i64, step: &str, total: i64) -> Result<bool, RunError> {
        let doing = || format!("checkpointing step `{step}`");
        let mut tx = self.pool.begin().await.map_err(RunError::db(doing()))?;
        let stop =
            claims::begin_batch(&mut tx, self.executor.run_id, claims::Going::Recording).await?;
        while let Some(&head) = self.segments.front() {
            if head.last <= confirmed {
                let batch = Batch {
                    step,
                    from: head.claim.from,
                    upto: head.claim.upto,
                    rows: head.claim.upto - head.claim.from,
                    total,
                };
                claims::complete(&mut tx, self.executor, head.claim, &batch).await?;
                self.segments.pop_front();
                continue;
            }
            if confirmed >= head.first {
                let seq = head.start + confirmed - head.first + 1;
                claims::record_progress(&mut tx, self.executor, step, head.claim, seq).await?;
            }
            break;
        }
        tx.commit().await.map_err(RunError::db(doing()))?;
        Ok(stop)
    }
}

/// How far a publish step got, shared by the half that publishes and the half that records.
///
/// The invariant that bounds duplicates: the publisher never hands the broker a message more
/// than `confirms_in_flight` past the recorded checkpoint, so a crash at any moment republishes
/// at most `confirms_in_flight` messages. The checkpoint itself only ever covers confirmed
/// messages, so none is skipped.
struct Progress {
    /// The last `seq` handed to the broker.
    published: Cell<i64>,
    /// Every message up to this `seq` is confirmed.
    confirmed: Cell<i64>,
    /// Recorded in the step's checkpoint: a resume publishes from here on.
    checkpointed: Cell<i64>,
    /// The publisher is held by its window until the next checkpoint.
    waiting: Cell<bool>,
    /// The publisher has stopped sending (finished, stopped, or failed) and settled what it could.
    finished: Cell<bool>,
    /// The recorder has stopped (a checkpoint failed): nothing more may be published.
    abandoned: Cell<bool>,
    /// Wakes the recorder: confirms moved, the publisher waits, or it finished.
    confirms: Notify,
    /// Wakes the publisher: the checkpoint moved, or the recorder stopped.
    recorded: Notify,
}

impl Progress {
    fn new(checkpoint: i64) -> Progress {
        Progress {
            published: Cell::new(checkpoint),
            confirmed: Cell::new(checkpoint),
            checkpointed: Cell::new(checkpoint),
            waiting: Cell::new(false),
            finished: Cell::new(false),
            abandoned: Cell::new(false),
            confirms: Notify::new(),
            recorded: Notify::new(),
        }
    }

    fn confirm(&self, seq: Option<i64>) {
        if let Some(seq) = seq {
            self.confirmed.set(self.confirmed.get().max(seq));
            self.confirms.notify_one();
        }
    }

    fn finish(&self) {
        self.finished.set(true);
        self.confirms.notify_one();
    }
}

/// The step context both halves use, never across an await.
struct Shared<'c, 'p> {
    ctx: RefCell<&'c mut StepContext<'p>>,
    progress: &'c Progress,
}

/// The stretch of the selection a publish step covers, and how it is cut.
struct Span {
    from: i64,
    total: i64,
    batch: i64,
    window: i64,
    base_touched: i64,
}

/// The publishing half: renders and sends each event, keeping the window, and settles confirms.
#[allow(clippy::too_many_arguments)]
async fn send<B: Broker, C: Clock>(
    shared: &Shared<'_, '_>,
    broker: &mut B,
    clock: &mut C,
    renderer: &mut Renderer,
    step: &PublishStep,
    mut batches: tokio::sync::mpsc::Receiver<Vec<Row>>,
    window: i64,
) -> Result<(), RunError> {
    let p = shared.progress;
    let outcome = async {
        while let Some(rows) = batches.recv().await {
            throttle(shared, broker, clock, &step.id).await?;
            clock.pace(rows.len() as u64).await;
            if shared.ctx.borrow().cancel.is_cancelled() {
                // A stop or a signal: the confirms in flight are settled and recorded below, so
                // a resume republishes nothing.
                return Err(RunError::Interrupted);
            }
            for (seq, event_id, event_type, payload) in rows {
                hold(p, broker, seq, window).await?;
                if p.abandoned.get() {
                    return Ok(());
                }
                let row = EventRow {
                    seq,
                    event_id,
                    event_type,
                    payload,
                };
                let message = renderer.render(Some(&row)).map_err(|m| {
                    shared.ctx.borrow().failed(
                        &step.id,
                        p.confirmed.get() as u64,
                        format!("event `{}`: {m}", row.event_id),
                    )
                })?;
                broker.publish(message).await?;
                p.published.set(seq);
                // Take the confirms that have come in, without waiting for any.
                while let Some(seq) = broker.confirmed(false).await? {
                    p.confirm(Some(seq));
                }
            }
        }
        Ok(())
    }
    .await;
    // Settle what is in flight unless the broker itself failed (its confirms will not come).
    let outcome = match outcome {
        Err(RunError::Broker(e)) => Err(RunError::Broker(e)),
        other => match broker.flush().await {
            Ok(last) => {
                p.confirm(last);
                other
            }
            Err(e) => other.and(Err(RunError::Broker(e))),
        },
    };
    p.finish();
    let ctx = shared.ctx.borrow();
    outcome.map_err(|e| match e {
        RunError::Broker(e) => refused_or_lost(&ctx, &step.id, p.confirmed.get(), e),
        other => other,
    })
}

/// Holds the publisher while `seq` would be more than `window` past the recorded checkpoint.
async fn hold<B: Broker>(
    p: &Progress,
    broker: &mut B,
    seq: i64,
    window: i64,
) -> Result<(), RunError> {
    if seq - p.checkpointed.get() <= window {
        return Ok(());
    }
    p.waiting.set(true);
    while seq - p.checkpointed.get() > window && !p.abandoned.get() {
        if p.confirmed.get() < p.published.get() {
            // The oldest confirm is what the next checkpoint needs.
            p.confirm(broker.confirmed(true).await?);
        } else {
            // All confirmed: the recorder is writing (or about to write) the checkpoint.
            p.confirms.notify_one();
            p.recorded.notified().await;
        }
    }
    p.waiting.set(false);
    Ok(())
}

/// The recording half: reads the selection a batch ahead of the publisher and records the
/// checkpoint over confirmed messages, often enough that the publisher's window never stalls.
async fn keep<W: Writes>(
    shared: &Shared<'_, '_>,
    writes: &mut W,
    step: &str,
    ready: tokio::sync::mpsc::Sender<Vec<Row>>,
    span: Span,
    mut claimed: Option<Claimed<'_>>,
) -> Result<(), RunError> {
    let p = shared.progress;
    let selection = writes.selection_table();
    let (run_id, lease) = {
        let ctx = shared.ctx.borrow();
        (ctx.run_id, ctx.lease)
    };
    let outcome = async {
        let mut ready = Some(ready);
        let mut fetched = span.from;
        // A checkpoint every eighth of the window: the publisher's window counts from the
        // recorded checkpoint, so the sooner confirms are recorded, the closer its unconfirmed
        // messages come to the whole window (a half measured 0.89x-0.94x of a bare publisher).
        let due = (span.window / 8).max(1);
        loop {
            let (confirmed, checkpointed) = (p.confirmed.get(), p.checkpointed.get());
            let finished = p.finished.get();
            if confirmed > checkpointed
                && (confirmed - checkpointed >= due || p.waiting.get() || finished)
                && let Some(c) = claimed.as_mut()
            {
                let stop = c.record(confirmed, step, span.total).await?;
                p.checkpointed.set(confirmed);
                p.recorded.notify_one();
                let mut ctx = shared.ctx.borrow_mut();
                ctx.note_stop(stop);
                if confirmed / span.batch > checkpointed / span.batch || finished {
                    ctx.emit(RunEvent::Progress {
                        step: step.to_string(),
                        done: (c.before + confirmed).min(span.total) as u64,
                        total: span.total as u64,
                    });
                }
                continue;
            }
            if confirmed > checkpointed
                && (confirmed - checkpointed >= due || p.waiting.get() || finished)
            {
                let done = confirmed >= span.total;
                let at = Checkpoint {
                    step,
                    checkpoint: confirmed,
                    touched: span.base_touched + confirmed,
                    done,
                    wrote_rows: false,
                };
                let fail = |e: sqlx::Error| shared.ctx.borrow().db_failed(step, checkpointed as u64, e);
                let mut tx = writes.begin().await.map_err(fail)?;
                let stop = W::checkpoint(&mut tx, run_id, lease, &at).await?;
                tx.commit().await.map_err(fail)?;
                p.checkpointed.set(confirmed);
                p.recorded.notify_one();
                let mut ctx = shared.ctx.borrow_mut();
                ctx.note_stop(stop);
                // Progress lines on batch boundaries, as for the other step kinds.
                if done || confirmed / span.batch > checkpointed / span.batch {
                    ctx.emit(RunEvent::Progress {
                        step: step.to_string(),
                        done: confirmed as u64,
                        total: span.total as u64,
                    });
                }
                continue;
            }
            if finished {
                return Ok(());
            }
            if let Some(c) = claimed.as_mut() {
                if c.exhausted {
                    ready = None;
                }
                let mut closed = false;
                tokio::select! {
                    _ = p.confirms.notified() => {}
                    permit = async { ready.as_ref()?.reserve().await.ok() }, if ready.is_some() => {
                        match permit {
                            // The executor's own bookkeeping: a failure there is never the plan's.
                            Some(permit) => match c.next(selection, step).await.map_err(
                                RunError::db(format!("claiming a batch of step `{step}`")),
                            )? {
                                Next::Rows(rows) => permit.send(rows),
                                Next::Exhausted => c.exhausted = true,
                            },
                            None => closed = true,
                        }
                    }
                }
                if closed {
                    ready = None;
                }
                continue;
            }
            if fetched >= span.total {
                ready = None;
            }
            let upto = (fetched + span.batch).min(span.total);
            let mut closed = false;
            tokio::select! {
                _ = p.confirms.notified() => {}
                permit = async { ready.as_ref()?.reserve().await.ok() }, if ready.is_some() => {
                    match permit {
                        Some(permit) => {
                            let rows = fetch(writes, selection, run_id, fetched, upto)
                                .await
                                .map_err(|e| {
                                    shared.ctx.borrow().db_failed(step, p.checkpointed.get() as u64, e)
                                })?;
                            permit.send(rows);
                            fetched = upto;
                        }
                        // The publisher stopped taking batches: it is finishing.
                        None => closed = true,
                    }
                }
            }
            if closed {
                ready = None;
            }
        }
    }
    .await;
    if outcome.is_err() {
        p.abandoned.set(true);
        p.recorded.notify_one();
    }
    outcome
}

/// How long an executor waits before claiming again when every batch left is held by others.
const HELD_BY_OTHERS: std::time::Duration = std::time::Duration::from_millis(50);

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
    let rows = fetch_rows(&mut tx, selection, run_id, after, upto).await?;
    tx.commit().await?;
    Ok(rows)
}

async fn fetch_rows(
    conn: &mut sqlx::PgConnection,
    selection: &str,
    run_id: uuid::Uuid,
    after: i64,
    upto: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(audited(&format!(
        "SELECT seq, event_id, event_type, payload::text FROM {selection} \
         WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
    )))
    .bind(run_id)
    .bind(after)
    .bind(upto)
    .fetch_all(conn)
    .await
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

/// Holds publishing while the worker's queue is deeper than the plan allows.
async fn throttle<B: Broker, C: Clock>(
    shared: &Shared<'_, '_>,
    broker: &mut B,
    clock: &mut C,
    step: &str,
) -> Result<(), RunError> {
    let (limit, queue) = {
        let ctx = shared.ctx.borrow();
        let rate = &ctx.plan.raw.rate_limit;
        match (rate.pause_when_queue_depth_above, rate.queue.clone()) {
            (Some(limit), Some(queue)) => (limit, queue),
            _ => return Ok(()),
        }
    };
    loop {
        // A stop ends the hold; the publisher settles and records before it returns.
        if shared.ctx.borrow().cancel.is_cancelled() {
            return Ok(());
        }
        let Some(depth) = broker.queue_depth(&queue).await? else {
            return Err(shared.ctx.borrow().failed(
                step,
                shared.progress.confirmed.get() as u64,
                format!("queue `{queue}` does not exist (it disappeared during the run)"),
            ));
        };
        if depth <= limit {
            return Ok(());
        }
        shared.ctx.borrow_mut().emit(RunEvent::Throttled {
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
