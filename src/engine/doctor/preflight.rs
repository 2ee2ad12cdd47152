//! The preflight as a whole: which checks run, in which order, and what is skipped when a
//! service cannot be reached.

use crate::engine::state;
use crate::plan::Plan;
use crate::plan::model::{RawPlan, Target};

use super::check::{Check, Findings};
use super::{broker, database, tools};

/// A plan to check the target against: its document, and (when its parameters were given) the
/// compiled plan, whose selection tells which routing keys it will publish.
pub struct DoctorPlan {
    pub raw: RawPlan,
    pub compiled: Result<Plan, String>,
}

/// What `replay doctor` was asked to check.
pub struct Preflight {
    pub database_url: String,
    pub amqp_url: String,
    pub management_url: Option<String>,
    /// None: the default target below.
    pub plans: Vec<DoctorPlan>,
    /// What is checked without plans: Habitat's, or the named target's defaults.
    pub default_target: Target,
}

impl Preflight {
    /// The targets the plans name, each once (the default target without plans).
    pub(super) fn targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for p in &self.plans {
            if !out.contains(&p.raw.target) {
                out.push(p.raw.target.clone());
            }
        }
        if out.is_empty() {
            out.push(self.default_target.clone());
        }
        out
    }
}

/// Runs every check; a service that cannot be reached is a failed row, never an error.
pub async fn run(preflight: &Preflight) -> Findings {
    let mut checks = Vec::new();
    let pool = match state::connect(&preflight.database_url).await {
        Ok(pool) => Some(pool),
        Err(e) => {
            checks.push(Check::fail(
                "postgres",
                e.to_string(),
                "check the host, port, database, user and password of `--database-url` \
                 (DATABASE_URL), and that the server accepts connections from this machine",
            ));
            for name in ["postgres version", "tables", "privileges", "replay schema"] {
                checks.push(Check::skipped(name, "PostgreSQL is not reachable"));
            }
            None
        }
    };
    let mut server_major = None;
    if let Some(pool) = &pool {
        let (found, major) = database::checks(pool, preflight).await;
        checks.extend(found);
        server_major = major;
    }
    checks.extend(tools::checks(preflight, server_major).await);
    checks.extend(broker::checks(preflight, pool.as_ref()).await);
    if let Some(pool) = pool {
        pool.close().await;
    }
    Findings::new(checks)
}
