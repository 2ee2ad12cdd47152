//! The `habitat` commands, and how a command line becomes an exit code.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use replay::exit_codes;

use super::{AdminArgs, CliError, GenerateArgs, WorkerArgs};
use crate::demo::DemoArgs;

/// The Habitat reference world for `replay`.
#[derive(Debug, Parser)]
#[command(
    name = "habitat",
    version,
    about = "The Habitat reference world for `replay`"
)]
pub enum Command {
    /// Generate a Habitat in a database of your choosing: events up to now, a share of them failed.
    Generate(GenerateArgs),
    /// Run the reference worker on your database and exchange until SIGINT/SIGTERM.
    Worker(WorkerArgs),
    /// A scratch Habitat whose contribution handlers failed, fixed end to end by a shipped plan.
    Demo(DemoArgs),
    /// Serve the admin API (`POST /api/admin/replay-event`, bearer token from `ADMIN_TOKEN`).
    Admin(AdminArgs),
}

/// Runs `habitat` with these arguments (the first is the program) and returns the exit code.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = match Command::try_parse_from(args) {
        Ok(command) => command,
        Err(e) => return clap_exit(&e),
    };
    if let Command::Generate(args) = &command
        && let Err(message) = args.check()
    {
        return clap_exit(&usage_error("generate", message));
    }
    match command {
        Command::Generate(args) => finish(args.run(), &[&args.database_url]),
        Command::Worker(args) => finish(args.run(), &[&args.database_url, &args.amqp_url]),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Admin(args) => finish(args.run(), &[&args.database_url]),
    }
}

/// Prints a clap error (or the help it carries) and returns its exit code: 2, or 0 for help.
fn clap_exit(e: &clap::Error) -> u8 {
    let _ = e.print();
    if e.use_stderr() {
        exit_codes::INVALID_PLAN
    } else {
        exit_codes::SUCCESS
    }
}

/// A clap error about subcommand `name`, with its usage line, as clap prints its own.
fn usage_error(name: &str, message: String) -> clap::Error {
    let mut cli = Command::command();
    cli.build();
    match cli.find_subcommand_mut(name) {
        Some(sub) => sub.error(ErrorKind::ArgumentConflict, message),
        None => cli.error(ErrorKind::ArgumentConflict, message),
    }
}

fn finish(outcome: Result<(), CliError>, urls: &[&str]) -> u8 {
    match outcome {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => e.print(urls),
    }
}
