//! Live control of a running run from any terminal that reaches its database (gh-ost-style):
//! `replay pause RUN`, `replay resume RUN`, `replay set RUN rate=N batch=M`.
//!
//! The settings live in the run's pace row (`replay.pace`), which every executor reads when it
//! takes its next batch's slot (`claims::reserve`): a pause or a new rate takes effect before the
//! next batch starts, whichever executor runs it. A new batch size re-cuts the batches no executor
//! has claimed yet, and the batches of the steps still to open. Each change is one transaction
//! with its run-log entry (`paused`, `unpaused`, `pace_set`, with the operator), and the run's
//! recorded plan takes the new pace, so that `replay status` shows what the run now does.

use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use crate::engine::error::RunError;
use crate::engine::status::RunStatus;

/// What an operator asks of a running run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    /// A new rate (events per second over the run) and/or batch size.
    Set {
        per_second: Option<u32>,
        batch_size: Option<u32>,
    },
}

/// What a control changed: the run's plan, and the settings before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub plan: String,
    pub was: Value,
    pub now: Value,
    /// Batches not yet claimed that were cut anew at the new batch size.
    pub recut: u64,
}

/// Applies `control` to a running run, recorded in its run log with `operator`. A run that is
/// not running is refused (exit 4), naming its status: a pause is for a run in flight; an
/// interrupted run is paced by the plan it resumes with.
pub async fn apply(
    pool: &PgPool,
    run_id: uuid::Uuid,
    operator: &str,
    control: Control,
) -> Result<Changed, RunError> {
    let doing = "changing the run's pace";
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    let run = sqlx::query(
        "SELECT plan_name, status, plan_document -> 'rate_limit' FROM replay.runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(RunError::db(doing))?
    .ok_or_else(|| RunError::RunNotNamed(format!("no run `{run_id}`")))?;
    let (plan, status, rate): (String, RunStatus, Value) = (run.get(0), run.get(1), run.get(2));
    if status != RunStatus::Running {
        return Err(RunError::Refused(format!(
            "run `{run_id}` is not running (it is {status}); a resumed run takes the pace of the plan it resumes with"
        )));
    }
    // The row exists once any executor took a slot; a control that comes first makes it.
    let pace = sqlx::query(
        "INSERT INTO replay.pace AS p (run_id, next_at) VALUES ($1, clock_timestamp()) \
         ON CONFLICT (run_id) DO UPDATE SET run_id = p.run_id \
         RETURNING p.paused, p.per_second, p.batch_size",
    )
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    let paused: bool = pace.get(0);
    let plan_rate = |key: &str| rate.get(key).and_then(Value::as_i64).unwrap_or_default();
    let per_second = pace
        .get::<Option<i32>, _>(1)
        .map_or_else(|| plan_rate("per_second"), i64::from);
    let batch_size = pace
        .get::<Option<i32>, _>(2)
        .map_or_else(|| plan_rate("batch_size"), i64::from);
    let was = json!({"paused": paused, "per_second": per_second, "batch_size": batch_size});
    let (kind, now, recut) = match control {
        Control::Pause | Control::Resume => {
            let pause = control == Control::Pause;
            sqlx::query("UPDATE replay.pace SET paused = $2 WHERE run_id = $1")
                .bind(run_id)
                .bind(pause)
                .execute(&mut *tx)
                .await
                .map_err(RunError::db(doing))?;
            let now = json!({"paused": pause, "per_second": per_second, "batch_size": batch_size});
            (if pause { "paused" } else { "unpaused" }, now, 0)
        }
        Control::Set {
            per_second: rate_to,
            batch_size: batch_to,
        } => {
            let rate_to = rate_to.map_or(per_second, i64::from);
            let batch_to = batch_to.map_or(batch_size, i64::from);
            // The pace every executor reads, and the run's recorded plan that `status` shows.
            sqlx::query(
                "WITH pace AS (UPDATE replay.pace SET per_second = $2, batch_size = $3 WHERE run_id = $1) \
                 UPDATE replay.runs SET plan_document = jsonb_set(jsonb_set(plan_document, \
                 '{rate_limit,per_second}', to_jsonb($2::int)), '{rate_limit,batch_size}', to_jsonb($3::int)) \
                 WHERE id = $1",
            )
            .bind(run_id)
            .bind(rate_to as i32)
            .bind(batch_to as i32)
            .execute(&mut *tx)
            .await
            .map_err(RunError::db(doing))?;
            let recut = if batch_to == batch_size {
                0
            } else {
                recut_batches(&mut tx, run_id, batch_to)
                    .await
                    .map_err(RunError::db(doing))?
            };
            let now = json!({"paused": paused, "per_second": rate_to, "batch_size": batch_to});
            ("pace_set", now, recut)
        }
    };
    sqlx::query("INSERT INTO replay.run_log (run_id, kind, detail) VALUES ($1, $2, $3)")
        .bind(run_id)
        .bind(kind)
        .bind(json!({"operator": operator, "was": was, "now": now, "recut": recut}))
        .execute(&mut *tx)
        .await
        .map_err(RunError::db(doing))?;
    tx.commit().await.map_err(RunError::db(doing))?;
    Ok(Changed {
        plan,
        was,
        now,
        recut,
    })
}

/// Cuts the batches no executor ever claimed anew at `batch` events: each run of adjacent such
/// batches of a step becomes batches of the new size over the same events. A batch that was ever
/// claimed keeps its range, so that a claim's fencing token always means the same events.
async fn recut_batches(
    tx: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let gone: Vec<(String, i64, i64)> = sqlx::query_as(
        "DELETE FROM replay.batches WHERE run_id = $1 AND NOT done AND claimed_by IS NULL \
           AND fence = 0 AND progress IS NULL \
         RETURNING step_id, from_seq, upto_seq",
    )
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await?;
    let cut = recut(gone, batch);
    let (steps, (from, upto)): (Vec<String>, (Vec<i64>, Vec<i64>)) =
        cut.into_iter().map(|(s, f, u)| (s, (f, u))).unzip();
    sqlx::query(
        "INSERT INTO replay.batches (run_id, step_id, from_seq, upto_seq) \
         SELECT $1, s, f, u FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS r(s, f, u)",
    )
    .bind(run_id)
    .bind(&steps)
    .bind(&from)
    .bind(&upto)
    .execute(&mut *tx)
    .await
    .map(|r| r.rows_affected())
}

/// Each run of adjacent ranges `(step, from, upto)` of a step, cut into ranges of `batch` events
/// (the last one shorter) over the same events.
fn recut(mut ranges: Vec<(String, i64, i64)>, batch: i64) -> Vec<(String, i64, i64)> {
    let batch = batch.max(1);
    ranges.sort();
    let mut islands: Vec<(String, i64, i64)> = Vec::new();
    for (step, from, upto) in ranges {
        match islands.last_mut() {
            Some((s, _, u)) if *s == step && *u == from => *u = upto,
            _ => islands.push((step, from, upto)),
        }
    }
    islands
        .into_iter()
        .flat_map(|(step, from, upto)| {
            (from..upto)
                .step_by(batch as usize)
                .map(move |f| (step.clone(), f, (f + batch).min(upto)))
        })
        .collect()
}

/// The run's live settings, as `replay status` shows them: paused, and the rate and batch size an
/// operator set (`None`: the plan's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Live {
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
}

pub async fn live(pool: &PgPool, run_id: uuid::Uuid) -> Result<Live, RunError> {
    let row =
        sqlx::query("SELECT paused, per_second, batch_size FROM replay.pace WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await
            .map_err(RunError::db("reading the run's pace"))?;
    Ok(row.map_or_else(Live::default, |r| Live {
        paused: r.get(0),
        per_second: r.get::<Option<i32>, _>(1).map(|n| n.max(1) as u32),
        batch_size: r.get::<Option<i32>, _>(2).map(|n| n.max(1) as u32),
    }))
}

#[cfg(test)]
mod tests {
    use super::recut;

    fn r(step: &str, from: i64, upto: i64) -> (String, i64, i64) {
        (step.to_string(), from, upto)
    }

    #[test]
    fn adjacent_batches_are_cut_anew_and_gaps_are_kept() {
        // 10-event batches 20..50 (one claimed batch 50..60 is not among them), then 60..70.
        let cut = recut(
            vec![
                r("reset", 30, 40),
                r("reset", 20, 30),
                r("reset", 40, 50),
                r("reset", 60, 70),
            ],
            25,
        );
        assert_eq!(
            cut,
            vec![r("reset", 20, 45), r("reset", 45, 50), r("reset", 60, 70)]
        );
    }

    #[test]
    fn steps_are_cut_apart_and_smaller_batches_split() {
        let cut = recut(vec![r("a", 0, 10), r("b", 10, 20)], 4);
        assert_eq!(
            cut,
            vec![
                r("a", 0, 4),
                r("a", 4, 8),
                r("a", 8, 10),
                r("b", 10, 14),
                r("b", 14, 18),
                r("b", 18, 20)
            ]
        );
    }
}
