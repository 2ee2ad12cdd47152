//! Why a `habitat` command stopped, the exit code that says so, and how it is printed.

use replay::engine::redact::scrub;
use replay::exit_codes;

/// Why a `habitat` command did not finish.
///
/// Messages are lower-case fragments naming servers by their redacted URLs; [`CliError::print`]
/// masks any password a driver may have echoed in a cause.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments or the environment cannot work (exit 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
    /// Nothing was written: going on would have destroyed data the command does not own.
    #[error("{0}")]
    Refused(String),
    /// A connection, a statement or a broker call failed.
    #[error("{context}")]
    Failed {
        /// What was being done, e.g. "connect to PostgreSQL at postgres://…".
        context: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// SIGINT or SIGTERM while a question was open.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// A failure while doing `context`.
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CliError {
        CliError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The exit code of `replay::exit_codes` this error maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit_codes::INVALID_PLAN,
            CliError::Refused(_) => exit_codes::REFUSED,
            CliError::Failed { .. } => exit_codes::FAILURE,
            CliError::Interrupted => exit_codes::INTERRUPTED,
        }
    }

    /// Prints `error: …` and one `caused by: …` line per cause on standard error, with the
    /// passwords of `urls` masked, and returns the exit code.
    pub fn print(&self, urls: &[&str]) -> u8 {
        let mut text = format!("error: {self}");
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        for url in urls {
            text = scrub(&text, url);
        }
        eprintln!("{text}");
        self.exit_code()
    }
}
