//! `replay inspect`: the runbook's look-before-you-replay queries, with the plans' selector vocabulary.

use crate::exit_codes;

use super::args::InspectArgs;

pub fn run(_args: &InspectArgs) -> u8 {
    eprintln!("error: `replay inspect` is not built yet");
    exit_codes::FAILURE
}
