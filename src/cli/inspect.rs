//! `replay inspect`: the runbook's look-before-you-replay queries, with the plans' selector vocabulary.
//!
//! Exit codes: 0 when the events were read (and every `--queue` answered), 1 on a database or
//! broker error or when the plan file cannot be written, 2 on a bad flag value.

use std::io::Write as _;
use std::path::Path;

use crate::engine::inspect::{self, Inspection};
use crate::exit_codes;
use crate::plan::duration;
use crate::plan::model::{Selection, Target};

use super::args::{InspectArgs, ReadFormat};

/// The most events a sample shows.
const MAX_SAMPLE: i64 = 1_000;

/// A flag whose value cannot be used; names the flag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid value for `--{flag}`: {message}")]
pub struct FlagError {
    flag: &'static str,
    message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        message: message.into(),
    }
}

pub fn run(args: &InspectArgs) -> u8 {
    let select = match selection(args).and_then(|s| check_output(args).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::INVALID_PLAN;
        }
    };
    // A misspelt status matches nothing: say so, rather than answer "no event matches". Inspect
    // knows Habitat's statuses only (a plan declares others with `target.statuses`).
    let known = Target::default().statuses;
    for status in select.status.iter().filter(|s| !known.contains(s)) {
        let near = crate::plan::schema::closest(status, &known)
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        eprintln!(
            "warning: `{status}` is not one of Habitat's statuses ({}); {near}it may match nothing",
            known.join(", ")
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit_codes::FAILURE;
        }
    };
    let resolved = match args.target.resolve(Some(super::target::LOCAL_BROKER)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    let mut target = Target::default();
    let mut queues = args.queues.clone();
    if let Some(d) = &resolved.defaults {
        target.events_table = d.events_table.clone().unwrap_or(target.events_table);
        if queues.is_empty() {
            queues = d.queues.clone();
        }
    }
    let database_url = resolved.database_url.clone();
    let amqp_url = resolved.amqp_url.clone().unwrap_or_default();
    let (found, broker) = runtime.block_on(async {
        let found = match &args.run {
            Some(run) => super::runs::resolve(&database_url, run).await.map(Some),
            None => Ok(None),
        };
        let found = match found {
            Ok(run) => {
                inspect::inspect(
                    &database_url,
                    &target,
                    &select,
                    args.sample,
                    run,
                    args.group_by.is_some(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        // The broker is only asked when a queue is: looking at events needs no RabbitMQ.
        let broker = match (&found, queues.is_empty()) {
            (Ok(_), false) => Some(inspect::queue_depths(&amqp_url, &queues).await),
            _ => None,
        };
        (found, broker)
    });
    let mut found: Inspection = match found {
        Ok(found) => found,
        Err(e) => {
            // Inspect only reads: every runtime error is a plain failure, but for a run it
            // cannot name, refused as by every command that names one.
            eprintln!("error: {}", super::error_chain(&e));
            return match e {
                crate::engine::RunError::RunNotNamed(_) => exit_codes::REFUSED,
                _ => exit_codes::FAILURE,
            };
        }
    };
    found.target = super::apply::target_identity(&database_url);
    let mut code = exit_codes::SUCCESS;
    match broker {
        Some(Ok(queues)) => found.queues = queues,
        Some(Err(e)) => {
            eprintln!(
                "error: cannot read queue depths: {}",
                super::error_chain(&e)
            );
            found.queues = inspect::unknown_depths(&queues);
            code = exit_codes::FAILURE;
        }
        None => {}
    }
    if let Some(path) = &args.emit_plan {
        let mut planned = found.clone();
        if planned.run.is_some() {
            // Exactly the run's events that match now.
            planned.selection.event_ids = std::mem::take(&mut planned.matching);
        }
        if let Some(k) = args.group {
            let groups = planned.groups.take().unwrap_or_default();
            let Some(group) = groups.into_iter().find(|g| g.key == k) else {
                eprintln!(
                    "error: invalid value for `--group`: there is no group {k}; the matching events form {} group(s)",
                    found.groups.as_ref().map_or(0, Vec::len)
                );
                return exit_codes::INVALID_PLAN;
            };
            // Exactly the group's events, as they match now.
            planned.selection.event_ids = group.event_ids;
            planned.total = group.count;
        }
        let text = inspect::plan_skeleton(&planned, chrono::Utc::now());
        if let Err(e) = write_new(path, &text) {
            eprintln!(
                "error: cannot write the plan skeleton to `{}`: {e}",
                path.display()
            );
            code = exit_codes::FAILURE;
        } else {
            found.plan_file = Some(path.display().to_string());
        }
    }
    match args.format {
        ReadFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&found).unwrap_or_default()
        ),
        ReadFormat::Text => print!("{}", found.to_text()),
    }
    code
}

/// The selection the flags describe, with every value checked the way `replay validate` would
/// check it in a plan, so that `--emit-plan` writes a valid one.
pub fn selection(args: &InspectArgs) -> Result<Selection, FlagError> {
    let literal = |flag: &'static str, value: &str| -> Result<String, FlagError> {
        if value.trim().is_empty() {
            return Err(bad(flag, "the value is empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad(
                flag,
                format!("`{}` contains a control character", value.escape_debug()),
            ));
        }
        if value.contains("{{") {
            return Err(bad(
                flag,
                format!("`{value}` is a template; inspect takes literal values only"),
            ));
        }
        Ok(value.to_string())
    };
    let literals = |flag: &'static str, values: &[String]| -> Result<Vec<String>, FlagError> {
        values.iter().map(|v| literal(flag, v)).collect()
    };
    let within = |flag: &'static str, value: &Option<String>| -> Result<_, FlagError> {
        value
            .as_deref()
            .map(|v| {
                let v = literal(flag, v)?;
                duration::parse(&v).map_err(|message| bad(flag, message))?;
                Ok(v.trim().to_string())
            })
            .transpose()
    };
    let mut select = Selection {
        status: literals("status", &args.status)?,
        event_types: literals("type", &args.event_types)?,
        event_ids: literals("event-id", &args.event_ids)?,
        processed_within: within("within", &args.within)?,
        processed_before: within("older-than", &args.older_than)?,
        ..Selection::default()
    };
    for pair in &args.payload {
        let Some((field, value)) = pair.split_once('=') else {
            return Err(bad(
                "payload",
                format!("`{pair}` is not `field=value`, e.g. `contribution_id=123e4567-…`"),
            ));
        };
        let field = literal("payload", field.trim())?;
        let value = literal("payload", value)?;
        if let Some(earlier) = select.payload.get(&field)
            && *earlier != value
        {
            return Err(bad(
                "payload",
                format!(
                    "field `{field}` is given twice (`{earlier}` and `{value}`); no event matches both"
                ),
            ));
        }
        select.payload.insert(field, value);
    }
    // Looking at everything is harmless; a plan says so explicitly, and so does this selection.
    select.all = select == Selection::default();
    Ok(select)
}

/// The flags about output: sample size, queue names, the plan file.
fn check_output(args: &InspectArgs) -> Result<(), FlagError> {
    if !(0..=MAX_SAMPLE).contains(&args.sample) {
        return Err(bad(
            "sample",
            format!("`{}` is not between 0 and {MAX_SAMPLE}", args.sample),
        ));
    }
    for queue in &args.queues {
        if queue.trim().is_empty() || queue.len() > 255 {
            return Err(bad(
                "queue",
                format!("`{queue}` is not a queue name (1 to 255 characters)"),
            ));
        }
    }
    if let Some(path) = &args.emit_plan
        && path.exists()
    {
        return Err(bad(
            "emit-plan",
            format!(
                "`{}` already exists; inspect does not overwrite files",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::args::{Cli, Command};
    use super::*;

    fn parse(flags: &[&str]) -> InspectArgs {
        let args = ["replay", "inspect", "--database-url", "postgres://x/y"]
            .iter()
            .chain(flags);
        match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Inspect(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    fn error(flags: &[&str]) -> String {
        let args = parse(flags);
        match selection(&args).and_then(|_| check_output(&args)) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted: {flags:?}"),
        }
    }

    #[test]
    fn flags_become_the_plan_selection() {
        let s = selection(&parse(&[
            "--status",
            "error",
            "--type",
            "contribution.*",
            "--within",
            " 24h",
            "--payload",
            "contribution_id=a=b",
            "--event-id",
            "e1",
        ]))
        .unwrap();
        assert_eq!(
            s,
            Selection {
                status: vec!["error".into()],
                event_types: vec!["contribution.*".into()],
                event_ids: vec!["e1".into()],
                processed_within: Some("24h".into()),
                payload: [("contribution_id".to_string(), "a=b".to_string())].into(),
                ..Selection::default()
            }
        );
        assert_eq!(
            selection(&parse(&[])).unwrap(),
            Selection {
                all: true,
                ..Selection::default()
            }
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        let case = |flags: &[&str], expected: &str| assert_eq!(error(flags), expected);
        case(
            &["--within", "5x"],
            "invalid value for `--within`: unknown unit `x` in `5x`; use ms, s, m, h or d",
        );
        case(
            &["--older-than", "5"],
            "invalid value for `--older-than`: `5` needs a unit (ms, s, m, h, d)",
        );
        case(
            &["--payload", "contribution_id"],
            "invalid value for `--payload`: `contribution_id` is not `field=value`, e.g. `contribution_id=123e4567-…`",
        );
        case(
            &["--payload", "=x"],
            "invalid value for `--payload`: the value is empty",
        );
        case(
            &["--payload", "a=1", "--payload", "a=2"],
            "invalid value for `--payload`: field `a` is given twice (`1` and `2`); no event matches both",
        );
        case(
            &["--status", ""],
            "invalid value for `--status`: the value is empty",
        );
        case(
            &["--type", "{{ params.t }}"],
            "invalid value for `--type`: `{{ params.t }}` is a template; inspect takes literal values only",
        );
        case(
            &["--event-id", "a\nb"],
            "invalid value for `--event-id`: `a\\nb` contains a control character",
        );
        case(
            &["--sample=-1"],
            "invalid value for `--sample`: `-1` is not between 0 and 1000",
        );
        case(
            &["--emit-plan", "Cargo.toml"],
            "invalid value for `--emit-plan`: `Cargo.toml` already exists; inspect does not overwrite files",
        );
    }
}
