//! `habitat worker`: the reference worker on one's own database and exchange, fixed or with a
//! bug on demand, until SIGINT/SIGTERM.

use std::time::Duration;

use replay::engine::redact::redact_url;
use replay::render::numbers::thousands;

use super::{CliError, Percent, StopSignals, database, runtime};
use crate::{EventType, FailureMode, Worker, WorkerConfig};

/// How long connecting and declaring the exchange and queue may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the worker consumes and records, and which events it fails.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// RabbitMQ URL.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: String,
    /// Habitat's database; Habitat's tables are created in it if missing.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Topic exchange to bind to (declared durable if missing).
    #[arg(long, default_value = "habitat-events")]
    pub exchange: String,
    /// Queue to consume (declared durable if missing, bound with `#`).
    #[arg(long, value_name = "NAME", default_value = "habitat-worker")]
    pub queue: String,
    /// Fail this percentage of the events handled (of --fail-types, when given); which ones is
    /// a hash of the event id, so an event that failed fails again when retried.
    #[arg(long, value_name = "P")]
    pub fail_pct: Option<Percent>,
    /// Fail events of these types (`payment.completed`, or a prefix such as `allocation.*`):
    /// all of them, or --fail-pct of them.
    #[arg(long, value_name = "T1,T2", value_delimiter = ',', value_parser = type_pattern)]
    pub fail_types: Vec<String>,
}

impl WorkerArgs {
    /// The bug the worker runs with.
    pub fn failure_mode(&self) -> FailureMode {
        if self.fail_pct.is_none() && self.fail_types.is_empty() {
            return FailureMode::None;
        }
        let patterns: Vec<&str> = if self.fail_types.is_empty() {
            vec!["*"]
        } else {
            self.fail_types.iter().map(String::as_str).collect()
        };
        FailureMode::failing(&patterns, self.fail_pct.map_or(1.0, Percent::share))
    }

    /// Runs the worker until SIGINT/SIGTERM, then prints what it did.
    pub fn run(&self) -> Result<(), CliError> {
        runtime()?.block_on(self.work())
    }

    async fn work(&self) -> Result<(), CliError> {
        let database_shown = redact_url(&self.database_url);
        let amqp_shown = redact_url(&self.amqp_url);
        let pool = database(&self.database_url).await?;
        let config = WorkerConfig {
            exchange: self.exchange.clone(),
            queue: self.queue.clone(),
            failing: self.failure_mode(),
            ..WorkerConfig::default()
        };
        // Listening before the worker says it is ready, so that a signal sent on that line is
        // a stop and not the default death.
        let mut stop = StopSignals::listen()
            .map_err(|e| CliError::failed("listen for SIGINT and SIGTERM", e))?;
        let starting = format!(
            "start the worker on RabbitMQ at {amqp_shown} (exchange `{}`, queue `{}`)",
            self.exchange, self.queue
        );
        let worker =
            match tokio::time::timeout(START_TIMEOUT, Worker::start(pool, &self.amqp_url, config))
                .await
            {
                Ok(Ok(worker)) => worker,
                Ok(Err(e)) => return Err(CliError::failed(starting, e)),
                Err(elapsed) => return Err(CliError::failed(starting, elapsed)),
            };
        println!(
            "habitat worker: queue `{}` bound to exchange `{}` on {amqp_shown}, events recorded in {database_shown}{}",
            self.queue,
            self.exchange,
            self.failing_note(),
        );
        println!("stop it with Ctrl-C or SIGTERM");
        stop.received().await;
        let stats = worker
            .stop()
            .await
            .map_err(|e| CliError::failed("stop the worker", e))?;
        println!(
            "habitat worker stopped: {} processed, {} failed, {} duplicates skipped",
            thousands(stats.processed.into()),
            thousands(stats.failed.into()),
            thousands(stats.duplicates.into()),
        );
        Ok(())
    }

    fn failing_note(&self) -> String {
        match (&self.fail_pct, self.fail_types.as_slice()) {
            (None, []) => String::new(),
            (Some(p), []) => format!("; failing {p} of all events"),
            (None, types) => format!("; failing every event of {}", types.join(", ")),
            (Some(p), types) => format!("; failing {p} of the events of {}", types.join(", ")),
        }
    }
}

/// An event type the worker handles, a prefix of types ending in `*`, or `*`.
fn type_pattern(text: &str) -> Result<String, String> {
    let known = || {
        EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matches = match text.strip_suffix('*') {
        Some(prefix) => EventType::ALL
            .iter()
            .any(|t| t.as_str().starts_with(prefix)),
        None => EventType::parse(text).is_some(),
    };
    if matches {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` names no event type the worker handles (known: {}; or a prefix ending in `*`)",
            known()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::type_pattern;

    fn case(text: &str, ok: bool) {
        assert_eq!(type_pattern(text).is_ok(), ok, "`{text}`");
    }

    #[test]
    fn fail_types_name_handled_types_or_prefixes() {
        case("payment.completed", true);
        case("period.close", true);
        case("allocation.*", true);
        case("*", true);
        case("payment.refunded", false);
        case("refund.*", false);
        case("", false);
    }
}
