//! The command line: arguments, dispatch to commands, and the mapping of outcomes to exit codes.

mod args;
mod schema;
mod validate;

use std::ffi::OsString;

use clap::Parser;

use crate::exit_codes;
pub use args::{Cli, Command, OutputFormat};

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
                _ => exit_codes::FAILURE,
            };
        }
    };
    match cli.command {
        Command::Schema(args) => schema::run(&args),
        Command::Validate(args) => validate::run(&args),
    }
}
