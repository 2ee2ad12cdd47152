//! The run's time window, enforced while it runs: outside it the clock holds every batch until
//! the window opens again (interruptible by `replay stop` and signals), and counts the paused time.

use std::time::Duration;

use tokio::time::Instant;

use crate::engine::gates;
use crate::engine::pace::Clock;
use crate::engine::steps::Cancel;
use crate::plan::model::Window;

/// The clock of a run's executor: the run's one rate (shared through PostgreSQL) inside the
/// plan's window, unless the window's gate was overridden.
pub fn run_clock(
    plan: &crate::plan::Plan,
    pool: &sqlx::PgPool,
    run_id: uuid::Uuid,
    window_overridden: bool,
    cancel: Cancel,
) -> Windowed<crate::engine::pace::SharedRate> {
    let rate = &plan.raw.rate_limit;
    Windowed::new(
        crate::engine::pace::SharedRate::new(
            pool.clone(),
            run_id,
            rate.per_second,
            rate.batch_size,
        ),
        plan.raw
            .safety
            .window
            .clone()
            .filter(|_| !window_overridden),
        cancel,
    )
}

/// A clock that holds batches outside the plan's window, around another clock's pacing.
pub struct Windowed<C> {
    inner: C,
    window: Option<Window>,
    cancel: Cancel,
    /// Wall time at `started`; wall time now is derived from the monotonic clock, so that a
    /// test can run hours of pausing in tokio's paused time.
    wall: chrono::DateTime<chrono::Utc>,
    started: Instant,
    /// Time spent holding for the window.
    pub paused: Duration,
}

impl<C: Clock> Windowed<C> {
    /// `window: None` (no window, or its gate overridden) never holds.
    pub fn new(inner: C, window: Option<Window>, cancel: Cancel) -> Self {
        Self::starting_at(inner, window, cancel, chrono::Utc::now())
    }

    pub fn starting_at(
        inner: C,
        window: Option<Window>,
        cancel: Cancel,
        wall: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Windowed {
            inner,
            window,
            cancel,
            wall,
            started: Instant::now(),
            paused: Duration::ZERO,
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.wall + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }

    /// Holds while the window is closed.
    async fn hold(&mut self) {
        let Some(window) = self.window.clone() else {
            return;
        };
        let mut announced = false;
        while !self.cancel.is_cancelled() && !gates::is_open(&window, self.now()).unwrap_or(true) {
            if !announced {
                let opens = gates::next_open(&window, self.now());
                tracing::warn!(
                    window = %window.between,
                    timezone = %window.timezone,
                    opens = ?opens.map(|t| t.to_rfc3339()),
                    "outside the run's window: paused until it opens"
                );
                announced = true;
            }
            let step = Duration::from_millis(500);
            let since = Instant::now();
            tokio::time::sleep(step).await;
            self.paused += since.elapsed();
        }
    }
}

impl<C: Clock> Clock for Windowed<C> {
    async fn pace(&mut self, events: u64) {
        self.hold().await;
        // A slow rate can mean a long wait for tokens: a stop or a signal cuts it short (the
        // step then stops before its batch).
        let cancel = self.cancel.clone();
        let stopped = async move {
            while !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = self.inner.pace(events) => {}
            _ = stopped => {}
        }
    }

    async fn poll_pause(&mut self, interval: Duration) -> bool {
        self.inner.poll_pause(interval).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pace::NoWait;
    use crate::plan::model::Weekday;

    fn window(between: &str, days: &[Weekday]) -> Window {
        Window {
            between: between.into(),
            timezone: "UTC".into(),
            days: days.to_vec(),
        }
    }

    /// A Friday, at `hh:mm`. Only the weekday and time matter; nothing compares it with today.
    fn friday(hh: u32, mm: u32) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 2, hh, mm, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_starts() {
        let fri_night = window("22:00-02:00", &[Weekday::Fri]);
        let case = |w: &Window, at, open: bool| {
            assert_eq!(gates::is_open(w, at), Ok(open), "{} at {at}", w.between);
        };
        case(&fri_night, friday(23, 0), true);
        case(&fri_night, friday(23, 0) + chrono::Duration::hours(2), true); // Sat 01:00
        case(&fri_night, friday(1, 0), false); // Fri 01:00 is Thursday's window
        case(&fri_night, friday(21, 59), false);
        case(
            &fri_night,
            friday(23, 0) + chrono::Duration::hours(3),
            false,
        ); // Sat 02:00
        let daily = window("01:00-05:00", &[]);
        case(&daily, friday(4, 59), true);
        case(&daily, friday(5, 0), false);
        assert_eq!(
            gates::next_open(&daily, friday(5, 0)),
            Some(friday(1, 0) + chrono::Duration::days(1))
        );
        assert_eq!(gates::next_open(&daily, friday(3, 0)), Some(friday(3, 0)));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_hold_outside_the_window_and_go_on_when_it_opens() {
        let wall = friday(4, 59);
        let mut clock = Windowed::starting_at(
            NoWait,
            Some(window("01:00-05:00", &[])),
            Cancel::default(),
            wall,
        );
        clock.pace(1).await;
        assert_eq!(clock.paused, Duration::ZERO, "inside the window");
        tokio::time::advance(Duration::from_secs(90)).await;
        clock.pace(1).await;
        let resumed = clock.now();
        assert!(
            resumed >= friday(1, 0) + chrono::Duration::days(1)
                && resumed < friday(1, 1) + chrono::Duration::days(1),
            "went on at {resumed}"
        );
        assert!(
            clock.paused >= Duration::from_secs(19 * 3600),
            "{:?}",
            clock.paused
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_a_long_wait_for_tokens_short() {
        let cancel = Cancel::default();
        // One event a second: a batch of 1,000 waits about 1,000 s for its tokens.
        let mut clock = Windowed::new(
            crate::engine::pace::TokenBucket::new(1, 1_000),
            None,
            cancel.clone(),
        );
        let stopper = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                cancel.cancel();
            })
        };
        let started = Instant::now();
        clock.pace(1_000).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the stop ended the wait after {:?}",
            started.elapsed()
        );
        stopper.await.unwrap_or_default();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_hold() {
        let cancel = Cancel::default();
        let mut clock = Windowed::starting_at(
            NoWait,
            Some(window("01:00-05:00", &[])),
            cancel.clone(),
            friday(6, 0),
        );
        let stopper = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(600)).await;
                cancel.cancel();
            })
        };
        clock.pace(1).await;
        assert!(
            clock.paused <= Duration::from_secs(601),
            "{:?}",
            clock.paused
        );
        stopper.await.unwrap_or_default();
    }
}
