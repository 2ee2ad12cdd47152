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
    #[error("lost the broker while {doing}")]
    Unreachable {
        doing: String,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker did not answer within {seconds}s while {doing}")]
    Stalled { doing: String, seconds: u64 },
    #[error("this step needs RabbitMQ, which is not connected")]
    NotConnected,
    #[error("queue `{queue}` does not exist")]
    NoQueue { queue: String },
    #[error(
        "the broker refused access to {what} (it exists, but is exclusive to another connection or not permitted to this user)"
    )]
    AccessRefused {
        what: String,
        #[source]
        source: lapin::Error,
    },
    #[error("the AMQP URL `{url}` cannot be used: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot set up TLS to RabbitMQ at {url}: {why}")]
    Tls { url: String, why: String },
}

/// The AMQP reply code of a channel or connection error (404 not found, 403 access refused, …).
pub fn amqp_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

impl BrokerError {
    /// A lost connection or channel passes; a refused or unroutable message, or a missing
    /// exchange or queue, does not.
    pub fn is_transient(&self) -> bool {
        // The broker refusing the credentials (ACCESS_REFUSED, 403) does not pass with time; a
        // broker shutting down or a vhost that is down does.
        if let BrokerError::Connect { source, .. } = self
            && let lapin::ErrorKind::ProtocolError(amqp) = source.kind()
            && amqp.get_id() == 403
        {
            return false;
        }
        // A certificate the broker's name or our CAs do not vouch for stays so: rustls reports
        // it as invalid data, where a refused or reset connection is a passing fault.
        if let BrokerError::Connect { source, .. } = self
            && let lapin::ErrorKind::IOError(io) = source.kind()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return false;
        }
        matches!(
            self,
            BrokerError::Connect { .. }
                | BrokerError::Channel(_)
                | BrokerError::Lost { .. }
                | BrokerError::NoConfirm { .. }
                | BrokerError::Unreachable { .. }
                | BrokerError::Stalled { .. }
        )
    }
}

/// What the driver does about an error. Each error is classified once, here; the driver decides
/// from the class, never from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// The connection, the server or the broker went away for a while: retry from the checkpoint.
    Transient,
    /// The plan's own logic failed (bounds, a nack, a timeout, a verification): roll back.
    PlanLogic,
    /// Refused before writing anything more: the run stays as it was.
    Refusal,
    /// SIGINT/SIGTERM or `replay stop`: checkpointed and resumable.
    Interrupted,
    /// Another executor owns the run now: write nothing more.
    LeaseLost,
    /// Anything else (a bug, a schema that does not match): stop, resumable once fixed.
    Bug,
}

/// Why a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to PostgreSQL at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("database error while {doing}: {message}")]
    Database {
        doing: String,
        message: String,
        /// Lost connection, serialization failure, resources, shutdown, lock timeout.
        transient: bool,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("step `{step}` failed after {done} of {total} events: {message}")]
    Step {
        step: String,
        done: u64,
        total: u64,
        message: String,
    },
    #[error("step `{step}` failed after {done} of {total} events: {message}")]
    Http {
        step: String,
        done: u64,
        total: u64,
        message: String,
        /// An endpoint that did not answer, or kept answering 429 or 5xx (a passing fault);
        /// otherwise a certificate it presents that is refused (stays so).
        transient: bool,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error(
        "run `{run_id}` of plan `{plan}` is already running (executor {holder} holds its lease); \
         join it with `--join` (or `replay join {run_id}`), wait for it, or stop it with `replay stop {run_id}`"
    )]
    Locked {
        plan: String,
        run_id: String,
        holder: String,
    },
    #[error(
        "the batch of events {first}..={last} of step `{step}` was taken over by another executor \
         (this one stalled past its lease); it was not written by this one"
    )]
    ClaimLost { step: String, first: i64, last: i64 },
    #[error("run `{run_id}` is {status} now (recorded by another executor); this executor stopped")]
    NotRunning {
        run_id: String,
        status: crate::engine::status::RunStatus,
    },
    #[error("interrupted; the checkpoint is saved")]
    Interrupted,
    /// A run named on the command line that no run is, or that several runs share.
    #[error("refused: {0}")]
    RunNotNamed(String),
    #[error("{failed} verification(s) failed; the rollback ran")]
    VerificationFailed { failed: usize },
    #[error(
        "the canary failed: {failed} verification(s) failed on its {canary} event(s); {undone}, and the other {rest} selected event(s) were not touched"
    )]
    CanaryFailed {
        failed: usize,
        canary: u64,
        rest: u64,
        /// What happened to the canary's changes, in words.
        undone: &'static str,
    },
    /// A guard stopped the run (resumable): its own exit code.
    #[error("{message}")]
    GuardStopped { guard: String, message: String },
    #[error(
        "{failed} verification(s) failed; the plan has no rollback actions, so nothing was undone"
    )]
    VerificationFailedNoRollback { failed: usize },
    #[error(
        "lost the lease on run `{run_id}`: another executor took it over (or this one stalled past its lease); nothing more was written"
    )]
    LeaseLost { run_id: String },
    #[error("the rollback of an earlier failure finished (the failure: {cause})")]
    RollbackResumed { cause: String },
    #[error(
        "could not renew the lease on run `{run_id}` before it ran out (the database is unreachable), so this executor stopped; the checkpoint is saved"
    )]
    LeaseExpired { run_id: String },
    #[error("gave up after {attempts} attempt(s) at a passing fault; the checkpoint is saved")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<RunError>,
    },
}

impl RunError {
    pub fn db(doing: impl Into<String>) -> impl FnOnce(sqlx::Error) -> RunError {
        let doing = doing.into();
        move |e| RunError::Database {
            doing,
            message: describe_sqlx(&e),
            transient: is_transient(&e),
        }
    }

    /// The one place where errors are classified.
    pub fn class(&self) -> FaultClass {
        match self {
            RunError::Connect { .. } => FaultClass::Transient,
            RunError::Database { transient, .. } => match transient {
                true => FaultClass::Transient,
                false => FaultClass::Bug,
            },
            RunError::Broker(e) if e.is_transient() => FaultClass::Transient,
            RunError::Http { transient, .. } => match transient {
                true => FaultClass::Transient,
                false => FaultClass::Bug,
            },
            RunError::Broker(
                BrokerError::NoExchange { .. }
                | BrokerError::NoQueue { .. }
                | BrokerError::BadUrl { .. }
                | BrokerError::Tls { .. }
                | BrokerError::AccessRefused { .. }
                // Refused credentials or certificate (the passing faults are taken above).
                | BrokerError::Connect { .. },
            ) => FaultClass::Refusal,
            RunError::Broker(BrokerError::NotConnected) => FaultClass::Bug,
            RunError::Broker(_) => FaultClass::PlanLogic,
            RunError::Step { .. }
            | RunError::VerificationFailed { .. }
            | RunError::CanaryFailed { .. }
            | RunError::VerificationFailedNoRollback { .. }
            | RunError::RollbackResumed { .. } => FaultClass::PlanLogic,
            RunError::Refused(_) | RunError::Locked { .. } | RunError::RunNotNamed(_) => {
                FaultClass::Refusal
            }
            RunError::Interrupted
            | RunError::GuardStopped { .. }
            | RunError::RetriesExhausted { .. }
            | RunError::LeaseExpired { .. }
            | RunError::NotRunning { .. } => FaultClass::Interrupted,
            RunError::LeaseLost { .. } => FaultClass::LeaseLost,
            // Another executor does that batch now; this one goes on from the checkpoints.
            RunError::ClaimLost { .. } => FaultClass::Transient,
        }
    }
}

/// A database error that is neither the plan's fault nor passing: a statement timeout or a
/// cancel (57014), a protocol violation. It stops the run, resumable once fixed; no rollback.
pub fn is_lasting_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| &*code == "57014"),
        _ => false,
    }
}

/// Whether a database error passes with time: a lost connection, or SQLSTATE classes 08
/// (connection), 40 (serialization, deadlock), 53 (resources), 57 (operator intervention, e.g.
/// `pg_terminate_backend`), 55P03 (lock not available), 25P03 (a session ended for idling in
/// a transaction) and 25006 (a read-only transaction: a failover that briefly sends the
/// session to a standby); but not 57014 (a statement timeout). 08P01 from the server passes
/// (a pooler such as PgBouncer reports its own failures so); a protocol violation sqlx itself
/// finds (`Error::Protocol`) does not.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // A statement timeout (57014) would time out again.
            &*code != "57014"
                && (matches!(code.get(..2), Some("08" | "40" | "53" | "57"))
                    || matches!(&*code, "55P03" | "25P03" | "25006"))
        }),
        _ => false,
    }
}

/// A query in a transaction of our own that is `READ ONLY` tried to write (25006): the plan's
/// query is at fault, not a failover, whatever [`is_transient`] says of the code elsewhere.
pub fn wrote_in_read_only(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| &*c == "25006"))
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
