//! Errors of the Habitat reference world, each carrying what was being done when it failed.

use thiserror::Error;

/// Why a Habitat operation (generating a world, running the worker, publishing) failed.
///
/// Messages are lower-case fragments that read after "failed to …"; the underlying
/// database or broker error is kept as the `source()`.
#[derive(Debug, Error)]
pub enum HabitatError {
    /// The generator settings cannot describe a world (a share outside `0..=1`, no periods, …).
    #[error("use generator settings: {0}")]
    InvalidConfig(String),

    /// The generator refuses to mix a new world into existing rows.
    #[error(
        "generate into table `{table}`: it already holds rows (call `habitat::schema::reset` first)"
    )]
    NotEmpty {
        /// The first non-empty table found.
        table: &'static str,
    },

    /// A name does not fit in an AMQP short string (255 bytes).
    #[error("use {what} `{name}`: longer than 255 bytes")]
    NameTooLong {
        /// What the name is for, e.g. "exchange".
        what: &'static str,
        /// The offending name.
        name: String,
    },

    /// A PostgreSQL statement failed.
    #[error("{context}")]
    Database {
        /// What was being done, e.g. "insert generated events".
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A RabbitMQ operation failed.
    #[error("{context}")]
    Broker {
        /// What was being done, e.g. "declare exchange `habitat-events`".
        context: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },

    /// A background task of the worker ended abnormally.
    #[error("join worker task `{task}`: {message}")]
    Task {
        /// Which task (`consumer` or `poller`).
        task: &'static str,
        /// Why the task ended (panic or cancellation).
        message: String,
    },
}

/// Attaches a "what was being done" fragment to driver errors.
pub(crate) trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T, HabitatError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, context: impl Into<String>) -> Result<T, HabitatError> {
        self.map_err(|source| HabitatError::Database {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, lapin::Error> {
    fn context(self, context: impl Into<String>) -> Result<T, HabitatError> {
        self.map_err(|source| HabitatError::Broker {
            context: context.into(),
            source,
        })
    }
}

/// Converts `name` to an AMQP short string, refusing instead of panicking when it is too long.
pub(crate) fn short_string(
    what: &'static str,
    name: &str,
) -> Result<lapin::types::ShortString, HabitatError> {
    lapin::types::ShortString::try_new(name).map_err(|_| HabitatError::NameTooLong {
        what,
        name: name.to_owned(),
    })
}
