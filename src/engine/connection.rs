//! Reaching the target: the URLs and the operator, and the tables a plan expects to find there.

use sqlx::PgPool;

use crate::engine::error::RunError;
use crate::plan::Plan;
use crate::plan::selection::quote_ident;

/// How to reach the target, and who runs.
#[derive(Debug, Clone)]
pub struct Connection {
    pub database_url: String,
    pub amqp_url: String,
    pub operator: String,
    /// The named target (`--target NAME`), recorded in audit rows.
    pub target: Option<String>,
}

/// How the run reaches its services: the database as the pool sees it, the broker by its URL
/// scheme (`amqps://` is TLS, `amqp://` is not; none when the plan needs no broker).
pub async fn describe(
    pool: &PgPool,
    plan: &Plan,
    amqp_url: &str,
) -> Result<crate::engine::report::Connections, RunError> {
    let broker = match plan.needs_broker {
        true => crate::engine::amqp_url::AmqpUrl::parse(amqp_url)
            .ok()
            .map(|u| crate::engine::report::Encryption {
                encrypted: u.encrypted(),
                protocol: None,
            }),
        false => None,
    };
    Ok(crate::engine::report::Connections {
        database: Some(crate::engine::state::encryption(pool).await?),
        broker,
    })
}

/// Refuses early, with the table's name, when the events or audit table is missing.
pub async fn check_tables(pool: &PgPool, plan: &Plan) -> Result<(), RunError> {
    let target = &plan.raw.target;
    let mut tables = vec![target.events_table.clone()];
    if !target.audit_table.is_empty() {
        tables.push(target.audit_table.clone());
    }
    for table in tables {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(quote_ident(&table))
            .fetch_one(pool)
            .await
            .map_err(RunError::db("looking up tables"))?;
        if exists.is_none() {
            return Err(RunError::Refused(format!(
                "table `{table}` does not exist in the target database (see `target` in the plan)"
            )));
        }
    }
    Ok(())
}
