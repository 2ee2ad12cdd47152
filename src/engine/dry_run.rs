//! A dry-run: the same steps over rehearsing implementations. Everything happens inside one
//! transaction that is rolled back, and no message is sent; the executor's schema is not needed.

use crate::engine::apply::{Connection, check_tables};
use crate::engine::binds::BindScope;
use crate::engine::broker::{Amqp, Recorder};
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::pace::NoWait;
use crate::engine::report::{Report, StepReport, VerificationReport};
use crate::engine::steps::{self, Cancel, StepContext};
use crate::engine::writes::{Rehearse, Writes};
use crate::engine::{backup, freeze, gates, state, verify};
use crate::plan::Plan;
use crate::plan::model::{Step, WaitStep};

/// Messages rendered into the report per publish step.
const SAMPLE: usize = 3;

pub async fn dry_run(
    plan: &Plan,
    connection: &Connection,
    overrides: &gates::Overrides,
    pin: &crate::engine::pinned::Pin,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<(), RunError> {
    let pool = state::connect(&connection.database_url).await?;
    check_tables(&pool, plan).await?;
    let run_id = uuid::Uuid::nil();
    let started_at = chrono::Utc::now();
    let mut writes = Rehearse::start(&pool)
        .await
        .map_err(RunError::db("starting the dry-run transaction"))?;
    let scope = BindScope::new(plan, run_id, started_at, writes.selection_table());
    let selected = freeze::freeze(&mut writes, plan, run_id).await?;
    report.selected = selected;
    report.breakdown = freeze::breakdown(&mut writes, plan, run_id, 5).await?;
    reporter.event(&RunEvent::SelectionFrozen { selected });
    report.selection_digest = freeze::digest(&mut writes, run_id).await?.1;
    report.gates = gates::check(plan, selected, started_at);
    report
        .gates
        .extend(pin.rehearsal_gate(plan, &report.target, true));
    overrides.apply(&mut report.gates);
    if let Some(pg_dump) = plan.raw.backup.as_ref().and_then(|b| b.pg_dump.as_ref()) {
        crate::engine::dump::check(&pg_dump.directory).await?;
    }
    for snapshot in backup::take(&mut writes, plan, &scope, run_id, &[]).await? {
        report.backups.push(snapshot);
    }
    let needs_broker = plan.raw.steps.iter().any(|s| {
        matches!(
            s,
            Step::Publish(_)
                | Step::PurgeQueue(_)
                | Step::Wait(WaitStep {
                    queue_empty: Some(_),
                    ..
                })
        )
    });
    let amqp = match needs_broker {
        true => Some(
            Amqp::connect(
                &connection.amqp_url,
                1,
                "dry-run".into(),
                plan.raw.name.clone(),
            )
            .await?,
        ),
        false => None,
    };
    let mut broker = Recorder::new(amqp, SAMPLE);
    if needs_broker {
        crate::engine::broker::check_objects(&mut broker, plan).await?;
    }
    let mut clock = NoWait;
    let cancel = Cancel::default();
    let mut ctx = StepContext {
        plan,
        run_id,
        lease: 0,
        started_at,
        binds: &scope,
        total: selected,
        cancel: &cancel,
        reporter,
    };
    let mut result = Ok(());
    for step in &plan.raw.steps {
        let sent_before = broker.count;
        let outcome = match step {
            Step::Reset(s) => steps::reset(&mut ctx, &mut writes, &mut clock, s, 0, 0).await,
            Step::Sql(s) => steps::sql(&mut ctx, &mut writes, &mut clock, s, 0, 0).await,
            Step::Publish(s) => {
                steps::publish(&mut ctx, &mut writes, &mut broker, &mut clock, s, 0, 0).await
            }
            Step::Wait(s) => steps::wait(&mut ctx, &mut writes, &mut broker, &mut clock, s)
                .await
                .map(|_| 0),
            Step::PurgeQueue(s) => steps::purge(&mut ctx, &mut writes, &mut broker, s).await,
        };
        match outcome {
            Ok(touched) => report.steps.push(StepReport {
                id: step.id().into(),
                kind: step.kind().into(),
                touched: if matches!(step, Step::Publish(_)) {
                    broker.count - sent_before
                } else {
                    touched
                },
                resumed_from: None,
            }),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    report.messages = broker.sample.clone();
    // The verification queries' current values, without judging them: nothing was processed.
    if result.is_ok() {
        for v in &plan.raw.verify {
            let actual = verify::value(&mut writes.outer, &scope, &v.sql, &v.name).await?;
            report.verifications.push(VerificationReport {
                name: v.name.clone(),
                passed: true,
                actual,
                expected: serde_json::to_value(&v.expect).unwrap_or_default(),
            });
        }
    }
    writes
        .finish()
        .await
        .map_err(RunError::db("rolling the dry-run back"))?;
    broker.close().await;
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

/// Seconds the batch steps need at the plan's rate (waits not included).
fn estimate(plan: &Plan, selected: u64) -> f64 {
    let per_event_steps = plan
        .raw
        .steps
        .iter()
        .filter(|s| {
            matches!(s, Step::Reset(_))
                || matches!(s, Step::Publish(p) if p.each == crate::plan::model::PublishEach::Event)
        })
        .count() as f64;
    per_event_steps * selected as f64 / f64::from(plan.raw.rate_limit.per_second.max(1))
}
