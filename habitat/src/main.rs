//! `habitat`: the reference world's command line (today, the end-to-end demo).

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "The Habitat reference world for `replay`")]
enum Command {
    /// A scratch Habitat whose contribution handlers failed, fixed end to end by a shipped plan.
    Demo(habitat::demo::DemoArgs),
}

fn main() -> ExitCode {
    ExitCode::from(match Command::parse() {
        Command::Demo(args) => habitat::demo::run(&args),
    })
}
