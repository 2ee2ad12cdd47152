//! Guards: conditions on the world, read while a run runs (a read-only SQL value, a queue's
//! depth). They are a clock around the run's clock: before a batch (and between a wait's polls)
//! every guard due is read again, at most once per its `every`; a guard beyond its bound stops
//! the run (resumable) or holds it until the condition clears, at most `max_pause`.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::engine::binds::BindScope;
use crate::engine::broker::{Amqp, Broker};
use crate::engine::notify::{Delivery, Message, Notifier};
use crate::engine::pace::Clock;
use crate::engine::steps::Cancel;
use crate::plan::Plan;
use crate::plan::model::{Guard, GuardAction, NotifyOn};
use crate::plan::prepared::SqlSite;

/// Readings in a row a passing fault may prevent before a guard counts as unreadable.
const UNREAD_LIMIT: u32 = 3;

/// A guard that tripped: what it read, and what the run did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trip {
    pub guard: String,
    pub action: &'static str,
    /// The value read; `None` when the guard could not be read at all.
    pub value: Option<f64>,
    /// What the run did, in words.
    pub message: String,
    /// How long the run held for it (`pause`).
    pub held_secs: f64,
}

/// A guard's definition with its value now, for the dry-run and the review.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GuardReport {
    pub name: String,
    /// `sql` or `queue <name>`.
    pub reads: String,
    /// `max 0.02`, `min 10`, or both.
    pub bound: String,
    pub action: &'static str,
    pub every: String,
    pub max_pause: Option<String>,
    /// The value now (`None` when it has none, or could not be read: see `error`).
    pub value: Option<Value>,
    /// Whether the value now is beyond the bound (the run would stop or hold at once).
    pub beyond: bool,
    pub error: Option<String>,
}

/// What a run's guards need besides the plan.
pub struct Setting {
    pub pool: PgPool,
    /// Binds as the verifications have them (the whole selection), plus `:done_event_ids`.
    pub scope: BindScope,
    pub amqp_url: String,
    pub cancel: Cancel,
    /// Whether this executor drives the run: it records trips and tells the webhooks; a joined
    /// executor only obeys them.
    pub leads: bool,
    /// What a notification of a trip says besides it.
    pub message: Option<Message>,
}

/// One reading of a guard.
enum Reading {
    Within,
    Beyond(f64),
    /// It cannot be read, and will not be by waiting (a query that fails, a queue that is gone).
    Unreadable(String),
    /// A passing fault: read again at the next boundary (the batch meets the same fault); why.
    Skipped(String),
}

/// The run's guards and what they did.
pub struct Guards<'p> {
    plan: &'p Plan,
    setting: Setting,
    broker: Option<Amqp>,
    checked: Vec<Option<Instant>>,
    /// Readings in a row that a passing fault prevented, per guard.
    unread: Vec<u32>,
    notifier: Option<Notifier>,
    started: std::time::Instant,
    /// The trip that stopped the run.
    pub stopped: Option<Trip>,
    /// Every trip, in order.
    pub trips: Vec<Trip>,
    /// Time held for `pause` guards.
    pub paused: Duration,
}

impl<'p> Guards<'p> {
    pub fn new(plan: &'p Plan, setting: Setting) -> Self {
        let tells = setting.leads
            && plan
                .raw
                .notify
                .iter()
                .any(|n| n.on.is_empty() || n.on.contains(&NotifyOn::Guard));
        Guards {
            plan,
            broker: None,
            checked: vec![None; plan.raw.guards.len()],
            unread: vec![0; plan.raw.guards.len()],
            notifier: (tells && !plan.raw.guards.is_empty()).then(|| Notifier::new(plan)),
            started: std::time::Instant::now(),
            setting,
            stopped: None,
            trips: Vec::new(),
            paused: Duration::ZERO,
        }
    }

    /// Reads every guard that is due, and acts on those beyond their bound.
    async fn check_due(&mut self) {
        for i in 0..self.plan.raw.guards.len() {
            if self.stopped.is_some() || self.setting.cancel.is_cancelled() {
                return;
            }
            let every = every(&self.plan.raw.guards[i]);
            if self.checked[i].is_some_and(|at| at.elapsed() < every) {
                continue;
            }
            self.checked[i] = Some(Instant::now());
            match self.read(i).await {
                Reading::Within | Reading::Skipped(_) => {}
                Reading::Beyond(value) => self.trip(i, value).await,
                Reading::Unreadable(why) => {
                    let guard = &self.plan.raw.guards[i];
                    self.stop(Trip {
                        guard: guard.name.clone(),
                        action: GuardAction::Stop.as_str(),
                        value: None,
                        message: format!(
                            "guard `{}` could not be read ({why}); the run stopped and resumes once it can",
                            guard.name
                        ),
                        held_secs: 0.0,
                    })
                    .await;
                }
            }
        }
    }

    /// A guard beyond its bound: stop, or hold until it clears (then stop after `max_pause`).
    async fn trip(&mut self, i: usize, value: f64) {
        let guard = &self.plan.raw.guards[i];
        let beyond = describe_beyond(guard, value);
        if guard.action == GuardAction::Stop {
            let trip = Trip {
                guard: guard.name.clone(),
                action: GuardAction::Stop.as_str(),
                value: Some(value),
                message: format!(
                    "guard `{}` tripped: {beyond}; the run stopped (resumable)",
                    guard.name
                ),
                held_secs: 0.0,
            };
            self.stop(trip).await;
            return;
        }
        let max_pause =
            crate::plan::duration::parse(&guard.max_pause).unwrap_or(Duration::from_secs(30 * 60));
        let every = every(guard);
        let name = guard.name.clone();
        tracing::warn!(guard = %name, value, "guard tripped: {beyond}; holding until it clears");
        self.record(
            "guard_tripped",
            Trip {
                guard: name.clone(),
                action: GuardAction::Pause.as_str(),
                value: Some(value),
                message: format!(
                    "guard `{name}` tripped: {beyond}; the run holds until it clears (at most {})",
                    crate::plan::duration::format(max_pause)
                ),
                held_secs: 0.0,
            },
        )
        .await;
        let since = Instant::now();
        let mut last = value;
        loop {
            // Interruptible by `replay stop` and signals.
            let until = Instant::now() + every;
            while Instant::now() < until {
                if self.setting.cancel.is_cancelled() {
                    self.paused += since.elapsed();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100).min(every)).await;
            }
            self.checked[i] = Some(Instant::now());
            match self.read(i).await {
                Reading::Within => {
                    let held = since.elapsed();
                    self.paused += held;
                    tracing::info!(guard = %name, "guard cleared; the run goes on");
                    let held_secs = held.as_secs_f64();
                    if let Some(t) = self.trips.last_mut() {
                        t.held_secs = held_secs;
                    }
                    if self.setting.leads {
                        crate::engine::state::log(
                            &self.setting.pool,
                            self.setting.scope.run_id(),
                            "guard_cleared",
                            None,
                            json!({"guard": name, "held_secs": held_secs}),
                        )
                        .await;
                    }
                    return;
                }
                Reading::Beyond(v) => last = v,
                Reading::Skipped(_) => {}
                Reading::Unreadable(why) => {
                    self.paused += since.elapsed();
                    self.stop(Trip {
                        guard: name.clone(),
                        action: GuardAction::Pause.as_str(),
                        value: None,
                        message: format!(
                            "guard `{name}` could not be read while the run held for it ({why}); the run stopped (resumable)"
                        ),
                        held_secs: since.elapsed().as_secs_f64(),
                    })
                    .await;
                    return;
                }
            }
            if since.elapsed() >= max_pause {
                let guard = &self.plan.raw.guards[i];
                let held = since.elapsed();
                self.paused += held;
                self.stop(Trip {
                    guard: name.clone(),
                    action: GuardAction::Pause.as_str(),
                    value: Some(last),
                    message: format!(
                        "guard `{name}` did not clear within its max_pause of {} ({}); the run stopped (resumable)",
                        crate::plan::duration::format(max_pause),
                        describe_beyond(guard, last)
                    ),
                    held_secs: held.as_secs_f64(),
                })
                .await;
                return;
            }
        }
    }

    /// Stops the run before its next batch.
    async fn stop(&mut self, trip: Trip) {
        tracing::warn!(guard = %trip.guard, "{}", trip.message);
        self.stopped = Some(trip.clone());
        self.record("guard_tripped", trip).await;
        self.setting.cancel.cancel();
    }

    /// Keeps a trip, logs it in the run log and tells the webhooks (the driver only).
    async fn record(&mut self, kind: &str, trip: Trip) {
        self.trips.push(trip.clone());
        if !self.setting.leads {
            return;
        }
        crate::engine::state::log(
            &self.setting.pool,
            self.setting.scope.run_id(),
            kind,
            None,
            json!(trip),
        )
        .await;
        if let (Some(notifier), Some(base)) = (&mut self.notifier, &self.setting.message) {
            let mut message = base.clone();
            message.moment = NotifyOn::Guard.as_str();
            message.outcome = trip.message.clone();
            message.duration_secs = self.started.elapsed().as_secs_f64();
            notifier.send(NotifyOn::Guard, &message);
        }
    }

    /// Reads guard `i`. A guard that a passing fault keeps from being read `UNREAD_LIMIT` times
    /// in a row (a broker that stays away) is unreadable: the run does not go on unguarded.
    async fn read(&mut self, i: usize) -> Reading {
        let reading = self.read_once(i).await;
        match reading {
            Reading::Skipped(why) => {
                self.unread[i] += 1;
                match self.unread[i] >= UNREAD_LIMIT {
                    true => Reading::Unreadable(format!(
                        "{UNREAD_LIMIT} readings in a row failed; the last: {why}"
                    )),
                    false => Reading::Skipped(why),
                }
            }
            other => {
                self.unread[i] = 0;
                other
            }
        }
    }

    /// Reads guard `i` once.
    async fn read_once(&mut self, i: usize) -> Reading {
        let guard = &self.plan.raw.guards[i];
        if let Some(queue) = &guard.queue_depth {
            if self.broker.is_none() {
                match Amqp::connect(&self.setting.amqp_url).await {
                    Ok(b) => self.broker = Some(b),
                    Err(e) if e.is_transient() => return Reading::Skipped(e.to_string()),
                    Err(e) => return Reading::Unreadable(e.to_string()),
                }
            }
            let Some(broker) = self.broker.as_mut() else {
                return Reading::Skipped("no broker connection".into());
            };
            return match broker.queue_depth(queue).await {
                Ok(Some(depth)) => judge(guard, depth as f64),
                Ok(None) => Reading::Unreadable(format!("queue `{queue}` does not exist")),
                Err(e) => {
                    self.broker = None;
                    match e.is_transient() {
                        true => Reading::Skipped(e.to_string()),
                        false => Reading::Unreadable(e.to_string()),
                    }
                }
            };
        }
        let label = format!("guard `{}`", guard.name);
        let value = async {
            let mut tx = crate::engine::writes::begin_read_only(&self.setting.pool)
                .await
                .map_err(crate::engine::error::RunError::db(format!(
                    "reading {label}"
                )))?;
            // Every lane waits on the guard: a query that hangs must not hang the run.
            sqlx::query("SET LOCAL statement_timeout = '30s'")
                .execute(&mut *tx)
                .await
                .map_err(crate::engine::error::RunError::db(format!(
                    "reading {label}"
                )))?;
            let v = crate::engine::verify::query_value(
                &mut tx,
                &self.setting.scope,
                self.plan,
                SqlSite::Guard(i),
                &label,
            )
            .await?;
            tx.commit()
                .await
                .map_err(crate::engine::error::RunError::db(format!(
                    "reading {label}"
                )))?;
            Ok::<_, crate::engine::error::RunError>(v)
        }
        .await;
        match value {
            Ok(Value::Null) => Reading::Within,
            Ok(v) => match crate::engine::verify::as_number(&v) {
                Some(n) => judge(guard, n),
                None => Reading::Unreadable(format!("it returned {v}, not a number")),
            },
            Err(e) if e.class() == crate::engine::error::FaultClass::Transient => {
                tracing::warn!(error = %e, "cannot read {label} now; reading it again at the next batch");
                Reading::Skipped(e.to_string())
            }
            Err(e) => Reading::Unreadable(e.to_string()),
        }
    }

    /// Waits for the webhook deliveries of trips, records them in the run log, and returns them.
    pub async fn finish(&mut self) -> Vec<Delivery> {
        if let Some(broker) = self.broker.take() {
            broker.close().await;
        }
        let Some(notifier) = self.notifier.take() else {
            return Vec::new();
        };
        let deliveries = notifier.finish().await;
        for d in &deliveries {
            crate::engine::state::log(
                &self.setting.pool,
                self.setting.scope.run_id(),
                "notify",
                None,
                json!(d),
            )
            .await;
        }
        deliveries
    }
}

/// How often a guard is read.
fn every(guard: &Guard) -> Duration {
    crate::plan::duration::parse(&guard.every).unwrap_or(Duration::from_secs(10))
}

fn judge(guard: &Guard, value: f64) -> Reading {
    match beyond(guard, value) {
        true => Reading::Beyond(value),
        false => Reading::Within,
    }
}

/// Whether a value is outside the guard's bounds.
pub fn beyond(guard: &Guard, value: f64) -> bool {
    guard.max.is_some_and(|m| value > m) || guard.min.is_some_and(|m| value < m)
}

/// `0.05 > max 0.02`, for messages.
fn describe_beyond(guard: &Guard, value: f64) -> String {
    let reads = match &guard.queue_depth {
        Some(queue) => format!("queue `{queue}` holds {value}"),
        None => format!("the value is {value}"),
    };
    match (guard.max, guard.min) {
        (Some(max), _) if value > max => format!("{reads}, above its max of {max}"),
        (_, Some(min)) if value < min => format!("{reads}, below its min of {min}"),
        _ => reads,
    }
}

/// A guard's bound in words: `max 0.02`, `min 10`, `min 1, max 5`.
pub fn bound(guard: &Guard) -> String {
    match (guard.min, guard.max) {
        (Some(min), Some(max)) => format!("min {min}, max {max}"),
        (Some(min), None) => format!("min {min}"),
        (None, Some(max)) => format!("max {max}"),
        (None, None) => String::new(),
    }
}

/// Every guard with its value now, read through the dry-run's connection and broker.
pub async fn preview<B: Broker>(
    plan: &Plan,
    conn: &mut sqlx::PgConnection,
    scope: &BindScope,
    broker: &mut B,
) -> Vec<GuardReport> {
    let mut out = Vec::new();
    for (i, guard) in plan.raw.guards.iter().enumerate() {
        let (value, error) = match &guard.queue_depth {
            Some(queue) => match broker.queue_depth(queue).await {
                Ok(Some(depth)) => (Some(Value::from(depth)), None),
                Ok(None) => (None, Some(format!("queue `{queue}` does not exist"))),
                Err(e) => (None, Some(e.to_string())),
            },
            None => {
                let label = format!("guard `{}`", guard.name);
                // In a savepoint of its own, so that a guard that fails leaves the rehearsal
                // usable, and rolled back: a guard reads, it never writes.
                match sqlx::Acquire::begin(&mut *conn).await {
                    Ok(mut savepoint) => {
                        let read = crate::engine::verify::query_value(
                            &mut savepoint,
                            scope,
                            plan,
                            SqlSite::Guard(i),
                            &label,
                        )
                        .await;
                        let _ = savepoint.rollback().await;
                        match read {
                            Ok(Value::Null) => (None, None),
                            Ok(v) => (Some(v), None),
                            Err(e) => (None, Some(e.to_string())),
                        }
                    }
                    Err(e) => (None, Some(crate::engine::error::describe_sqlx(&e))),
                }
            }
        };
        let beyond = value
            .as_ref()
            .and_then(crate::engine::verify::as_number)
            .is_some_and(|n| beyond(guard, n));
        out.push(GuardReport {
            name: guard.name.clone(),
            reads: match &guard.queue_depth {
                Some(queue) => format!("queue `{queue}` depth"),
                None => "sql".into(),
            },
            bound: bound(guard),
            action: guard.action.as_str(),
            every: guard.every.clone(),
            max_pause: (guard.action == GuardAction::Pause).then(|| guard.max_pause.clone()),
            value,
            beyond,
            error,
        });
    }
    out
}

/// The run's clock with its guards read before every batch and between a wait's polls.
pub struct Guarded<'p, C> {
    pub inner: C,
    pub guards: Guards<'p>,
}

impl<C: Clock> Clock for Guarded<'_, C> {
    async fn pace(&mut self, events: u64) {
        self.guards.check_due().await;
        if self.guards.stopped.is_some() {
            return;
        }
        self.inner.pace(events).await;
    }

    async fn poll_pause(&mut self, interval: Duration) -> bool {
        self.guards.check_due().await;
        if self.guards.stopped.is_some() {
            return false;
        }
        self.inner.poll_pause(interval).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: Option<f64>, min: Option<f64>) -> Guard {
        Guard {
            name: "g".into(),
            description: None,
            sql: Some("SELECT 1".into()),
            queue_depth: None,
            max,
            min,
            every: "10s".into(),
            action: GuardAction::Stop,
            max_pause: "30m".into(),
        }
    }

    #[test]
    fn a_guard_trips_only_beyond_its_bounds() {
        let case = |g: &Guard, v: f64, expected: bool| assert_eq!(beyond(g, v), expected, "{v}");
        let max = guard(Some(0.02), None);
        case(&max, 0.02, false);
        case(&max, 0.021, true);
        let min = guard(None, Some(10.0));
        case(&min, 10.0, false);
        case(&min, 9.0, true);
        let both = guard(Some(5.0), Some(1.0));
        case(&both, 3.0, false);
        case(&both, 0.0, true);
        case(&both, 6.0, true);
        assert_eq!(bound(&both), "min 1, max 5");
        assert_eq!(
            describe_beyond(&max, 0.05),
            "the value is 0.05, above its max of 0.02"
        );
    }
}
