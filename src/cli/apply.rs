//! `replay apply`: validate, compile, then dry-run or run the plan, and report.

use std::io::IsTerminal;

use super::prompt::Answer;
use crate::engine::pinned::PinnedPlan;
use crate::engine::preview::{Outcome, Preview};
use crate::engine::steps::Cancel;
use crate::engine::{self, ApplyOptions, Connection, Report, RunError};
use crate::exit_codes;
use crate::plan::{self, Rendered};
use crate::render::progress::Progress;

use super::args::{ApplyArgs, ReportFormat};

pub fn run(args: &ApplyArgs) -> u8 {
    let target = match args.target.resolve(Some(super::target::LOCAL_BROKER)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    if let Err(e) = production_flags(args, &target) {
        eprintln!("error: refused: {e}");
        return exit_codes::REFUSED;
    }
    // `replay apply PINNED` runs the pinned plan's text with its parameters; a pin is known by
    // its content, whatever its file is called.
    let positional = match args.pinned {
        Some(_) => None,
        None => PinnedPlan::recognise(&args.plan),
    };
    let pinned_arg = match (&args.pinned, &positional) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(_)) => Some(args.plan.clone()),
        (None, None) => None,
    };
    let pinned_read = match positional {
        Some(read) => Some(read),
        None => args.pinned.as_deref().map(PinnedPlan::read),
    };
    let (pinned, rehearsal) = match (
        pinned_read.transpose(),
        args.rehearsal.as_deref().map(PinnedPlan::read).transpose(),
    ) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("error: {message}");
            return exit_codes::FAILURE;
        }
    };
    if let Some(why) = pinned.as_ref().and_then(|p| {
        p.other_target(
            target.name.as_deref(),
            &target_identity(&target.database_url),
        )
    }) {
        eprintln!("error: refused: {why}");
        return exit_codes::REFUSED;
    }
    let runs_the_pin = pinned.is_some() && args.pinned.is_none();
    let plan_path = match (&pinned, runs_the_pin) {
        (Some(p), true) => std::path::PathBuf::from(&p.plan_path),
        _ => args.plan.clone(),
    };
    let params: Vec<String> = match (&pinned, args.params.is_empty()) {
        (Some(p), true) => p
            .params
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", plan::params::json_to_arg(v)))
                    .collect()
            })
            .unwrap_or_default(),
        _ => args.params.clone(),
    };
    let loaded = match (&pinned, runs_the_pin) {
        // The text that was reviewed, not whatever the path holds today.
        (Some(p), true) => {
            plan::Source::from_text(p.plan_path.clone(), p.plan_text.clone()).map(plan::validate)
        }
        _ => plan::validate_file(&plan_path),
    };
    let validated = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, plan::LoadError::Read { .. }) {
                exit_codes::FAILURE
            } else {
                exit_codes::INVALID_PLAN
            };
        }
    };
    let Some(mut raw) = validated.valid_plan().cloned() else {
        for d in &validated.diagnostics {
            eprint!(
                "{}",
                Rendered::new(&validated.source, d).to_text(Some(&validated.source))
            );
        }
        eprintln!(
            "error: `{}` is not a valid plan; nothing was run",
            validated.source.path
        );
        return exit_codes::INVALID_PLAN;
    };
    // A plan file given beside its pin (`--pinned FILE`) must be the text that was reviewed.
    if let Some(p) = pinned.as_ref().filter(|_| !runs_the_pin) {
        let differences = p.text_differences(&validated.source.text);
        if !differences.is_empty() {
            eprintln!(
                "error: refused: `{}` is not the plan that was pinned:",
                plan_path.display()
            );
            for d in differences {
                eprintln!("{d}");
            }
            return exit_codes::REFUSED;
        }
    }
    let plan_text = validated.source.text.clone();
    target.apply_defaults(&mut raw, &validated.source);
    let needs_reason = match (args.overrides.is_empty(), args.again) {
        (false, _) => Some("--override"),
        (true, true) => Some("--again"),
        (true, false) => None,
    };
    if let Some(flag) = needs_reason
        && args.because.as_deref().is_none_or(|b| b.trim().len() < 10)
    {
        eprintln!(
            "error: `{flag}` needs `--because \"…\"` with the reason (at least 10 characters); it is recorded"
        );
        return exit_codes::INVALID_PLAN;
    }
    let interactive = super::prompt::interactive();
    if !args.dry_run && !args.yes && !interactive {
        eprintln!(
            "error: standard input is not a terminal, so nobody can confirm: pass `--yes` to apply without asking"
        );
        return exit_codes::REFUSED;
    }
    let overrides = engine::gates::Overrides {
        gates: args.overrides.clone(),
        because: args.because.clone(),
    };
    let mut compiled = match plan::compile(raw, &params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::INVALID_PLAN;
        }
    };
    if compiled.needs_broker && target.amqp_url.is_none() {
        eprintln!(
            "error: refused: plan `{}` uses the broker, and target `{}` names none (`amqp_url_env` or `amqp_url_file` in `replay.toml`)",
            compiled.raw.name,
            target.name.as_deref().unwrap_or_default()
        );
        return exit_codes::REFUSED;
    }
    // Both a pin and a rehearsal proof speak of exactly this plan with these parameters.
    for (file, what, path) in [
        (&pinned, "pinned", pinned_arg.as_deref()),
        (&rehearsal, "rehearsed", args.rehearsal.as_deref()),
    ] {
        let Some(p) = file else { continue };
        let differences = p.differences(&compiled);
        if !differences.is_empty() {
            eprintln!(
                "error: refused: this is not the plan that was {what} in `{}`:",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            );
            for d in differences {
                eprintln!("  - {d}");
            }
            return exit_codes::REFUSED;
        }
    }
    let pin = engine::pinned::Pin {
        pinned: pinned.clone(),
        rehearsal,
        tolerance: args.tolerance,
        target_name: target.name.clone(),
        production: target.production,
    };
    // Relative windows count back from one instant: the pin's, or this dry-run's (which a pin
    // made with `--out` keeps).
    match &pinned {
        Some(p) => compiled.freeze_now(p.now),
        None if args.dry_run || args.out.is_some() => compiled.freeze_now(chrono::Utc::now()),
        None => {}
    }
    let shown_path = match (runs_the_pin, &pinned_arg) {
        (true, Some(pin)) => pin.clone(),
        _ => plan_path.clone(),
    };
    let command = match runs_the_pin {
        true => format!("replay apply {}", shown_path.display()),
        false => format!(
            "replay apply {}{}",
            shown_path.display(),
            compiled.param_args()
        ),
    };
    let command = match &target.name {
        Some(name) => format!("{command} --target {name}"),
        None => command,
    };
    execute(
        args, &target, &compiled, &plan_path, &plan_text, pin, &overrides, command, None,
    )
}

/// On a production target: `--yes` names the target again, and the window and the rehearsal
/// cannot be overridden.
fn production_flags(args: &ApplyArgs, target: &super::target::Resolved) -> Result<(), String> {
    let Some(name) = target.name.as_deref().filter(|_| target.production) else {
        if let Some(confirm) = &args.confirm_target {
            return Err(format!(
                "`--confirm-target {confirm}` names a production target, but this run's target is {}",
                match &target.name {
                    Some(name) => format!("`{name}`, which is not marked `production`"),
                    None => "given by URL".into(),
                }
            ));
        }
        return Ok(());
    };
    use crate::engine::gates::Gate;
    if let Some(gate) = args
        .overrides
        .iter()
        .find(|g| matches!(g, Gate::Window | Gate::Rehearsal))
    {
        return Err(format!(
            "target `{name}` is production: its `{gate}` gate cannot be overridden"
        ));
    }
    if args.yes && !args.dry_run && args.confirm_target.as_deref() != Some(name) {
        return Err(format!(
            "target `{name}` is production: `--yes` needs `--confirm-target {name}` as well"
        ));
    }
    Ok(())
}

/// `replay join RUN`: the run's recorded plan, applied with `--join --yes`.
pub fn join(args: &super::args::JoinArgs) -> u8 {
    let target = match args.target.resolve(None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    if let Some(name) = target.name.as_deref().filter(|_| target.production)
        && args.confirm_target.as_deref() != Some(name)
    {
        eprintln!(
            "error: refused: target `{name}` is production: `replay join` needs `--confirm-target {name}`"
        );
        return exit_codes::REFUSED;
    }
    let found = super::runtime::block_on(async {
        let run = super::runs::resolve(&target.database_url, &args.run).await?;
        engine::rollback::plan_of_run(&target.database_url, run)
            .await
            .map(|plan| (run, plan))
    });
    let (run, compiled) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            eprintln!("error: {}", super::error_chain(&e));
            return exit_code(&e);
        }
        Err(code) => return code,
    };
    // Joined from another machine, the broker is not guessed: a plan that needs one names it.
    let mut target = target;
    target.amqp_url = match (&target.amqp_url, compiled.needs_broker) {
        (Some(url), _) => Some(url.clone()),
        (None, false) => None,
        (None, true) => {
            eprintln!(
                "error: refused: plan `{}` of run `{}` uses the broker: {}",
                compiled.raw.name,
                run,
                match &target.name {
                    Some(name) => format!(
                        "target `{name}` names none (`amqp_url_env` or `amqp_url_file` in `replay.toml`)"
                    ),
                    None => "give it with `--amqp-url` or `AMQP_URL`".into(),
                }
            );
            return exit_codes::REFUSED;
        }
    };
    let apply = ApplyArgs {
        plan: std::path::PathBuf::from(format!("(the plan of run {run})")),
        params: Vec::new(),
        dry_run: false,
        rehearse_all: false,
        restart: false,
        join: true,
        yes: true,
        again: false,
        overrides: Vec::new(),
        because: None,
        out: None,
        pinned: None,
        rehearsal: None,
        confirm_target: args.confirm_target.clone(),
        tolerance: 0,
        retries: args.retries,
        lease: args.lease,
        target: args.target.clone(),
        management_url: None,
        operator: args.operator.clone(),
        format: args.format,
        log_format: args.log_format,
    };
    let command = format!("replay join {run}");
    execute(
        &apply,
        &target,
        &compiled,
        &apply.plan,
        "",
        engine::pinned::Pin {
            target_name: target.name.clone(),
            production: target.production,
            ..engine::pinned::Pin::default()
        },
        &engine::gates::Overrides::default(),
        command,
        Some(run),
    )
}

/// Runs (or rehearses) a compiled plan and reports.
#[allow(clippy::too_many_arguments)]
fn execute(
    args: &ApplyArgs,
    target: &super::target::Resolved,
    compiled: &crate::plan::Plan,
    plan_path: &std::path::Path,
    plan_text: &str,
    pin: engine::pinned::Pin,
    overrides: &engine::gates::Overrides,
    command: String,
    join_run: Option<uuid::Uuid>,
) -> u8 {
    let connection = Connection {
        database_url: target.database_url.clone(),
        amqp_url: target.amqp_url.clone().unwrap_or_default(),
        operator: args.operator.clone().unwrap_or_else(operator),
        target: target.name.clone(),
    };
    let mut report = Report {
        version: 1,
        mode: match args.dry_run {
            true => crate::engine::status::Mode::DryRun,
            false => crate::engine::status::Mode::Apply,
        },
        plan: compiled.raw.name.clone(),
        plan_hash: compiled.hash.clone(),
        reason: compiled.raw.reason.clone(),
        params: compiled.params_json(),
        target: target_identity(&target.database_url),
        target_name: target.name.clone(),
        schema_changes: plan::usage::schema_changes(&compiled.raw),
        ..Report::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit_codes::FAILURE;
        }
    };
    // The pin's server, not only its address: another server behind the same name is refused.
    let pinned_server = pin
        .pinned
        .as_ref()
        .and_then(|p| p.system_identifier.clone());
    if pinned_server.is_some() || args.out.is_some() {
        let here = runtime
            .block_on(engine::state::system_identifier(&connection.database_url))
            .ok()
            .flatten();
        if let Some(why) = pin
            .pinned
            .as_ref()
            .and_then(|p| p.other_server(here.as_deref()))
        {
            eprintln!("error: refused: {why}");
            return exit_codes::REFUSED;
        }
        report.system_identifier = here;
    }
    // Asked before anything is written: no run row, no lease, no migration.
    let mut confirmed = None;
    // Without a question, a `--restart` still says what it abandons.
    if !args.dry_run && args.yes && args.restart {
        let preview = runtime.block_on(engine::preview::preview(
            compiled,
            &connection,
            true,
            args.again,
            overrides,
        ));
        if let Some(abandons) = preview.ok().and_then(|p| p.abandons) {
            let warning = format!("--restart abandons {}", abandons.describe());
            eprintln!("warning: {warning}");
            report.warnings.push(warning);
        }
    }
    if !args.dry_run && !args.yes {
        let new_run = uuid::Uuid::new_v4();
        let asked = runtime.block_on(async {
            let preview = engine::preview::preview(
                compiled,
                &connection,
                args.restart,
                args.again,
                overrides,
            )
            .await?;
            // A gate that refuses at today's count refuses before the question, not after it.
            if let Some(refusal) = engine::gates::refusal(&preview.gates) {
                return Err(RunError::Refused(format!("{refusal}; nothing was written")));
            }
            let Some(summary) = question(&preview, &report, new_run) else {
                return Ok(None);
            };
            let run = match preview.outcome {
                Outcome::Resume { run_id, .. } => run_id,
                _ => new_run,
            };
            let expected = super::prompt::expected_answer(
                &report.plan,
                report.target_name.as_deref(),
                target.production,
            );
            Ok::<_, RunError>(Some((
                super::prompt::confirm(&summary, &expected).await,
                run,
            )))
        });
        match asked {
            Err(e) => {
                eprintln!("error: {}", super::error_chain(&e));
                return exit_code(&e);
            }
            Ok(None) => {}
            Ok(Some((Answer::Confirmed, run))) => confirmed = Some(run),
            Ok(Some((Answer::Declined, _))) => {
                eprintln!("error: refused: not confirmed; nothing was written");
                return exit_codes::REFUSED;
            }
            Ok(Some((Answer::Interrupted, _))) => {
                eprintln!("interrupted at the question; nothing was written");
                return exit_codes::INTERRUPTED;
            }
        }
    }
    let cancel = Cancel::default();
    let terminal = std::io::stderr().is_terminal() && args.format == ReportFormat::Text;
    let mut progress = Progress::new(terminal);
    let result = runtime.block_on(async {
        let signals = cancel.clone();
        tokio::spawn(async move {
            super::prompt::signalled().await;
            tracing::warn!("stop requested: finishing the batch in flight");
            signals.cancel();
        });
        if args.dry_run {
            let options = engine::DryRunOptions {
                overrides: overrides.clone(),
                pin: pin.clone(),
                rehearse_all: args.rehearse_all,
                management_url: args.management_url.clone(),
            };
            engine::dry_run(compiled, &connection, &options, &mut progress, &mut report).await
        } else {
            let options = ApplyOptions {
                restart: args.restart,
                overrides: overrides.clone(),
                confirmed,
                pin: pin.clone(),
                retries: args.retries,
                lease: args.lease,
                again: args.again.then(|| args.because.clone().unwrap_or_default()),
                join: args.join,
                join_run,
            };
            let started_at = std::time::Instant::now();
            let mut notifier = engine::notify::Notifier::new(compiled);
            let mut notifying = engine::notify::Notifying {
                inner: &mut progress,
                notifier: &mut notifier,
                report: report.clone(),
                started_at,
            };
            let result = engine::apply(
                compiled,
                &connection,
                &options,
                &mut notifying,
                &cancel,
                &mut report,
            )
            .await;
            engine::notify::tell_outcome(notifier, &report, started_at, &connection)
                .await
                .apply_to(&mut report);
            result
        }
    });
    if let (Some(out), Ok(())) = (&args.out, &result) {
        let pinned = PinnedPlan::from_report(
            compiled,
            &plan_path.display().to_string(),
            plan_text,
            report.system_identifier.clone(),
            &report,
        );
        let written = serde_json::to_string_pretty(&pinned)
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(out, t + "\n").map_err(|e| e.to_string()));
        match written {
            Ok(()) => report.next.push(format!(
                "pinned: {} (apply exactly this with `replay apply {}`)",
                out.display(),
                out.display()
            )),
            Err(e) => eprintln!("warning: cannot write `{}`: {e}", out.display()),
        }
    }
    if let Err(e) = &result {
        report.error = Some(super::error_chain(e));
        if !args.dry_run && resumable(&report.status) {
            report
                .next
                .push(format!("resume with: {command}{}", resume_flags(args)));
        }
    } else if args.dry_run {
        report.next.push(format!("apply with: {command}"));
    }
    if let Some(id) = &report.run_id {
        report
            .next
            .push(format!("inspect with: replay status {id}"));
        if report.failing.as_ref().is_some_and(|f| f.total > 0) {
            report.next.push(format!(
                "plan the events that failed again: replay inspect --run {id} --status error --emit-plan NEXT.yaml"
            ));
        }
    }
    match args.format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        ReportFormat::Text => print!("{}", crate::render::text(&report)),
        ReportFormat::Markdown => print!("{}", crate::render::markdown::render(&report)),
    }
    match &result {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", super::error_chain(e));
            exit_code(e)
        }
    }
}

/// The one place where run errors become exit codes.
pub fn exit_code(e: &RunError) -> u8 {
    use crate::engine::error::FaultClass;
    use crate::engine::status::RunStatus;
    match (e.class(), e) {
        (_, RunError::Interrupted) => exit_codes::INTERRUPTED,
        (_, RunError::GuardStopped { .. }) => exit_codes::GUARD_STOPPED,
        (_, RunError::RetriesExhausted { .. } | RunError::LeaseExpired { .. }) => {
            exit_codes::RESUMABLE
        }
        // An executor that joined ends as the run ended.
        (_, RunError::NotRunning { status, .. }) => match status {
            RunStatus::RolledBack => exit_codes::VERIFICATION_FAILED,
            RunStatus::Stopped => exit_codes::INTERRUPTED,
            RunStatus::Interrupted => exit_codes::RESUMABLE,
            RunStatus::Refused | RunStatus::Abandoned => exit_codes::REFUSED,
            _ => exit_codes::FAILURE,
        },
        (
            _,
            RunError::VerificationFailed { .. }
            | RunError::CanaryFailed { .. }
            | RunError::VerificationFailedNoRollback { .. }
            | RunError::RollbackResumed { .. },
        ) => exit_codes::VERIFICATION_FAILED,
        (FaultClass::Refusal, _) => exit_codes::REFUSED,
        _ => exit_codes::FAILURE,
    }
}

/// Whether the run's recorded status lets `replay apply` pick it up again.
fn resumable(status: &str) -> bool {
    status
        .parse::<crate::engine::status::RunStatus>()
        .is_ok_and(|s| s.resumable())
}

/// The flags a resumed run needs besides the plan and its parameters.
fn resume_flags(args: &ApplyArgs) -> String {
    let mut flags = String::new();
    if let Some(pinned) = &args.pinned {
        flags.push_str(&format!(" --pinned {}", pinned.display()));
    }
    if let Some(rehearsal) = &args.rehearsal {
        flags.push_str(&format!(" --rehearsal {}", rehearsal.display()));
    }
    if let Some(confirm) = &args.confirm_target {
        flags.push_str(&format!(" --confirm-target {confirm}"));
    }
    for gate in &args.overrides {
        flags.push_str(&format!(" --override {gate}"));
    }
    if let Some(because) = args
        .because
        .as_deref()
        .filter(|_| !args.overrides.is_empty())
    {
        flags.push_str(&format!(" --because {}", shell_quote(because)));
    }
    flags
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

pub fn operator() -> String {
    std::env::var("REPLAY_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// `host:port/db` of a database URL, without user or password.
pub fn target_identity(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_string()
}

/// The question before the first write: the run, the target, the selection, the steps, the pace
/// and the time it gives; what is left, for a resume. `None` when there is nothing to ask (the
/// plan already succeeded, or its unfinished run is of another version: the apply says so).
fn question(preview: &Preview, report: &Report, new_run: uuid::Uuid) -> Option<String> {
    use crate::render::numbers::{duration, thousands};
    use std::fmt::Write as _;
    let mut text = String::new();
    let (run, selected) = match &preview.outcome {
        Outcome::Start { selected } => (
            format!("{new_run} (new)"),
            format!("{} selected now", thousands(*selected as i128)),
        ),
        Outcome::Resume {
            run_id,
            status,
            started_at,
            selected,
        } => (
            format!(
                "{run_id} (resumed: {status}, started {})",
                started_at.format("%Y-%m-%d %H:%M UTC")
            ),
            match (selected, preview.left()) {
                (Some(n), Some(left)) => format!(
                    "{} frozen, {} left",
                    thousands(*n as i128),
                    thousands(left as i128)
                ),
                _ => "not frozen yet".into(),
            },
        ),
        Outcome::AlreadySucceeded { .. } | Outcome::Changed { .. } => return None,
    };
    let target = match &report.target_name {
        Some(name) => format!("{name} ({})", report.target),
        None => report.target.clone(),
    };
    let _ = writeln!(text, "\nAbout to apply plan `{}`:", preview.plan);
    let _ = writeln!(text, "  run     {run}");
    let _ = writeln!(text, "  target  {target}");
    let _ = writeln!(text, "  events  {selected}");
    if let Some(abandons) = &preview.abandons {
        let _ = writeln!(text, "  WARNING --restart abandons {}", abandons.describe());
    }
    let resuming = matches!(preview.outcome, Outcome::Resume { .. });
    for (i, step) in preview.steps.iter().enumerate() {
        let progress = match (resuming, step.finished) {
            (false, _) => String::new(),
            (true, true) => ": done".into(),
            (true, false) if step.done > 0 => {
                format!(": {} done", thousands(step.done as i128))
            }
            (true, false) => ": not started".into(),
        };
        let label = if i == 0 { "steps" } else { "" };
        let _ = writeln!(
            text,
            "  {label:<6}  {}. {} ({}){progress}",
            i + 1,
            step.id,
            step.kind
        );
    }
    let time = preview
        .paced_time()
        .filter(|t| !t.is_zero())
        .map(|t| format!("; at least {} at that pace", duration(t)))
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "  rate    {} events/s{time}",
        thousands(i128::from(preview.per_second))
    );
    Some(text)
}
