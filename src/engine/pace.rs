//! Pacing: a token bucket holding `per_second` over the whole run, and the wait between polls.

use std::time::Duration;

use tokio::time::Instant;

/// How a run spends time: a real clock paces and sleeps, a dry-run's clock never waits.
pub trait Clock {
    /// Waits until `events` more may be processed.
    async fn pace(&mut self, events: u64);
    /// Sleeps before the next poll of a wait step; `false` means "do not keep waiting".
    async fn poll_pause(&mut self, interval: Duration) -> bool;
}

/// A token bucket: at most `per_second` events per second on average, bursts up to one batch.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, burst: u32) -> Self {
        TokenBucket {
            per_second: f64::from(per_second.max(1)),
            capacity: f64::from(burst.max(1)),
            tokens: 0.0,
            last: Instant::now(),
        }
    }
}

impl Clock for TokenBucket {
    async fn pace(&mut self, events: u64) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second)
            .min(self.capacity.max(events as f64));
        self.last = now;
        self.tokens -= events as f64;
        if self.tokens < 0.0 {
            let wait = Duration::from_secs_f64(-self.tokens / self.per_second);
            tokio::time::sleep(wait).await;
            self.last = Instant::now();
            self.tokens = 0.0;
        }
    }

    async fn poll_pause(&mut self, interval: Duration) -> bool {
        tokio::time::sleep(interval).await;
        true
    }
}

/// The dry-run clock: no pacing, no waiting.
#[derive(Debug, Default)]
pub struct NoWait;

impl Clock for NoWait {
    async fn pace(&mut self, _events: u64) {}

    async fn poll_pause(&mut self, _interval: Duration) -> bool {
        false
    }
}

/// The run's one rate, shared by all its executors through PostgreSQL: each batch reserves the
/// run's next slot (`claims::reserve`) and waits for it, so `per_second` holds over the run
/// whatever the number of executors. If the database cannot be asked, this executor paces
/// itself alone; its batch then meets the same fault and is retried.
pub struct SharedRate {
    pool: sqlx::PgPool,
    run_id: uuid::Uuid,
    per_second: u32,
    alone: TokenBucket,
}

/// How often a paused run asks whether it was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(200);

impl SharedRate {
    pub fn new(pool: sqlx::PgPool, run_id: uuid::Uuid, per_second: u32, burst: u32) -> Self {
        SharedRate {
            pool,
            run_id,
            per_second,
            alone: TokenBucket::new(per_second, burst),
        }
    }
}

impl Clock for SharedRate {
    /// Waits for the run's next slot; while an operator holds the run paused, waits for
    /// `replay resume` (a stop or a signal cuts the wait short: see `window::Windowed`).
    async fn pace(&mut self, events: u64) {
        let mut announced = false;
        loop {
            match crate::engine::claims::reserve(&self.pool, self.run_id, events, self.per_second)
                .await
            {
                Ok(crate::engine::claims::Slot::After(wait)) => {
                    if announced {
                        tracing::info!(run = %self.run_id, "resumed by an operator");
                    }
                    return tokio::time::sleep(wait).await;
                }
                Ok(crate::engine::claims::Slot::Paused) => {
                    if !announced {
                        tracing::warn!(
                            run = %self.run_id,
                            "paused by an operator: `replay resume {}` goes on",
                            self.run_id
                        );
                        announced = true;
                    }
                    tokio::time::sleep(PAUSED_POLL).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reserve the run's next slot; pacing alone");
                    return self.alone.pace(events).await;
                }
            }
        }
    }

    async fn poll_pause(&mut self, interval: Duration) -> bool {
        tokio::time::sleep(interval).await;
        true
    }
}
