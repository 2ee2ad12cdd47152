//! `habitat`: the reference world's command line (see [`habitat::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(habitat::cli::run(std::env::args_os()))
}
