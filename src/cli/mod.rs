//! The command line: arguments, dispatch to commands, and the mapping of outcomes to exit codes.

mod apply;
mod args;
mod audit;
mod control;
mod doctor;
mod init;
mod inspect;
mod packaging;
mod prompt;
mod rollback;
mod runs;
mod runtime;
mod schema;
mod status;
mod stop;
mod target;
mod validate;

use std::ffi::OsString;

use clap::Parser;

use crate::exit_codes;
use args::LogFormat;
pub use args::{Cli, Command};

/// Runs `replay` with these arguments and returns the process exit code.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit_codes::SUCCESS
                }
                // Bad arguments are bad input, like a bad plan.
                _ => exit_codes::INVALID_PLAN,
            };
        }
    };
    match cli.command {
        Command::Schema(args) => schema::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Apply(args) => {
            init_tracing(args.log_format);
            apply::run(&args)
        }
        Command::Join(args) => {
            init_tracing(args.log_format);
            apply::join(&args)
        }
        Command::Status(args) => status::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Stop(args) => stop::run(&args),
        Command::Pause(args) => control::pause(&args),
        Command::Resume(args) => control::resume(&args),
        Command::Set(args) => control::set(&args),
        Command::Rollback(args) => {
            init_tracing(LogFormat::Text);
            rollback::run(&args)
        }
        Command::Audit(args) => audit::run(&args),
        Command::Completions(args) => packaging::completions(args.shell),
        Command::Man => packaging::man(),
        Command::Doctor(args) => doctor::run(&args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPLAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// An error and its causes, one per line (`caused by: …`), as every command prints it once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!("\n  caused by: {s}"));
        source = s.source();
    }
    text
}
