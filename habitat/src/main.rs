//! `habitat`: the reference world's command line: the end-to-end demo, and the admin API.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "The Habitat reference world for `replay`")]
enum Command {
    /// A scratch Habitat whose contribution handlers failed, fixed end to end by a shipped plan.
    Demo(habitat::demo::DemoArgs),
    /// Serve the admin API (`POST /api/admin/replay-event`, bearer token from `ADMIN_TOKEN`).
    Admin(habitat::demo::AdminArgs),
}

fn main() -> ExitCode {
    ExitCode::from(match Command::parse() {
        Command::Demo(args) => habitat::demo::run(&args),
        Command::Admin(args) => habitat::demo::admin(&args),
    })
}
