//! `replay doctor`: load the plans, run the preflight, print the checks, exit 0 only when none
//! failed.

use crate::engine::doctor::{self, DoctorPlan, Preflight};
use crate::exit_codes;
use crate::plan::{self, Rendered};

use super::args::{DoctorArgs, DoctorFormat};

pub fn run(args: &DoctorArgs) -> u8 {
    let target = match args.target.resolve(Some(super::target::LOCAL_BROKER)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    let mut plans = Vec::new();
    for path in &args.plans {
        let validated = match plan::validate_file(path) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: {e}");
                return match e {
                    plan::LoadError::Read { .. } => exit_codes::FAILURE,
                    _ => exit_codes::INVALID_PLAN,
                };
            }
        };
        let Some(mut raw) = validated.valid_plan().cloned() else {
            for d in &validated.diagnostics {
                eprint!("{}", Rendered::new(&validated.source, d).to_text(None));
            }
            eprintln!(
                "error: `{}` is not a valid plan (see `replay validate`)",
                path.display()
            );
            return exit_codes::INVALID_PLAN;
        };
        target.apply_defaults(&mut raw, &validated.source);
        // Parameters a plan does not declare are not an error here: one `--param` list serves
        // every plan given.
        let declared: Vec<String> = args
            .params
            .iter()
            .filter(|p| {
                p.split_once('=')
                    .is_some_and(|(name, _)| raw.params.contains_key(name))
            })
            .cloned()
            .collect();
        let compiled = plan::compile(raw.clone(), &declared).map_err(|e| e.to_string());
        plans.push(DoctorPlan { raw, compiled });
    }
    let preflight = Preflight {
        database_url: target.database_url.clone(),
        amqp_url: target.amqp_url.clone().unwrap_or_default(),
        management_url: args.management_url.clone(),
        plans,
        default_target: {
            let mut t = crate::plan::model::Target::default();
            if let Some(d) = &target.defaults {
                for (default, field) in [
                    (&d.events_table, &mut t.events_table),
                    (&d.exchange, &mut t.exchange),
                    (&d.audit_table, &mut t.audit_table),
                ] {
                    if let Some(value) = default {
                        *field = value.clone();
                    }
                }
            }
            t
        },
    };
    let findings = match super::runtime::block_on(doctor::run(&preflight)) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match args.format {
        DoctorFormat::Text => print!("{}", crate::render::doctor::text(&findings)),
        DoctorFormat::Json => match serde_json::to_string_pretty(&findings) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot write the checks as JSON: {e}");
                return exit_codes::FAILURE;
            }
        },
    }
    match findings.passed {
        true => exit_codes::SUCCESS,
        false => exit_codes::FAILURE,
    }
}
