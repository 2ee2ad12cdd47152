//! `replay stop RUN`: the emergency stop, from any machine that reaches the database.

use std::time::{Duration, Instant};

use crate::engine::status::RunStatus;
use crate::engine::{Connection, RunError, rollback, state};
use crate::exit_codes;

use super::apply::exit_code;
use super::args::StopArgs;
use super::runtime::block_on;

pub fn run(args: &StopArgs) -> u8 {
    let target = match args.target.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    let connection = Connection {
        database_url: target.database_url,
        amqp_url: String::new(),
        operator: args.operator.clone().unwrap_or_else(super::apply::operator),
        target: target.name,
    };
    let result = block_on(async {
        let run = super::runs::resolve(&connection.database_url, &args.run).await?;
        let plan = rollback::request_stop(&connection, run).await?;
        println!("stop requested: run `{run}` of plan `{plan}` stops at its next batch boundary");
        if args.no_wait {
            return Ok(());
        }
        let pool = state::connect(&connection.database_url).await?;
        let deadline = Instant::now() + args.timeout;
        loop {
            let status = state::status_of(&pool, run)
                .await?
                .ok_or_else(|| RunError::Refused(format!("no run `{run}`")))?;
            if status != RunStatus::Running {
                println!(
                    "run `{run}` is {status}; `replay apply` with the same plan and parameters resumes it"
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RunError::Refused(format!(
                    "run `{run}` has not stopped within {}; it will stop at its next batch boundary",
                    crate::plan::duration::format(args.timeout)
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    match result {
        Ok(Ok(())) => exit_codes::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
        Err(code) => code,
    }
}
