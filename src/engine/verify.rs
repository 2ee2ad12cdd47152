//! Verifications: one value per query, compared with a literal, bounds, or the value before the run.

use crate::engine::binds::audited;
use serde_json::Value;

use crate::engine::binds::{BindScope, bind_all};
use crate::engine::error::RunError;
use crate::plan::Plan;
use crate::plan::model::Expectation;
use crate::plan::prepared::SqlSite;

/// Runs the query of the plan's verification `index`, which returns one value, and reads it as
/// JSON.
pub async fn value(
    conn: &mut sqlx::PgConnection,
    scope: &BindScope,
    plan: &Plan,
    index: usize,
) -> Result<Value, RunError> {
    let label = format!("verification `{}`", name(plan, index));
    query_value(conn, scope, plan, SqlSite::Verification(index), &label).await
}

/// Runs a read-only query of the plan (a verification's, a guard's), which returns one value, and
/// reads it as JSON; `label` names it in messages.
pub async fn query_value(
    conn: &mut sqlx::PgConnection,
    scope: &BindScope,
    plan: &Plan,
    site: SqlSite<'_>,
    label: &str,
) -> Result<Value, RunError> {
    let refused = |m: String| RunError::Refused(format!("{label}: {m}"));
    let statement = plan.sql.get(site).map_err(|e| refused(e.to_string()))?;
    let text = scope.text(statement);
    let binds = scope.values(statement, None).map_err(refused)?;
    let wrapped = format!("SELECT to_jsonb(q) FROM ({text}) q LIMIT 2");
    let rows: Vec<Value> = {
        use sqlx::Row;
        bind_all(sqlx::query(audited(&wrapped)), &binds)
            .fetch_all(conn)
            .await
            .map_err(|e| {
                let doing = format!("running {label}");
                match crate::engine::error::wrote_in_read_only(&e) {
                    true => RunError::Database {
                        doing,
                        message: crate::engine::error::describe_sqlx(&e),
                        transient: false,
                    },
                    false => RunError::db(doing)(e),
                }
            })?
            .iter()
            .map(|r| r.try_get::<Value, _>(0).unwrap_or(Value::Null))
            .collect()
    };
    match rows.as_slice() {
        [] => Ok(Value::Null),
        [Value::Object(map)] => Ok(map.values().next().cloned().unwrap_or(Value::Null)),
        [other] => Ok(other.clone()),
        _ => Err(RunError::Refused(format!(
            "{label} returned more than one row; it must return exactly one value"
        ))),
    }
}

/// A verification or wait value read in a `READ ONLY` transaction, so the query cannot write.
pub async fn read_only_value(
    pool: &sqlx::PgPool,
    scope: &BindScope,
    plan: &Plan,
    index: usize,
) -> Result<Value, RunError> {
    let name = name(plan, index);
    let doing = format!("running verification `{name}`");
    let mut tx = crate::engine::writes::begin_read_only(pool)
        .await
        .map_err(RunError::db(doing.clone()))?;
    let v = value(&mut tx, scope, plan, index).await?;
    tx.commit().await.map_err(RunError::db(doing))?;
    Ok(v)
}

/// The name of verification `index`, for messages.
fn name(plan: &Plan, index: usize) -> &str {
    plan.raw.verify.get(index).map_or("", |v| v.name.as_str())
}

/// Whether `actual` meets the expectation; also the expectation as a value for reports.
pub fn judge(expect: &Expectation, actual: &Value, before: Option<&Value>) -> (bool, Value) {
    if let Some(expected) = &expect.equals {
        return (same(actual, expected), expected.clone());
    }
    if expect.equals_before {
        let before = before.cloned().unwrap_or(Value::Null);
        return (same(actual, &before), before);
    }
    let number = as_number(actual);
    let low = expect
        .at_least
        .is_none_or(|min| number.is_some_and(|n| n >= min));
    let high = expect
        .at_most
        .is_none_or(|max| number.is_some_and(|n| n <= max));
    let mut range = serde_json::Map::new();
    if let Some(min) = expect.at_least {
        range.insert("at_least".into(), Value::from(min));
    }
    if let Some(max) = expect.at_most {
        range.insert("at_most".into(), Value::from(max));
    }
    (low && high, Value::Object(range))
}

fn same(actual: &Value, expected: &Value) -> bool {
    match (as_number(actual), as_number(expected)) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => match (actual, expected) {
            (Value::String(a), b) => *a == text(b),
            (a, Value::String(b)) => text(a) == *b,
            (a, b) => a == b,
        },
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_compare_loosely_typed_values() {
        let eq = |v: Value| Expectation {
            equals: Some(v),
            ..Expectation::default()
        };
        let cases = [
            (eq(json!(0)), json!(0), None, true),
            (eq(json!(0)), json!("0"), None, true),
            (eq(json!("processed")), json!("processed"), None, true),
            (eq(json!("processed")), json!("error"), None, false),
            (
                Expectation {
                    equals_before: true,
                    ..Expectation::default()
                },
                json!("10.50"),
                Some(json!(10.5)),
                true,
            ),
            (
                Expectation {
                    at_least: Some(1.0),
                    ..Expectation::default()
                },
                json!(0),
                None,
                false,
            ),
            (
                Expectation {
                    at_most: Some(5.0),
                    ..Expectation::default()
                },
                json!(5),
                None,
                true,
            ),
        ];
        for (expect, actual, before, passes) in cases {
            assert_eq!(
                judge(&expect, &actual, before.as_ref()).0,
                passes,
                "{expect:?} {actual}"
            );
        }
    }
}
