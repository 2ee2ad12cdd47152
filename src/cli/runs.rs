//! Runs as the operator names them on the command line: a whole id or a prefix of one.

use crate::engine::{RunError, state};

use super::args::RunRef;

/// The run a reference names, looked up in the target's database.
pub async fn resolve(database_url: &str, run: &RunRef) -> Result<uuid::Uuid, RunError> {
    let pool = state::connect(database_url).await?;
    if !state::schema_exists(&pool).await? {
        return Err(RunError::RunNotNamed(format!(
            "no run `{run}`: the `replay` schema does not exist (nothing has run here)"
        )));
    }
    let found = state::resolve_run(&pool, &run.0).await;
    pool.close().await;
    found
}
