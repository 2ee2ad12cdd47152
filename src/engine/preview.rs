//! What an apply is about to do, read before anything is written, so that the person who
//! confirms it sees the run, the target, the selection, the steps and their pace: a new run,
//! or what is left of the unfinished one it resumes.

use chrono::{DateTime, Utc};

use crate::engine::error::RunError;
use crate::engine::gates::{self, GateResult, Overrides};
use crate::engine::status::RunStatus;
use crate::engine::{Connection, freeze, state};
use crate::plan::Plan;

/// An apply as it stands before it writes anything.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    pub plan: String,
    pub outcome: Outcome,
    /// Events per second the plan paces the run at.
    pub per_second: u32,
    pub steps: Vec<StepLeft>,
    /// For a new run: the gates on the selection's size and the clock, judged on the count now
    /// with the operator's overrides (the run judges them again on its frozen selection).
    pub gates: Vec<GateResult>,
    /// The unfinished run `--restart` abandons, and what it already did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandons: Option<Abandons>,
}

/// An unfinished run that `--restart` abandons: its rows stay as its steps left them, and
/// `replay rollback RUN` can still undo it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Abandons {
    pub run_id: uuid::Uuid,
    pub status: RunStatus,
    pub selected: Option<u64>,
    /// Its steps that did something, in the order they ran: events done, finished or not.
    pub steps: Vec<StepLeft>,
}

impl Abandons {
    /// `run 3f2a… (interrupted, 5,000 events frozen): reset 1,200 done, publish done`.
    pub fn describe(&self) -> String {
        use crate::render::numbers::thousands;
        let did: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s.finished {
                true => format!("{} done", s.id),
                false => format!("{} {} event(s) done", s.id, thousands(s.done as i128)),
            })
            .collect();
        let frozen = self
            .selected
            .map(|n| format!(", {} event(s) frozen", thousands(n as i128)))
            .unwrap_or_default();
        format!(
            "run `{}` ({}{frozen}): {}; its changes stay as they are, and `replay rollback {}` can undo them",
            self.run_id,
            self.status,
            match did.is_empty() {
                true => "it wrote nothing yet".to_string(),
                false => did.join(", "),
            },
            self.run_id
        )
    }
}

/// What the apply would do.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Start a new run over the events selected now (counted, not frozen: the run freezes its
    /// selection when it starts).
    Start { selected: u64 },
    /// Resume an unfinished run of this plan.
    Resume {
        run_id: uuid::Uuid,
        status: RunStatus,
        started_at: DateTime<Utc>,
        /// The run's frozen selection, when it got that far.
        selected: Option<u64>,
    },
    /// Nothing: a run of this plan with these parameters already succeeded.
    AlreadySucceeded {
        run_id: uuid::Uuid,
        finished_at: DateTime<Utc>,
    },
    /// Refused: the unfinished run is of another version of the plan or other parameters (the
    /// apply says which, and how to go on).
    Changed { run_id: uuid::Uuid },
}

/// One step, and how many of the selection's events it has done (a resume).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepLeft {
    pub id: String,
    pub kind: String,
    pub done: u64,
    pub finished: bool,
}

impl Preview {
    /// Events still to go through the first step not finished (the whole selection for a new
    /// run).
    pub fn left(&self) -> Option<u64> {
        let selected = match self.outcome {
            Outcome::Start { selected } => selected,
            Outcome::Resume { selected, .. } => selected?,
            _ => return None,
        };
        // Left for the first batch-wise step not finished; none left when every one is.
        let done = self
            .steps
            .iter()
            .find(|s| !s.finished && is_batch_wise(&s.kind))
            .map_or(selected, |s| s.done.min(selected));
        Some(selected - done)
    }

    /// The time the pace alone gives the events left, per batch-wise step still to run.
    pub fn paced_time(&self) -> Option<std::time::Duration> {
        let left = self.left()?;
        let steps_left = self
            .steps
            .iter()
            .filter(|s| !s.finished && is_batch_wise(&s.kind))
            .count() as u64;
        Some(std::time::Duration::from_secs_f64(
            (left * steps_left.max(1)) as f64 / f64::from(self.per_second.max(1)),
        ))
    }
}

fn is_batch_wise(kind: &str) -> bool {
    matches!(kind, "reset" | "publish" | "http" | "sql")
}

/// Reads, and never writes: no migration, no run row, no lease. A store not set up yet has no
/// runs.
pub async fn preview(
    plan: &Plan,
    connection: &Connection,
    restart: bool,
    again: bool,
    overrides: &Overrides,
) -> Result<Preview, RunError> {
    let pool = state::connect(&connection.database_url).await?;
    let has_store = state::schema_exists(&pool).await?;
    let open = match has_store {
        true => state::open_run(&pool, &plan.raw.name).await?,
        false => None,
    };
    let mut steps: Vec<StepLeft> = plan
        .raw
        .steps
        .iter()
        .map(|s| StepLeft {
            id: s.id().to_string(),
            kind: s.kind().to_string(),
            done: 0,
            finished: false,
        })
        .collect();
    let abandons = match &open {
        Some(run)
            if restart && (run.plan_hash != plan.hash || run.params_hash != plan.params_hash) =>
        {
            Some(abandoned(&pool, run).await?)
        }
        _ => None,
    };
    let outcome = match open {
        Some(run) if run.plan_hash == plan.hash && run.params_hash == plan.params_hash => {
            let progress = state::step_progress(&pool, run.id).await?;
            for step in &mut steps {
                if let Some(p) = progress.get(&step.id) {
                    step.done = p.events_done().max(0) as u64;
                    step.finished = p.done;
                }
            }
            Outcome::Resume {
                run_id: run.id,
                status: run.status,
                started_at: run.started_at,
                selected: run.selected.map(|n| n.max(0) as u64),
            }
        }
        Some(run) if !restart => Outcome::Changed { run_id: run.id },
        _ => {
            let succeeded = match has_store && !again {
                true => state::succeeded(&pool, plan).await?,
                false => None,
            };
            match succeeded {
                Some((run_id, finished_at)) => Outcome::AlreadySucceeded {
                    run_id,
                    finished_at,
                },
                None => count(&pool, plan).await?,
            }
        }
    };
    pool.close().await;
    let gates = match outcome {
        Outcome::Start { selected } => {
            let mut judged = gates::check(plan, selected, Utc::now());
            overrides.apply(&mut judged);
            judged
        }
        _ => Vec::new(),
    };
    Ok(Preview {
        plan: plan.raw.name.clone(),
        outcome,
        per_second: plan.raw.rate_limit.per_second,
        steps,
        gates,
        abandons,
    })
}

async fn abandoned(pool: &sqlx::PgPool, run: &state::OpenRun) -> Result<Abandons, RunError> {
    let progress = state::step_progress(pool, run.id).await?;
    let mut steps: Vec<StepLeft> = progress
        .into_iter()
        .filter(|(_, p)| p.done || p.events_done() > 0)
        .map(|(id, p)| StepLeft {
            id,
            kind: String::new(),
            done: p.events_done().max(0) as u64,
            finished: p.done,
        })
        .collect();
    steps.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Abandons {
        run_id: run.id,
        status: run.status,
        selected: run.selected.map(|n| n.max(0) as u64),
        steps,
    })
}

async fn count(pool: &sqlx::PgPool, plan: &Plan) -> Result<Outcome, RunError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(RunError::db("counting the selection"))?;
    Ok(Outcome::Start {
        selected: freeze::count(&mut conn, plan).await?,
    })
}
