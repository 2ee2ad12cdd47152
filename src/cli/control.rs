//! `replay pause RUN`, `replay resume RUN`, `replay set RUN rate=N batch=M`: live control of a
//! running run, from any machine that reaches its database.

use serde_json::Value;

use crate::engine::control::{self, Changed, Control};
use crate::engine::{RunError, state};
use crate::exit_codes;
use crate::render::numbers::thousands;

use super::apply::exit_code;
use super::args::{ControlArgs, SetArgs, Setting};
use super::runtime::block_on;

pub fn pause(args: &ControlArgs) -> u8 {
    run(args, Control::Pause)
}

pub fn resume(args: &ControlArgs) -> u8 {
    run(args, Control::Resume)
}

pub fn set(args: &SetArgs) -> u8 {
    let mut per_second = None;
    let mut batch_size = None;
    for setting in &args.settings {
        match *setting {
            Setting::Rate(n) => per_second = Some(n),
            Setting::Batch(n) => batch_size = Some(n),
        }
    }
    run(
        &args.control,
        Control::Set {
            per_second,
            batch_size,
        },
    )
}

fn run(args: &ControlArgs, control: Control) -> u8 {
    let target = match args.target.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    let operator = args.operator.clone().unwrap_or_else(super::apply::operator);
    let result = block_on(async {
        let run = super::runs::resolve(&target.database_url, &args.run).await?;
        let pool = state::connect(&target.database_url).await?;
        let changed = control::apply(&pool, run, &operator, control).await;
        pool.close().await;
        Ok::<_, RunError>((run, changed?))
    });
    match result {
        Ok(Ok((run, changed))) => {
            println!("{}", said(run, control, &changed));
            exit_codes::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", super::error_chain(&e));
            exit_code(&e)
        }
        Err(code) => code,
    }
}

/// What the operator is told: the run, what holds now, and how to undo it.
fn said(run: uuid::Uuid, control: Control, changed: &Changed) -> String {
    let pace = |v: &Value| {
        let n = |key: &str| v.get(key).and_then(Value::as_u64).unwrap_or_default();
        format!(
            "{} events/s in batches of {}",
            thousands(i128::from(n("per_second"))),
            thousands(i128::from(n("batch_size")))
        )
    };
    let plan = &changed.plan;
    match control {
        Control::Pause => format!(
            "run `{run}` of plan `{plan}` pauses before its next batch, on every executor; `replay resume {run}` goes on"
        ),
        Control::Resume => format!(
            "run `{run}` of plan `{plan}` goes on at {}",
            pace(&changed.now)
        ),
        Control::Set { .. } => {
            let mut text = format!(
                "run `{run}` of plan `{plan}` now runs at {} (was {}), from its next batch",
                pace(&changed.now),
                pace(&changed.was)
            );
            if changed.recut > 0 {
                text.push_str(&format!(
                    "; its unclaimed events are cut into {} batch(es)",
                    thousands(i128::from(changed.recut))
                ));
            }
            if changed.now.get("paused") == Some(&Value::Bool(true)) {
                text.push_str(&format!("; it is paused: `replay resume {run}` goes on"));
            }
            text
        }
    }
}
