//! The `habitat` command line: a world of one's own (`generate`, `worker`), the end-to-end
//! `demo`, and the `admin` API.

mod admin;
mod command;
mod connect;
mod error;
mod generate;
mod percent;
mod prompt;
mod replay_command;
mod signals;
mod worker;

pub use admin::AdminArgs;
pub use command::{Command, run};
pub use connect::{database, runtime};
pub use error::CliError;
pub use generate::GenerateArgs;
pub use percent::Percent;
pub use prompt::{Answer, confirm, interactive};
pub use replay_command::{ReplayCommand, replay_command};
pub use signals::{StopSignals, signalled};
pub use worker::WorkerArgs;
