//! Compilation: a valid plan plus parameter values becomes a `Plan` that is bound, hashed and
//! immutable, with its SQL prepared and its templates compiled, so that running it reads no text
//! of the plan again.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::location::Location;
use super::model::{RawPlan, Step};
use super::params::{self, ParamError, ParamValue, param_ref};
use super::prepared::{PrepareError, PreparedSql, Statements};
use super::selection::{self, SelectionQuery};
use super::sql::SqlError;
use super::template::{self, Templates};
use super::usage;

/// A plan ready to run: the reviewed document, its parameters, the selection as bound SQL, every
/// SQL text prepared and every template compiled.
#[derive(Debug, Clone)]
pub struct Plan {
    pub raw: RawPlan,
    /// SHA-256 of the plan document (canonical JSON) without its `rate_limit`: a run refuses to
    /// resume when it changes, and is paced by the plan in hand (throttling never means a
    /// restart).
    pub hash: String,
    pub params: BTreeMap<String, ParamValue>,
    /// SHA-256 of the parameter values; runs are resumed per plan name and parameters.
    pub params_hash: String,
    pub selection: SelectionQuery,
    /// Whether a step needs RabbitMQ (a publish, a purge, a wait on a queue): known before the
    /// run, so the broker is connected and its objects checked before the first write.
    pub needs_broker: bool,
    /// Every SQL text of the plan, prepared, by where it stands (step, verification, …).
    pub sql: Statements,
    /// Every template of the plan, in one registry.
    pub templates: Templates,
    /// The instant relative windows count back from, when frozen (a dry-run, a pinned apply);
    /// else the database's `now()` when the selection is frozen.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a plan cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("bind `:{bind}` in `{location}` is neither a declared parameter nor a built-in")]
    UnknownBind { location: Location, bind: String },
    #[error(
        "bind `:batch_event_ids` in `{location}` has no value: only `sql` steps with `each: batch` get it"
    )]
    BatchBind { location: Location },
    #[error("cannot prepare `{location}`: {reason}")]
    Sql {
        location: Location,
        reason: SqlError,
    },
    #[error("template `{location}` does not compile: {reason}")]
    Template { location: Location, reason: String },
}

/// The plan's identity for resume: its document with the throughput settings (`rate_limit`)
/// left at their defaults, so that an operator can slow a run down, or speed it up, and resume.
pub fn identity_hash(raw: &RawPlan) -> String {
    let mut identity = raw.clone();
    identity.rate_limit = Default::default();
    sha256(&serde_json::to_string(&identity).unwrap_or_default())
}

impl Plan {
    /// Counts relative windows back from `now` (see `SelectionQuery::freeze_now`).
    pub fn freeze_now(&mut self, now: chrono::DateTime<chrono::Utc>) {
        if self.now.is_none() {
            self.selection.freeze_now(now);
            self.now = Some(now);
        }
    }

    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }

    /// Parameters as `--param` arguments, for the commands the reports print.
    pub fn param_args(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!(" --param {k}={}", shell_quote(&v.to_arg())))
            .collect()
    }

    pub fn params_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.params
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

/// Binds parameters, compiles the selection, prepares the SQL and compiles the templates. The
/// plan should have passed validation; what running it needs is checked again here, so that a
/// recorded plan read back (`replay rollback RUN`) fails now rather than half-way.
pub fn compile(raw: RawPlan, args: &[String]) -> Result<Plan, CompileError> {
    let params = params::bind(&raw.params, args)?;
    let sql = prepare(&raw)?;
    let templates = templates(&raw)?;
    let hash = identity_hash(&raw);
    let params_text: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.to_arg()))
        .collect();
    let params_hash = sha256(&params_text);
    let resolve = |text: &str| -> ParamValue {
        match param_ref(text).and_then(|name| params.get(name)) {
            Some(value) => value.clone(),
            None => ParamValue::String(text.to_string()),
        }
    };
    let selection = selection::compile(&raw.target, &raw.select, &resolve);
    let needs_broker = raw.steps.iter().any(|s| match s {
        Step::Publish(_) | Step::PurgeQueue(_) => true,
        Step::Wait(w) => w.queue_empty.is_some(),
        Step::Reset(_) | Step::Sql(_) | Step::Http(_) => false,
    }) || raw.guards.iter().any(|g| g.queue_depth.is_some());
    Ok(Plan {
        raw,
        hash,
        params,
        params_hash,
        selection,
        needs_broker,
        sql,
        templates,
        now: None,
    })
}

/// Prepares every SQL text, checking each bind against the declared parameters and built-ins.
fn prepare(raw: &RawPlan) -> Result<Statements, CompileError> {
    let mut statements = Statements::default();
    let declared = |name: &str| raw.params.contains_key(name);
    for text in usage::sql_texts(raw) {
        let prepared =
            PreparedSql::new(text.text, text.role.per_batch(), &declared).map_err(|e| {
                let location = text.location.clone();
                match e {
                    PrepareError::Sql(reason) => CompileError::Sql { location, reason },
                    PrepareError::Undeclared(bind) => CompileError::UnknownBind { location, bind },
                    PrepareError::BatchOnly => CompileError::BatchBind { location },
                }
            })?;
        statements.insert(text.site, prepared);
    }
    Ok(statements)
}

/// Compiles every template into one registry.
fn templates(raw: &RawPlan) -> Result<Templates, CompileError> {
    let texts = usage::templates(raw);
    Templates::compile(
        texts
            .iter()
            .map(|t| (template::name(t.step, t.field), t.text)),
    )
    .map_err(|(i, reason)| CompileError::Template {
        location: texts
            .get(i)
            .map_or_else(Location::root, |t| t.location.clone()),
        reason,
    })
}

pub fn sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/,@+=".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::prepared::SqlSite;
    use crate::plan::yaml;

    const HEAD: &str = "version: 1\nname: t\nreason: a reason long enough\n\
                        params: { since: { type: duration, default: 1h } }\n\
                        select: { status: [error] }\n";

    /// Compiles a plan made of `HEAD` and `rest` (its steps, verifications, …).
    fn case(rest: &str) -> Result<Plan, String> {
        let document = yaml::parse(&format!("{HEAD}{rest}")).map_err(|e| format!("{e:?}"))?;
        let raw: RawPlan = serde_json::from_value(document.to_json()).map_err(|e| e.to_string())?;
        compile(raw, &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn binds_and_templates_are_checked_where_they_stand() {
        let cases: &[(&str, Result<(), &str>)] = &[
            (
                "steps: [{ id: s, kind: sql, each: batch, sql: \"UPDATE t SET a = :run_id, b = :run_started_at, c = :plan_name \
                 WHERE id = ANY(:batch_event_ids) AND id = ANY(:selected_event_ids) AND at > now() - :since\" }]\n",
                Ok(()),
            ),
            (
                "steps: [{ id: s, kind: sql, sql: \"DELETE FROM t WHERE at > now() - :sinse\" }]\n",
                Err(
                    "bind `:sinse` in `steps[0].sql` is neither a declared parameter nor a built-in",
                ),
            ),
            (
                "steps: [{ id: r, kind: reset }]\n\
                 rollback: [{ kind: sql, sql: \"UPDATE t SET a = 1 WHERE b = :until\" }]\n",
                Err(
                    "bind `:until` in `rollback[0].sql` is neither a declared parameter nor a built-in",
                ),
            ),
            (
                "steps: [{ id: r, kind: reset }]\n\
                 verify: [{ name: v, sql: \"SELECT count(*) FROM t WHERE x = :x\", expect: { equals: 0 } }]\n",
                Err("bind `:x` in `verify[0].sql` is neither a declared parameter nor a built-in"),
            ),
            (
                "steps: [{ id: r, kind: reset }]\n\
                 backup: { tables: [{ table: t, key: id, where: \"at > :cutoff\" }] }\n",
                Err(
                    "bind `:cutoff` in `backup.tables[0].where` is neither a declared parameter nor a built-in",
                ),
            ),
            (
                "steps: [{ id: s, kind: sql, sql: \"DELETE FROM t WHERE id = ANY(:batch_event_ids)\" }]\n",
                Err(
                    "bind `:batch_event_ids` in `steps[0].sql` has no value: only `sql` steps with `each: batch` get it",
                ),
            ),
            (
                "steps: [{ id: w, kind: wait, timeout: 1m, until: \"SELECT :batch_event_ids IS NULL\" }]\n",
                Err(
                    "bind `:batch_event_ids` in `steps[0].until` has no value: only `sql` steps with `each: batch` get it",
                ),
            ),
            (
                "steps: [{ id: p, kind: publish, payload: \"{{ json event.payload }}\", headers: { x-at: \"{{ run.started_at }}\" } }]\n",
                Ok(()),
            ),
            (
                "steps: [{ id: p, kind: publish, payload: \"{{ json event.payload \" }]\n",
                Err(
                    "template `steps[0].payload` does not compile: Template error: invalid handlebars syntax: \
                     expected identifier, helper_parameter, or trailing_tilde_to_omit_whitespace",
                ),
            ),
            (
                "steps: [{ id: p, kind: publish, each: once, headers: { x-a: \"{{#if params.since}}x{{/each}}\" } }]\n",
                Err(
                    "template `steps[0].headers.x-a` does not compile: Template error: helper \"if\" was opened, but \"each\" is closing",
                ),
            ),
        ];
        for (rest, expected) in cases {
            match (case(rest), expected) {
                (Ok(_), Ok(())) => {}
                (Err(got), Err(message)) => assert_eq!(got, *message, "{rest}"),
                (got, _) => panic!("{rest}: unexpected {:?}", got.map(|p| p.raw.name)),
            }
        }
    }

    #[test]
    fn the_plan_holds_its_prepared_sql_and_templates() {
        let plan = case(
            "steps:\n\
             - { id: s, kind: sql, sql: \"DELETE FROM t WHERE at > now() - :since AND id = ANY(:selected_event_ids)\" }\n\
             - { id: p, kind: publish, each: once, routing_key: \"r.{{ params.since }}\" }\n\
             verify: [{ name: v, sql: \"SELECT :plan_name\", expect: { equals: t } }]\n",
        )
        .unwrap();
        let step = plan.sql.get(SqlSite::Step("s")).unwrap();
        assert_eq!(
            step.text(crate::plan::prepared::Tables {
                selection: "replay.selection",
                batches: "replay.batches"
            }),
            "DELETE FROM t WHERE at > now() - $1 AND id = ANY(ARRAY(SELECT event_id FROM replay.selection WHERE run_id = $2))"
        );
        assert_eq!(
            plan.sql
                .get(SqlSite::Verification(0))
                .unwrap()
                .text(crate::plan::prepared::Tables {
                    selection: "x",
                    batches: "replay.batches"
                }),
            "SELECT $1"
        );
        assert_eq!(
            plan.sql.get(SqlSite::Rollback(0)).unwrap_err().to_string(),
            "`rollback[0].sql` was not prepared when the plan was compiled (a bug in replay)"
        );
        for field in ["routing_key", "payload", "message_id"] {
            assert!(plan.templates.has(&format!("p.{field}")), "{field}");
        }
        let data = serde_json::json!({"params": {"since": "1h"}});
        assert_eq!(
            plan.templates.render("p.routing_key", &data).unwrap(),
            "r.1h"
        );
    }
}
