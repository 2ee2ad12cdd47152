use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(replay::run(std::env::args_os()))
}
