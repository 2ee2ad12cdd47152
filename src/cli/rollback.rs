//! `replay rollback RUN`: undo a finished or stopped run as far as its plan allows.

use crate::engine::{Connection, Report, rollback};
use crate::exit_codes;
use crate::render::progress::Progress;

use super::apply::exit_code;
use super::args::RollbackArgs;
use super::runtime::block_on;

pub fn run(args: &RollbackArgs) -> u8 {
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
    let mut report = Report {
        version: 1,
        mode: crate::engine::status::Mode::Rollback,
        ..Report::default()
    };
    let mut progress = Progress::new(false);
    let mut rolled: Option<uuid::Uuid> = None;
    let result = block_on(async {
        let run = super::runs::resolve(&connection.database_url, &args.run).await?;
        rolled = Some(run);
        rollback::rollback_run(&connection, run, args.force, &mut progress, &mut report).await
    });
    match result {
        Ok(Ok(())) => {
            for (action, rows) in &report.rollback {
                println!("rollback {action}: {rows} row(s)");
            }
            for kept in &report.kept {
                println!("{kept} (`--force` restores them too)");
            }
            println!(
                "run `{}` is rolled back",
                rolled.map_or_else(|| args.run.to_string(), |r| r.to_string())
            );
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            exit_codes::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
        Err(code) => code,
    }
}
