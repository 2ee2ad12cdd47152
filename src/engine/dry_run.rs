//! A dry-run: the same step loop over rehearsing implementations. Everything happens inside one
//! transaction that is rolled back (with a `lock_timeout`, so a rehearsal never queues behind
//! the live worker), writes are rehearsed on the first batch of each step and the rest counted,
//! and no message is sent; the executor's schema is not needed.

use crate::engine::binds::BindScope;
use crate::engine::broker::Recorder;
use crate::engine::connection::{Connection, check_tables, describe};
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::management::{self, Management};
use crate::engine::pace::NoWait;
use crate::engine::report::{CanaryReport, Report, VerificationReport};
use crate::engine::sequence::{self, Unrecorded};
use crate::engine::steps::{Cancel, StepContext};
use crate::engine::writes::{Rehearse, Writes};
use crate::engine::{backup, freeze, gates, guards, routing, state, verify};
use crate::plan::Plan;
use crate::plan::model::{PublishEach, Step};

/// Messages rendered into the report per publish step.
const SAMPLE: usize = 3;

pub async fn dry_run(
    plan: &Plan,
    connection: &Connection,
    options: &DryRunOptions,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<(), RunError> {
    let pool = state::connect(&connection.database_url).await?;
    check_tables(&pool, plan).await?;
    report.connections = describe(&pool, plan, &connection.amqp_url).await?;
    let run_id = uuid::Uuid::nil();
    let started_at = chrono::Utc::now();
    let mut writes = Rehearse::start(&pool)
        .await
        .map_err(RunError::db("starting the dry-run transaction"))?;
    let scope = BindScope::new(plan, run_id, started_at, writes.selection_table())
        .with_batches(Rehearse::BATCHES_TABLE);
    let frozen = freeze::freeze(&mut writes, plan, run_id, 0).await?;
    let selected = frozen.selected;
    report.selected = selected;
    if let Some(review) = &plan.raw.review {
        freeze::mask(&mut writes, run_id, &review.mask_paths()).await?;
    }
    report.breakdown = freeze::breakdown(&mut writes, run_id, 5).await?;
    reporter.event(&RunEvent::SelectionFrozen { selected });
    report.selection_digest = frozen.digest;
    let table = writes.selection_table();
    report.selection_keys = freeze::keys(&mut writes.outer, table, run_id).await?;
    report.gates = gates::check(plan, selected, started_at);
    report
        .gates
        .extend(options.pin.gates(plan, &report.target, true));
    if plan.needs_broker {
        let table = writes.selection_table();
        let types = routing::frozen_types(&mut writes.outer, table, run_id).await?;
        report.gates.push(gates::routing(
            routing_verdict(plan, &types, &connection.amqp_url, options).await,
        ));
    }
    options.overrides.apply(&mut report.gates);
    if let Some(pg_dump) = plan.raw.backup.as_ref().and_then(|b| b.pg_dump.as_ref()) {
        crate::engine::dump::check(&pg_dump.directory).await?;
    }
    for snapshot in backup::take(&mut writes, plan, &scope, run_id, 0, &[]).await? {
        report.backups.push(snapshot);
    }
    let amqp = crate::engine::broker::connect_for(plan, &connection.amqp_url).await?;
    let mut broker = Recorder::new(amqp, SAMPLE);
    let requests = crate::engine::http::Rehearsal::for_plan(plan, SAMPLE)?;
    // The verification queries' values now, before anything is rehearsed: what the run starts
    // from. They are shown, not judged (nothing has been processed yet).
    for (i, v) in plan.raw.verify.iter().enumerate() {
        let actual = verify::value(&mut writes.outer, &scope, plan, i).await?;
        report.verifications.push(VerificationReport {
            name: v.name.clone(),
            passed: true,
            actual,
            expected: serde_json::to_value(&v.expect).unwrap_or_default(),
        });
    }
    // The canary: which events it would take (the run shows its steps and verifications).
    if let Some(n) = crate::engine::canary::size(plan, selected) {
        let table = writes.selection_table();
        let event_ids =
            state::first_selected(&mut writes.outer, table, run_id, n.min(20) as i64).await?;
        report.canary = Some(CanaryReport {
            events: n,
            event_ids,
            pause_secs: crate::engine::canary::pause(plan).as_secs_f64(),
            ..CanaryReport::default()
        });
    }
    // The guards with their values now, before anything is rehearsed.
    report.guards = guards::preview(plan, &mut writes.outer, &scope, &mut broker).await;
    let batch = u64::from(plan.raw.rate_limit.batch_size.max(1));
    // A bounded rehearsal: the first batch of each step, unless asked for all of them.
    let limit = match options.rehearse_all {
        true => selected,
        false => selected.min(batch),
    };
    // The steps see the selection up to that bound, so a once-step over `:selected_event_ids`
    // is rehearsed on the same first batch and never locks the rest.
    let bounded = format!(
        "(SELECT * FROM {} WHERE seq <= {limit}) rehearsed",
        writes.selection_table()
    );
    let step_scope =
        BindScope::new(plan, run_id, started_at, &bounded).with_batches(Rehearse::BATCHES_TABLE);
    let cancel = Cancel::default();
    // The canary's steps are rehearsed as the run records them (`canary/<id>`), on its first
    // batch, before the plan's.
    let canary = crate::engine::canary::size(plan, selected);
    let canary_result = match canary {
        Some(n) => {
            let first = format!(
                "(SELECT * FROM {} WHERE seq <= {}) rehearsed",
                writes.selection_table(),
                n.min(limit)
            );
            let scope = BindScope::new(plan, run_id, started_at, &first)
                .with_batches(Rehearse::BATCHES_TABLE);
            let mut ctx = StepContext {
                plan,
                run_id,
                lease: 0,
                started_at,
                binds: &scope,
                total: n,
                limit: n.min(limit),
                cancel: &cancel,
                reporter: &mut *reporter,
                executor: None,
            };
            let mut phase = Report::default();
            let result = sequence::run_all(
                &mut ctx,
                &crate::engine::canary::steps(plan),
                &mut writes,
                &mut broker,
                &requests,
                &mut NoWait,
                &mut Unrecorded,
                &mut phase,
            )
            .await;
            if let Some(c) = report.canary.as_mut() {
                c.steps = phase.steps;
            }
            result
        }
        None => Ok(()),
    };
    if plan.raw.canary.is_some() && canary.is_none() {
        report.warnings.push(format!(
            "the canary ({} events) is not smaller than the selection ({selected}): the run has no canary and is judged once, at its end",
            plan.raw.canary.as_ref().map_or(0, |c| c.events)
        ));
    }
    let mut ctx = StepContext {
        plan,
        run_id,
        lease: 0,
        started_at,
        binds: &step_scope,
        total: selected,
        limit,
        cancel: &cancel,
        reporter,
        executor: None,
    };
    let result = match canary_result {
        Ok(()) => {
            sequence::run_all(
                &mut ctx,
                &plan.raw.steps,
                &mut writes,
                &mut broker,
                &requests,
                &mut NoWait,
                &mut Unrecorded,
                report,
            )
            .await
        }
        Err(e) => Err(e),
    };
    report.messages = broker.sample.clone();
    report.requests = requests.sample.take();
    writes
        .finish()
        .await
        .map_err(RunError::db("rolling the dry-run back"))?;
    broker.close().await;
    // Counted, not rehearsed: a reset touches each selected event's row once, and a per-event
    // publish (or http step) sends one message (or call) per selected event.
    for (step, r) in plan.raw.steps.iter().zip(report.steps.iter_mut()) {
        if matches!(step, Step::Reset(_))
            || matches!(step, Step::Publish(p) if p.each == PublishEach::Event)
            || matches!(step, Step::Http(h) if h.each == crate::plan::model::HttpEach::Event)
        {
            r.touched = selected;
            r.rehearsed = None;
        }
    }
    report.estimated_secs = Some(estimate(plan, selected));
    report.status = match (&result, report.gates.iter().all(|g| g.passed)) {
        (Ok(()), true) => "would_run".into(),
        (Ok(()), false) => "would_be_refused".into(),
        (Err(_), _) => "would_fail".into(),
    };
    result?;
    if let Some(refusal) = gates::refusal(&report.gates) {
        return Err(RunError::Refused(refusal));
    }
    Ok(())
}

/// What a dry-run may be asked besides the plan.
#[derive(Debug, Clone, Default)]
pub struct DryRunOptions {
    pub overrides: gates::Overrides,
    pub pin: crate::engine::pinned::Pin,
    /// Rehearse every batch of every step (slow, and holds row locks as long), not just the first.
    pub rehearse_all: bool,
    /// The RabbitMQ management API, for the `routing` gate (default: the AMQP host's port 15672).
    pub management_url: Option<String>,
}

/// Whether the keys the plan will publish for these event types reach a queue; why not, when
/// the bindings cannot be read.
async fn routing_verdict(
    plan: &Plan,
    types: &[String],
    amqp_url: &str,
    options: &DryRunOptions,
) -> Result<routing::Verdict, String> {
    let api = Management::new(amqp_url, options.management_url.as_deref())?;
    let planned = routing::planned(plan, types);
    routing::judge(&api, &planned).await.map_err(|e| {
        let text = crate::engine::redact::scrub(&e.to_string(), amqp_url);
        format!("{text}; {}", management::ENABLE)
    })
}

/// Seconds the batch steps need at the plan's rate (waits not included).
fn estimate(plan: &Plan, selected: u64) -> f64 {
    let per_event_steps = plan
        .raw
        .steps
        .iter()
        .filter(|s| {
            matches!(s, Step::Reset(_))
                || matches!(s, Step::Publish(p) if p.each == crate::plan::model::PublishEach::Event)
                || matches!(s, Step::Http(h) if h.each == crate::plan::model::HttpEach::Event)
        })
        .count() as f64;
    per_event_steps * selected as f64 / f64::from(plan.raw.rate_limit.per_second.max(1))
}
