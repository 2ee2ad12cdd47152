//! Named `:binds` resolved to values and attached to queries as positional parameters.

use std::collections::BTreeMap;

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::postgres::types::PgInterval;
use sqlx::query::Query;

use crate::plan::Plan;
use crate::plan::selection::Bind;
use crate::plan::sql;

const SELECTED: &str = "selected_event_ids";

/// Values available to `:name` binds: the plan's parameters and the built-ins of the run.
#[derive(Debug, Clone, Default)]
pub struct BindScope {
    values: BTreeMap<String, Bind>,
    /// Where the frozen selection lives; `:selected_event_ids` reads it server-side.
    selection_table: String,
    run_id: uuid::Uuid,
}

impl BindScope {
    pub fn new(
        plan: &Plan,
        run_id: uuid::Uuid,
        started_at: chrono::DateTime<chrono::Utc>,
        selection_table: &str,
    ) -> Self {
        let mut values: BTreeMap<String, Bind> = plan
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Bind::from(v)))
            .collect();
        values.insert("run_id".into(), Bind::Uuid(run_id));
        values.insert("run_started_at".into(), Bind::Timestamp(started_at));
        values.insert("plan_name".into(), Bind::Text(plan.raw.name.clone()));
        BindScope {
            values,
            selection_table: selection_table.to_string(),
            run_id,
        }
    }

    pub fn with(&self, name: &str, value: Bind) -> BindScope {
        let mut next = self.clone();
        next.values.insert(name.to_string(), value);
        next
    }

    /// Rewrites `:name` to `$n` and returns the values in order. `:selected_event_ids` becomes a
    /// subquery over the frozen selection, so a million ids never travel through this process.
    pub fn prepare(&self, text: &str) -> Result<(String, Vec<Bind>), String> {
        let table = &self.selection_table;
        let (sql, names) = sql::rewrite_with(text, &|name, index| {
            if name == SELECTED {
                format!("ARRAY(SELECT event_id FROM {table} WHERE run_id = ${index})")
            } else {
                format!("${index}")
            }
        })
        .map_err(|e| e.to_string())?;
        let binds = names
            .iter()
            .map(|n| match n.as_str() {
                SELECTED => Ok(Bind::Uuid(self.run_id)),
                _ => self
                    .values
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("bind `:{n}` has no value")),
            })
            .collect::<Result<_, _>>()?;
        Ok((sql, binds))
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
