//! `replay completions SHELL` and `replay man`: generated from the same clap definitions the
//! binary parses with, so they never drift from the flags.

use std::io::Write;

use clap::CommandFactory;

use super::args::Cli;
use crate::exit_codes;

pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "replay", &mut out);
    match out.flush() {
        Ok(()) => exit_codes::SUCCESS,
        Err(_) => exit_codes::FAILURE,
    }
}

pub fn man() -> u8 {
    let mut out = std::io::stdout().lock();
    let rendered = clap_mangen::Man::new(Cli::command()).render(&mut out);
    match rendered.and_then(|()| out.flush()) {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the manual page: {e}");
            exit_codes::FAILURE
        }
    }
}
