//! Named `:binds` resolved to values and attached to queries as positional parameters.

use std::collections::BTreeMap;

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::postgres::types::PgInterval;
use sqlx::query::Query;

use crate::plan::Plan;
use crate::plan::builtins::BuiltinBind;
use crate::plan::prepared::{BindName, PreparedSql};
use crate::plan::selection::Bind;

/// Values of a run for the binds of the plan's prepared SQL: its parameters and the built-ins.
#[derive(Debug, Clone)]
pub struct BindScope {
    params: BTreeMap<String, Bind>,
    run_id: uuid::Uuid,
    started_at: chrono::DateTime<chrono::Utc>,
    plan_name: String,
    /// Where the frozen selection lives; `:selected_event_ids` reads it server-side.
    selection_table: String,
    /// Where the batches of batch-wise steps are recorded (`:done_event_ids` reads them).
    batches_table: String,
}

impl BindScope {
    pub fn new(
        plan: &Plan,
        run_id: uuid::Uuid,
        started_at: chrono::DateTime<chrono::Utc>,
        selection_table: &str,
    ) -> Self {
        BindScope {
            params: plan
                .params
                .iter()
                .map(|(k, v)| (k.clone(), Bind::from(v)))
                .collect(),
            run_id,
            started_at,
            plan_name: plan.raw.name.clone(),
            selection_table: selection_table.to_string(),
            batches_table: crate::engine::state::BATCHES_TABLE.to_string(),
        }
    }

    /// The same binds over another batches table (a rehearsal's, which has none done).
    pub fn with_batches(mut self, table: &str) -> Self {
        self.batches_table = table.to_string();
        self
    }

    pub fn run_id(&self) -> uuid::Uuid {
        self.run_id
    }

    /// A prepared statement's text for this run (the selection table named); a step that runs
    /// its statement per batch asks once.
    pub fn text(&self, sql: &PreparedSql) -> String {
        sql.text(crate::plan::prepared::Tables {
            selection: &self.selection_table,
            batches: &self.batches_table,
        })
    }

    /// The values of a prepared statement's binds, in order; `batch` is the current batch's
    /// event ids, for `:batch_event_ids`. Compilation checked every name, so a missing value is a
    /// bug; it fails the statement, it does not stop the process.
    pub fn values(
        &self,
        sql: &PreparedSql,
        batch: Option<Vec<String>>,
    ) -> Result<Vec<Bind>, String> {
        let mut batch = batch;
        sql.binds()
            .iter()
            .map(|name| match name {
                BindName::Param(name) => self
                    .params
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("bind `:{name}` has no value")),
                BindName::Builtin(
                    BuiltinBind::SelectedEventIds | BuiltinBind::DoneEventIds | BuiltinBind::RunId,
                ) => Ok(Bind::Uuid(self.run_id)),
                BindName::Builtin(BuiltinBind::RunStartedAt) => {
                    Ok(Bind::Timestamp(self.started_at))
                }
                BindName::Builtin(BuiltinBind::PlanName) => Ok(Bind::Text(self.plan_name.clone())),
                BindName::Builtin(BuiltinBind::BatchEventIds) => batch
                    .take()
                    .map(Bind::TextArray)
                    .ok_or_else(|| "bind `:batch_event_ids` has no value outside a batch".into()),
            })
            .collect()
    }
}

/// Marks SQL built by the engine as audited: identifiers come from the reviewed plan (validated by
/// the schema and quoted), values only ever travel as bind parameters.
pub fn audited(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_owned())
}

/// Attaches values to a query in order.
pub fn bind_all<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    binds: &[Bind],
) -> Query<'q, Postgres, PgArguments> {
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::TextArray(items) => query.bind(items.as_slice()),
            Bind::Int(i) => query.bind(*i),
            Bind::Uuid(u) => query.bind(*u),
            Bind::Timestamp(t) => query.bind(*t),
            Bind::Interval(d) => query.bind(PgInterval {
                months: 0,
                days: 0,
                microseconds: d.as_micros().min(i64::MAX as u128) as i64,
            }),
            Bind::Bool(v) => query.bind(*v),
        };
    }
    query
}
