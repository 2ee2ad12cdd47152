//! `replay rollback RUN`: undo a finished or stopped run as far as its plan allows, after showing
//! what it would restore and keep and asking the person at the terminal; `--dry-run` only shows it.

use crate::engine::report::RollbackReport;
use crate::engine::status::{Mode, RollbackOutcome};
use crate::engine::{Connection, rollback};
use crate::exit_codes;
use crate::render::progress::Progress;

use super::apply::{exit_code, target_identity};
use super::args::{ReadFormat, RollbackArgs};
use super::prompt::{self, Answer};
use super::runtime::block_on;

/// How the command ended, when no error ended it.
enum Ended {
    Previewed,
    RolledBack,
    NotConfirmed,
    /// Ctrl-C (or SIGTERM) at the question: nothing was written.
    InterruptedAtTheQuestion,
    /// Ctrl-C (or SIGTERM) while the rollback ran: its one transaction committed or left nothing.
    InterruptedDuringTheRollback,
}

pub fn run(args: &RollbackArgs) -> u8 {
    let mut report = RollbackReport {
        version: 1,
        mode: Mode::Rollback,
        forced: args.force,
        ..RollbackReport::default()
    };
    let target = match args.target.resolve() {
        Ok(t) => t,
        Err(e) => return refused(args, report, e),
    };
    report.target = target_identity(&target.database_url);
    report.target_name = target.name.clone();
    if !args.dry_run && !args.yes && !prompt::interactive() {
        return refused(
            args,
            report,
            "refused: standard input is not a terminal, so nobody can confirm: pass `--yes` to roll back without asking; nothing was written".into(),
        );
    }
    let connection = Connection {
        database_url: target.database_url.clone(),
        amqp_url: String::new(),
        operator: args.operator.clone().unwrap_or_else(super::apply::operator),
        target: target.name.clone(),
    };
    let mut progress = Progress::new(false);
    let result = block_on(async {
        let run = super::runs::resolve(&connection.database_url, &args.run).await?;
        report.run = Some(run.to_string());
        if args.dry_run || !args.yes {
            rollback::preview_rollback(&connection, run, args.force, &mut report).await?;
            if args.dry_run {
                return Ok(Ended::Previewed);
            }
            let expected = prompt::expected_answer(
                report.plan.as_deref().unwrap_or_default(),
                target.name.as_deref(),
                target.production,
            );
            let summary = crate::render::rollback::question(&report);
            match prompt::confirm(&summary, &expected).await {
                Answer::Confirmed => {}
                Answer::Declined => return Ok(Ended::NotConfirmed),
                Answer::Interrupted => return Ok(Ended::InterruptedAtTheQuestion),
            }
            // The report says what the rollback did, not what its preview showed.
            report.actions.clear();
            report.kept.clear();
        }
        tokio::select! {
            done = rollback::rollback_run(&connection, run, args.force, &mut progress, &mut report) => {
                done.map(|()| Ended::RolledBack)
            }
            () = prompt::signalled() => Ok(Ended::InterruptedDuringTheRollback),
        }
    });
    let command = match (&report.run, &target.name) {
        (Some(run), Some(name)) => format!("replay rollback {run} --target {name}"),
        (Some(run), None) => format!("replay rollback {run}"),
        (None, _) => format!("replay rollback {}", args.run),
    };
    let force = if args.force { " --force" } else { "" };
    let (outcome, error, code) = match result {
        Err(code) => return code,
        Ok(Ok(Ended::Previewed)) => {
            report
                .next
                .push(format!("roll back with: {command}{force}"));
            if !report.kept.is_empty() {
                report
                    .next
                    .push(format!("restore the kept rows too with: {command} --force"));
            }
            (RollbackOutcome::WouldRollBack, None, exit_codes::SUCCESS)
        }
        Ok(Ok(Ended::RolledBack)) => {
            if let Some(run) = &report.run {
                report
                    .next
                    .push(format!("inspect with: replay status {run}"));
            }
            (RollbackOutcome::RolledBack, None, exit_codes::SUCCESS)
        }
        Ok(Ok(Ended::NotConfirmed)) => (
            RollbackOutcome::Refused,
            Some("error: refused: not confirmed; nothing was written".to_string()),
            exit_codes::REFUSED,
        ),
        Ok(Ok(Ended::InterruptedAtTheQuestion)) => (
            RollbackOutcome::Interrupted,
            Some("interrupted at the question; nothing was written".to_string()),
            exit_codes::INTERRUPTED,
        ),
        Ok(Ok(Ended::InterruptedDuringTheRollback)) => {
            report.actions.clear();
            report.kept.clear();
            if let Some(run) = &report.run {
                report
                    .next
                    .push(format!("inspect with: replay status {run}"));
            }
            (
                RollbackOutcome::Interrupted,
                Some(format!(
                    "interrupted during the rollback: its one transaction either committed or wrote nothing; \
                     `replay status` says which (a run left `rolling_back` is rolled back by `{command}` \
                     once its lease runs out, within {}s)",
                    crate::engine::state::DEFAULT_LEASE.as_secs()
                )),
                exit_codes::INTERRUPTED,
            )
        }
        Ok(Err(e)) => {
            let outcome = match e.class() {
                crate::engine::error::FaultClass::Refusal => RollbackOutcome::Refused,
                _ => RollbackOutcome::Failed,
            };
            (
                outcome,
                Some(format!("error: {}", super::error_chain(&e))),
                exit_code(&e),
            )
        }
    };
    report.outcome = outcome;
    ended(args, report, error, code)
}

/// Refused before anything was read or written.
fn refused(args: &RollbackArgs, mut report: RollbackReport, why: String) -> u8 {
    report.outcome = RollbackOutcome::Refused;
    ended(
        args,
        report,
        Some(format!("error: {why}")),
        exit_codes::REFUSED,
    )
}

/// Prints the report on standard output and what went wrong on standard error (the JSON carries
/// it too, without the `error: ` of the terminal).
fn ended(args: &RollbackArgs, mut report: RollbackReport, said: Option<String>, code: u8) -> u8 {
    report.error = said
        .as_deref()
        .map(|s| s.strip_prefix("error: ").unwrap_or(s).to_string());
    match args.format {
        ReadFormat::Text => print!("{}", crate::render::rollback::text(&report)),
        ReadFormat::Json => println!("{}", crate::render::rollback::json(&report)),
    }
    if let Some(said) = said {
        eprintln!("{said}");
    }
    code
}
