//! Routing: whether every routing key a plan will publish reaches at least one queue, judged
//! against the exchanges' bindings as the management API reports them (topic patterns matched
//! here). `replay doctor` and the dry-run ask it; a real publish learns it from a returned
//! `mandatory` message, too late.

use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::management::{Management, ManagementError};
use crate::plan::Plan;
use crate::plan::model::{PublishEach, Step};
use crate::plan::selection::quote_ident;

/// The routing keys one publish step will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub step: String,
    pub exchange: String,
    pub keys: Vec<String>,
    /// Why the keys could not be known beforehand (a template that reads more than the type).
    pub unknown: Option<String>,
}

/// The keys of every publish step, given the distinct event types of the selection: a literal
/// key as it is, `{{ event.event_type }}` (the default) as each type, a once-message's key
/// rendered with the plan's parameters.
pub fn planned(plan: &Plan, types: &[String]) -> Vec<Planned> {
    let mut out = Vec::new();
    for step in &plan.raw.steps {
        let Step::Publish(p) = step else { continue };
        let exchange = p
            .exchange
            .clone()
            .unwrap_or_else(|| plan.raw.target.exchange.clone());
        let template = p.routing_key.trim();
        let inner: Option<String> = template
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(|i| i.split_whitespace().collect::<Vec<_>>().join(" "));
        let (keys, unknown) = if !template.contains("{{") {
            (vec![p.routing_key.clone()], None)
        } else if p.each == PublishEach::Event && inner.as_deref() == Some("event.event_type") {
            (types.to_vec(), None)
        } else if p.each == PublishEach::Once {
            let rendered =
                crate::engine::steps::Renderer::new(plan, p, uuid::Uuid::nil(), chrono::Utc::now())
                    .and_then(|mut r| r.render(None));
            match rendered {
                Ok(message) => (vec![message.routing_key], None),
                Err(e) => (Vec::new(), Some(e)),
            }
        } else {
            (
                Vec::new(),
                Some(format!(
                    "the routing key `{}` depends on more than the event type",
                    p.routing_key
                )),
            )
        };
        out.push(Planned {
            step: p.id.clone(),
            exchange,
            keys,
            unknown,
        });
    }
    out
}

/// The distinct event types the plan's selection holds now, read from the events table (the
/// selection's query, its `limit` included).
pub async fn selection_types(pool: &sqlx::PgPool, plan: &Plan) -> Result<Vec<String>, RunError> {
    let target = &plan.raw.target;
    let c = &target.columns;
    let q = &plan.selection;
    let limit = q.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    let sql = format!(
        "SELECT DISTINCT event_type FROM (SELECT {event_type}::text AS event_type FROM {table} \
         WHERE {conditions} ORDER BY {processed_at} NULLS FIRST, {event_id}{limit}) picked ORDER BY 1",
        event_type = quote_ident(&c.event_type),
        table = quote_ident(&target.events_table),
        conditions = q.where_clause(),
        processed_at = quote_ident(&c.processed_at),
        event_id = quote_ident(&c.event_id),
    );
    let rows = crate::engine::binds::bind_all(sqlx::query(audited(&sql)), &q.binds)
        .fetch_all(pool)
        .await
        .map_err(RunError::db("reading the selection's event types"))?;
    Ok(rows
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect())
}

/// The distinct event types of a frozen selection.
pub async fn frozen_types(
    conn: &mut sqlx::PgConnection,
    selection_table: &str,
    run_id: uuid::Uuid,
) -> Result<Vec<String>, RunError> {
    sqlx::query_scalar(audited(&format!(
        "SELECT DISTINCT event_type FROM {selection_table} WHERE run_id = $1 ORDER BY 1"
    )))
    .bind(run_id)
    .fetch_all(conn)
    .await
    .map_err(RunError::db("reading the selection's event types"))
}

/// What the bindings say of the planned keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `(step, exchange, key)` that reach a queue.
    pub routed: Vec<(String, String, String)>,
    /// `(step, exchange, key)` that reach none.
    pub unroutable: Vec<(String, String, String)>,
    /// What could not be judged, and why.
    pub not_checked: Vec<String>,
}

/// Judges every planned key against the bindings (following exchange-to-exchange bindings and
/// alternate exchanges). An exchange that does not exist is left to the exchange checks.
pub async fn judge(api: &Management, planned: &[Planned]) -> Result<Verdict, ManagementError> {
    let mut verdict = Verdict::default();
    let mut topology = Topology::default();
    for p in planned {
        if let Some(why) = &p.unknown {
            verdict
                .not_checked
                .push(format!("step `{}`: {why}", p.step));
        }
        for key in &p.keys {
            let entry = (p.step.clone(), p.exchange.clone(), key.clone());
            match topology.reaches(api, &p.exchange, key, 0).await? {
                Reach::Queue => verdict.routed.push(entry),
                Reach::Nowhere => verdict.unroutable.push(entry),
                Reach::NoExchange => {}
                Reach::Unknown(why) => verdict
                    .not_checked
                    .push(format!("step `{}`, key `{key}`: {why}", p.step)),
            }
        }
    }
    verdict.unroutable.dedup();
    Ok(verdict)
}

enum Reach {
    Queue,
    Nowhere,
    NoExchange,
    Unknown(String),
}

/// Exchanges and bindings read so far (each exchange once).
#[derive(Default)]
struct Topology {
    exchanges: std::collections::HashMap<
        String,
        Option<(
            crate::engine::management::ExchangeInfo,
            Vec<crate::engine::management::Binding>,
        )>,
    >,
}

impl Topology {
    async fn reaches(
        &mut self,
        api: &Management,
        exchange: &str,
        key: &str,
        depth: usize,
    ) -> Result<Reach, ManagementError> {
        if depth > 8 {
            return Ok(Reach::Unknown("exchange bindings nest too deep".into()));
        }
        if !self.exchanges.contains_key(exchange) {
            let found = match api.exchange(exchange).await? {
                Some(info) => Some((info, api.bindings(exchange).await?)),
                None => None,
            };
            self.exchanges.insert(exchange.to_string(), found);
        }
        let Some((info, bindings)) = self.exchanges.get(exchange).cloned().flatten() else {
            return Ok(match depth {
                0 => Reach::NoExchange,
                _ => Reach::Nowhere,
            });
        };
        for b in &bindings {
            let matches = match info.kind.as_str() {
                "topic" => topic_matches(&b.routing_key, key),
                "direct" => b.routing_key == key,
                "fanout" => true,
                other => {
                    return Ok(Reach::Unknown(format!(
                        "exchange `{exchange}` is of type `{other}`, whose routing is not checked"
                    )));
                }
            };
            if !matches {
                continue;
            }
            match b.destination_type.as_str() {
                "queue" => return Ok(Reach::Queue),
                _ => {
                    if let Reach::Queue =
                        Box::pin(self.reaches(api, &b.destination, key, depth + 1)).await?
                    {
                        return Ok(Reach::Queue);
                    }
                }
            }
        }
        if let Some(alternate) = &info.alternate {
            return Box::pin(self.reaches(api, alternate, key, depth + 1)).await;
        }
        Ok(Reach::Nowhere)
    }
}

/// Whether a topic binding pattern matches a routing key: words split on `.`, `*` is exactly
/// one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (Some(&"#"), _) => {
                go(&pattern[1..], key) || (!key.is_empty() && go(pattern, &key[1..]))
            }
            (Some(&"*"), Some(_)) => go(&pattern[1..], &key[1..]),
            (Some(p), Some(k)) if p == k => go(&pattern[1..], &key[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_patterns_match_as_rabbitmq_matches_them() {
        let cases = [
            ("#", "contribution.approved", true),
            ("#", "", true),
            ("contribution.*", "contribution.approved", true),
            ("contribution.*", "contribution.approved.late", false),
            ("contribution.#", "contribution", true),
            ("contribution.#", "contribution.approved.late", true),
            ("*.approved", "contribution.approved", true),
            ("*.approved", "approved", false),
            ("#.late", "contribution.approved.late", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("period.close", "period.close", true),
            ("period.close", "period.closed", false),
            ("*", "", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} ~ {key}");
        }
    }
}
