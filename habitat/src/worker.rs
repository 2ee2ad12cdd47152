//! The reference Habitat worker: consumes the event exchange and polls `pending` rows, applying
//! each event at most once per idempotency key (`processed_events.event_id`).
//!
//! Every event runs in one transaction: claim the `processed_events` row (insert it, or lock
//! the existing one), apply the handler's side effects behind a savepoint, record `processed`
//! or `error`, commit, and only then ack the delivery. A crash anywhere before the commit
//! leaves nothing behind but an unacked message, which the broker redelivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, message::Delivery};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::error::{Context, HabitatError, short_string};
use super::handlers;
use super::schema;

/// Whether the worker has "the bug".
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FailureMode {
    /// The fixed worker: every handler runs.
    #[default]
    None,
    /// The buggy worker: events whose type matches one of `patterns` fail with `message`,
    /// for a `share` of their event ids. Which ids fail is a hash of the id, so the same
    /// event fails again when retried by the same buggy worker.
    Failing {
        /// Event type patterns: an exact type, a prefix ending in `*` (`allocation.*`), or `*`.
        patterns: Vec<String>,
        /// Share of matching events that fail, `0..=1`.
        share: f64,
        /// The `error_message` recorded for them.
        message: String,
    },
}

impl FailureMode {
    /// The bug that fails every matching event with a realistic constraint error.
    pub fn failing(patterns: &[&str], share: f64) -> FailureMode {
        FailureMode::Failing {
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            share,
            message: r#"null value in column "amount" of relation "allocations" violates not-null constraint"#
                .to_owned(),
        }
    }

    /// The message to fail `event_id` with, if the bug hits it.
    fn failure(&self, event_type: &str, event_id: &str) -> Option<&str> {
        let FailureMode::Failing {
            patterns,
            share,
            message,
        } = self
        else {
            return None;
        };
        let matches = patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => p == event_type,
        });
        (matches && unit_hash(event_id) < *share).then_some(message.as_str())
    }
}

/// FNV-1a of `s`, mapped to `0..1`: a stable per-event coin without a random generator.
fn unit_hash(s: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's high bits barely move for ids differing in their last digit; the murmur3
    // finaliser spreads every input bit over the whole word.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// How to run the worker.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerConfig {
    /// Durable topic exchange the events are published to.
    pub exchange: String,
    /// Durable queue bound to the exchange with `#`.
    pub queue: String,
    /// Fixed or buggy.
    pub failing: FailureMode,
    /// Unacked deliveries the broker may push ahead; also the most events committed together.
    pub prefetch: u16,
    /// Pause between polls of `pending` rows when the last poll found less than a batch.
    pub poll_interval: Duration,
    /// Rows claimed per poll, all committed together.
    ///
    /// Each event runs behind its own savepoint; past 64 of them in one transaction
    /// PostgreSQL's per-backend subtransaction cache overflows and slows every other
    /// session's snapshots, so batches (and `prefetch`) should stay at or below 64.
    pub poll_batch: u32,
    /// Concurrent pollers; `FOR UPDATE SKIP LOCKED` lets them share the table.
    pub pollers: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            exchange: "habitat-events".into(),
            queue: "habitat-worker".into(),
            failing: FailureMode::None,
            prefetch: 64,
            poll_interval: Duration::from_millis(500),
            poll_batch: 64,
            pollers: 2,
        }
    }
}

/// What the worker has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Events whose side effects were applied and that are now `processed`.
    pub processed: u64,
    /// Events recorded as `error`.
    pub failed: u64,
    /// Deliveries skipped because their event was already `processed`.
    pub duplicates: u64,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
    duplicates: AtomicU64,
}

impl Counters {
    fn record(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Processed => &self.processed,
            Outcome::Failed(_) => &self.failed,
            Outcome::Duplicate => &self.duplicates,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
        }
    }
}

/// What became of one event.
#[derive(Debug, PartialEq)]
enum Outcome {
    Processed,
    Failed(String),
    Duplicate,
}

struct Shared {
    pool: PgPool,
    config: WorkerConfig,
    counters: Counters,
}

/// The reference Habitat worker.
pub struct Worker;

/// A running worker; stop it with [`WorkerHandle::stop`].
pub struct WorkerHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    connection: Connection,
    channel: Channel,
    consumer_tag: String,
}

impl Worker {
    /// Creates the schema if needed, declares the exchange and queue, and starts consuming
    /// and polling. Returns once the consumer is registered, so events published after this
    /// returns are seen.
    pub async fn start(
        pool: PgPool,
        amqp_url: &str,
        config: WorkerConfig,
    ) -> Result<WorkerHandle, HabitatError> {
        schema::apply(&pool)
            .await
            .context("apply the habitat schema")?;
        let exchange = short_string("exchange", &config.exchange)?;
        let queue = short_string("queue", &config.queue)?;
        let consumer_tag = format!("habitat-worker-{}", Uuid::new_v4().simple());

        let (connection, channel) = super::publisher::open_channel(amqp_url).await?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .context("set the prefetch count")?;
        super::publisher::declare_exchange(&channel, exchange.clone(), &config.exchange).await?;
        channel
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context(format!("declare queue `{}`", config.queue))?;
        channel
            .queue_bind(
                queue.clone(),
                exchange,
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context(format!(
                "bind queue `{}` to exchange `{}`",
                config.queue, config.exchange
            ))?;
        let consumer = channel
            .basic_consume(
                queue,
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context(format!("consume queue `{}`", config.queue))?;

        let pollers = config.pollers;
        let shared = Arc::new(Shared {
            pool,
            config,
            counters: Counters::default(),
        });
        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = vec![(
            "consumer",
            tokio::spawn(consume(shared.clone(), consumer, watcher.clone())),
        )];
        for _ in 0..pollers {
            tasks.push((
                "poller",
                tokio::spawn(poll(shared.clone(), watcher.clone())),
            ));
        }
        tracing::info!(
            exchange = %shared.config.exchange,
            queue = %shared.config.queue,
            failing = ?shared.config.failing,
            "habitat worker started"
        );
        Ok(WorkerHandle {
            shared,
            shutdown,
            tasks,
            connection,
            channel,
            consumer_tag,
        })
    }
}

impl WorkerHandle {
    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.shared.counters.snapshot()
    }

    /// Finishes the event in hand, stops consuming and polling, and closes the connection.
    /// Deliveries prefetched but not handled go back to the queue.
    pub async fn stop(self) -> Result<WorkerStats, HabitatError> {
        // A send error only means every task is gone already.
        let _ = self.shutdown.send(true);
        let mut failure = None;
        for (task, handle) in self.tasks {
            if let Err(error) = handle.await {
                failure.get_or_insert(HabitatError::Task {
                    task,
                    message: error.to_string(),
                });
            }
        }
        self.channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await
            .context("cancel the consumer")?;
        self.channel
            .close(200, "worker stopped".into())
            .await
            .context("close the channel")?;
        self.connection
            .close(200, "worker stopped".into())
            .await
            .context("close the RabbitMQ connection")?;
        let stats = self.shared.counters.snapshot();
        tracing::info!(?stats, "habitat worker stopped");
        match failure {
            Some(error) => Err(error),
            None => Ok(stats),
        }
    }
}

async fn consume(
    shared: Arc<Shared>,
    mut consumer: lapin::Consumer,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = usize::from(shared.config.prefetch.max(1));
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            next = consumer.next() => next,
        };
        let mut batch = Vec::new();
        let mut ended = false;
        match first {
            Some(Ok(delivery)) => batch.push(delivery),
            Some(Err(error)) => {
                tracing::error!(%error, "consumer failed");
                break;
            }
            None => break,
        }
        // Take what the broker has already pushed, without waiting for more: one commit per
        // batch instead of per event is what lets the consumer keep up with a replay.
        while batch.len() < limit {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(error))) => {
                    tracing::error!(%error, "consumer failed");
                    ended = true;
                    break;
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        handle_deliveries(&shared, batch).await;
        if ended {
            break;
        }
    }
}

/// What a delivery says about its event.
struct Delivered {
    event_id: String,
    event_type: String,
    payload: Value,
}

impl Delivered {
    fn read(delivery: &Delivery) -> Delivered {
        let payload: Value = serde_json::from_slice(&delivery.data).unwrap_or_else(|_| {
            // Keep what arrived; the handler will reject it and the row shows why.
            serde_json::json!({ "raw": String::from_utf8_lossy(&delivery.data) })
        });
        let event_type = if delivery.routing_key.as_str().is_empty() {
            delivery
                .properties
                .kind()
                .as_ref()
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default()
        } else {
            delivery.routing_key.as_str().to_owned()
        };
        let event_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .or_else(|| {
                payload
                    .get("event_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            // A hand-published message (the runbook's `rabbitmqadmin publish`) has no id: it
            // is a new event, so it gets a fresh id rather than one derived from its content,
            // which would turn a deliberate second `period.close` into a duplicate.
            .unwrap_or_else(|| format!("evt_{}", Uuid::new_v4().simple()));
        Delivered {
            event_id,
            event_type,
            payload,
        }
    }
}

/// Runs a batch of deliveries in one transaction and acks them after the commit, or
/// requeues them all if the batch could not be recorded.
async fn handle_deliveries(shared: &Shared, batch: Vec<Delivery>) {
    let events: Vec<Delivered> = batch.iter().map(Delivered::read).collect();
    let Some(last) = batch.last() else {
        return;
    };
    match process_delivered(shared, &events).await {
        Ok(outcomes) => {
            // Acking the last tag with `multiple` acks the whole batch: deliveries on this
            // channel are handled strictly in order.
            let all = BasicAckOptions { multiple: true };
            if let Err(error) = last.ack(all).await {
                // The commit stands; redeliveries will be skipped as duplicates.
                tracing::warn!(%error, "ack failed");
            }
            for (event, outcome) in events.iter().zip(&outcomes) {
                log_outcome(&event.event_id, &event.event_type, outcome);
                shared.counters.record(outcome);
            }
        }
        Err(error) => {
            tracing::error!(%error, events = events.len(), "events not recorded, requeueing");
            // Back off so a database outage does not turn into a hot redelivery loop.
            tokio::time::sleep(shared.config.poll_interval).await;
            let requeue = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            if let Err(error) = last.nack(requeue).await {
                tracing::warn!(%error, "nack failed");
            }
        }
    }
}

fn log_outcome(event_id: &str, event_type: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Processed => tracing::debug!(event_id, event_type, "Event processed"),
        Outcome::Failed(message) => {
            tracing::warn!(event_id, event_type, error = %message, "Event failed")
        }
        Outcome::Duplicate => {
            tracing::debug!(event_id, event_type, "Event already processed, skipped")
        }
    }
}

/// Claims and runs delivered events in one transaction; each event's claim, side effects
/// and status commit together.
async fn process_delivered(
    shared: &Shared,
    events: &[Delivered],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = shared.pool.begin().await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let outcome = match claim(&mut tx, event).await? {
            Some(row_id) => {
                run_claimed(
                    shared,
                    &mut tx,
                    row_id,
                    &event.event_id,
                    &event.event_type,
                    &event.payload,
                )
                .await?
            }
            None => Outcome::Duplicate,
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Locks the event's `processed_events` row, inserting it if new; `None` when the event was
/// already processed (including earlier in the same batch).
async fn claim(conn: &mut PgConnection, event: &Delivered) -> Result<Option<i64>, sqlx::Error> {
    // Inserting first makes concurrent deliveries of a new event serialise on the unique
    // index: the loser waits for the winner's commit and then finds the row.
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO processed_events (event_type, event_id, payload, status) \
         VALUES ($1, $2, $3, 'processing') ON CONFLICT (event_id) DO NOTHING RETURNING id",
    )
    .bind(&event.event_type)
    .bind(&event.event_id)
    .bind(&event.payload)
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(inserted);
    }
    let existing: Option<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM processed_events WHERE event_id = $1 FOR UPDATE")
            .bind(&event.event_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((id, status)) = existing else {
        // Deleted between the insert attempt and the lock (a force replay racing us); the
        // batch is requeued and the redelivery takes the now-free slot.
        return Err(sqlx::Error::RowNotFound);
    };
    if status == "processed" {
        return Ok(None);
    }
    // `pending`, `error` or a stuck `processing`: the delivery is a retry of an event that
    // never took effect, so it runs now, with the payload it carries.
    sqlx::query("UPDATE processed_events SET event_type = $2, payload = $3 WHERE id = $1")
        .bind(id)
        .bind(&event.event_type)
        .bind(&event.payload)
        .execute(&mut *conn)
        .await?;
    Ok(Some(id))
}

/// Applies a claimed event and records its status; the caller commits.
async fn run_claimed(
    shared: &Shared,
    conn: &mut PgConnection,
    row_id: i64,
    event_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Outcome, sqlx::Error> {
    apply_event(
        &shared.config.failing,
        conn,
        row_id,
        event_id,
        event_type,
        payload,
    )
    .await
}

/// What became of an event applied again (the admin API's replay).
#[derive(Debug, Clone, PartialEq)]
pub enum Replayed {
    Processed,
    /// The handler failed again; recorded as `error` with this message.
    Failed(String),
}

/// Applies one `processed_events` row again, as the worker does (the handler's side effects
/// and the row's status, in the caller's transaction, which commits).
pub async fn apply_row(
    failing: &FailureMode,
    conn: &mut PgConnection,
    row_id: i64,
    event_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Replayed, sqlx::Error> {
    match apply_event(failing, conn, row_id, event_id, event_type, payload).await? {
        Outcome::Failed(message) => Ok(Replayed::Failed(message)),
        _ => Ok(Replayed::Processed),
    }
}

async fn apply_event(
    failing: &FailureMode,
    conn: &mut PgConnection,
    row_id: i64,
    event_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Outcome, sqlx::Error> {
    let failure = match failing.failure(event_type, event_id) {
        Some(message) => Some(message.to_owned()),
        None => {
            // The savepoint undoes a half-applied handler while keeping the claim, so the
            // failure can still be recorded in the same transaction.
            sqlx::query("SAVEPOINT habitat_handler")
                .execute(&mut *conn)
                .await?;
            match handlers::apply(&mut *conn, event_type, payload).await {
                Ok(()) => {
                    sqlx::query("RELEASE SAVEPOINT habitat_handler")
                        .execute(&mut *conn)
                        .await?;
                    None
                }
                Err(error) => {
                    let Some(message) = error.event_message() else {
                        return Err(match error {
                            handlers::HandlerError::Database(e) => e,
                            handlers::HandlerError::Rejected(_) => sqlx::Error::RowNotFound,
                        });
                    };
                    sqlx::query("ROLLBACK TO SAVEPOINT habitat_handler")
                        .execute(&mut *conn)
                        .await?;
                    Some(message)
                }
            }
        }
    };
    match failure {
        None => {
            sqlx::query(
                "UPDATE processed_events \
                 SET status = 'processed', processed_at = now(), error_message = NULL \
                 WHERE id = $1",
            )
            .bind(row_id)
            .execute(&mut *conn)
            .await?;
            Ok(Outcome::Processed)
        }
        Some(message) => {
            sqlx::query(
                "UPDATE processed_events \
                 SET status = 'error', processed_at = now(), error_message = $2, \
                     retry_count = retry_count + 1 \
                 WHERE id = $1",
            )
            .bind(row_id)
            .bind(&message)
            .execute(&mut *conn)
            .await?;
            Ok(Outcome::Failed(message))
        }
    }
}

async fn poll(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let claimed = match poll_once(&shared).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "polling pending events failed");
                0
            }
        };
        if claimed < shared.config.poll_batch as usize {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(shared.config.poll_interval) => {}
            }
        }
    }
}

/// Claims a batch of `pending` rows and runs each; returns how many were claimed.
async fn poll_once(shared: &Shared) -> Result<usize, sqlx::Error> {
    let mut tx = shared.pool.begin().await?;
    let rows: Vec<(i64, String, String, Value)> = sqlx::query_as(
        "SELECT id, event_id, event_type, payload FROM processed_events \
         WHERE status = 'pending' ORDER BY processed_at NULLS FIRST, id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(i64::from(shared.config.poll_batch))
    .fetch_all(&mut *tx)
    .await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for (row_id, event_id, event_type, payload) in &rows {
        let outcome = run_claimed(shared, &mut tx, *row_id, event_id, event_type, payload).await?;
        log_outcome(event_id, event_type, &outcome);
        outcomes.push(outcome);
    }
    tx.commit().await?;
    // Counted only once committed, so the counters never run ahead of the table.
    for outcome in &outcomes {
        shared.counters.record(outcome);
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::FailureMode;

    fn case(mode: &FailureMode, event_type: &str, fails: bool) {
        assert_eq!(
            mode.failure(event_type, "evt_1").is_some(),
            fails,
            "{event_type} under {mode:?}"
        );
    }

    #[test]
    fn failure_patterns_match_types() {
        let bug = FailureMode::failing(&["allocation.*", "payment.completed"], 1.0);
        case(&bug, "allocation.calculated", true);
        case(&bug, "allocation.distributed", true);
        case(&bug, "payment.completed", true);
        case(&bug, "payment.initiated", false);
        case(&FailureMode::failing(&["*"], 1.0), "period.closed", true);
        case(&FailureMode::failing(&["*"], 0.0), "period.closed", false);
        case(&FailureMode::None, "allocation.calculated", false);
    }

    #[test]
    fn failing_share_is_roughly_respected() {
        let bug = FailureMode::failing(&["*"], 0.3);
        let failed = (0..10_000)
            .filter(|n| bug.failure("x", &format!("evt_{n}")).is_some())
            .count();
        assert!((2_700..3_300).contains(&failed), "{failed}");
    }
}
