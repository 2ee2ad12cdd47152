//! What can go wrong while running a plan, with the context an operator needs.

/// Broker failures.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("cannot open a RabbitMQ channel")]
    Channel(#[source] lapin::Error),
    #[error("exchange `{exchange}` does not exist")]
    NoExchange {
        exchange: String,
        #[source]
        source: lapin::Error,
    },
    #[error(
        "message `{message_id}` was returned unroutable by exchange `{exchange}` (routing key `{routing_key}`): no queue is bound for it"
    )]
    Unroutable {
        message_id: String,
        exchange: String,
        routing_key: String,
    },
    #[error("the broker refused (nacked) message `{message_id}`")]
    Nacked { message_id: String },
    #[error("lost the broker while publishing message `{message_id}`")]
    Lost {
        message_id: String,
        #[source]
        source: lapin::Error,
    },
    #[error("no confirm for message `{message_id}` within {seconds}s: the broker is unreachable")]
    NoConfirm { message_id: String, seconds: u64 },
    #[error("cannot purge queue `{queue}`")]
    Purge {
        queue: String,
        #[source]
        source: lapin::Error,
    },
}

/// Why a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to PostgreSQL at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("database error while {doing}: {message}")]
    Database { doing: String, message: String },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("step `{step}` failed after {done} of {total} events: {message}")]
    Step {
        step: String,
        done: u64,
        total: u64,
        message: String,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error(
        "run `{run_id}` of plan `{plan}` is already running (it holds the lock); wait for it or stop it"
    )]
    Locked { plan: String, run_id: String },
    #[error("interrupted; the checkpoint is saved")]
    Interrupted,
    #[error("{failed} verification(s) failed; the rollback ran")]
    VerificationFailed { failed: usize },
}

impl RunError {
    pub fn db(doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> RunError {
        let doing = doing.into();
        move |e| RunError::Database {
            doing,
            message: describe_sqlx(&e),
        }
    }
}

/// A database error as one line, with the server's message when there is one.
pub fn describe_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut text = db.message().to_string();
            if let Some(code) = db.code() {
                text.push_str(&format!(" (SQLSTATE {code})"));
            }
            text
        }
        other => other.to_string(),
    }
}
