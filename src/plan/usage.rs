//! Where a plan holds SQL texts, templates and parameter references, with their locations.

use super::location::Location;
use super::model::{HttpEach, PublishEach, RawPlan, RollbackStep, SqlEach, Step};
use super::prepared::SqlSite;
use super::template::MessageField;

/// What a SQL text is for, which decides what it may do and which binds it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlRole {
    /// A `sql` step (may write); `per_batch` adds `:batch_event_ids`.
    Step {
        per_batch: bool,
        allow_without_where: bool,
        allow_ddl: bool,
    },
    /// A rollback statement (may write).
    Rollback {
        allow_without_where: bool,
        allow_ddl: bool,
    },
    /// A read-only query: verification or wait condition.
    Query,
    /// A backup's row filter (an expression, not a statement).
    BackupFilter,
}

impl SqlRole {
    /// Whether the text runs once per batch, and so gets `:batch_event_ids`.
    pub fn per_batch(self) -> bool {
        matches!(
            self,
            SqlRole::Step {
                per_batch: true,
                ..
            }
        )
    }
}

#[derive(Debug, Clone)]
pub struct SqlText<'a> {
    pub location: Location,
    /// Where the compiled plan keeps the text, prepared.
    pub site: SqlSite<'a>,
    pub text: &'a str,
    pub role: SqlRole,
}

#[derive(Debug, Clone)]
pub struct TemplateText<'a> {
    pub location: Location,
    /// The publish step's id.
    pub step: &'a str,
    pub field: MessageField<'a>,
    pub text: &'a str,
    /// Whether `event.*` is available (publish or http per event).
    pub per_event: bool,
    /// The names `secrets.*` may take (an http step's `secrets_env`); none elsewhere.
    pub secrets: Option<Vec<&'a str>>,
}

/// Every SQL text of the plan.
pub fn sql_texts(plan: &RawPlan) -> Vec<SqlText<'_>> {
    let mut out = Vec::new();
    let steps = Location::root().key("steps");
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Sql(s) => out.push(SqlText {
                location: steps.index(i).key("sql"),
                site: SqlSite::Step(&s.id),
                text: &s.sql,
                role: SqlRole::Step {
                    per_batch: s.each == SqlEach::Batch,
                    allow_without_where: s.allow_without_where,
                    allow_ddl: s.allow_ddl,
                },
            }),
            Step::Wait(w) => {
                if let Some(until) = &w.until {
                    out.push(SqlText {
                        location: steps.index(i).key("until"),
                        site: SqlSite::Step(&w.id),
                        text: until,
                        role: SqlRole::Query,
                    });
                }
            }
            _ => {}
        }
    }
    for (i, v) in plan.verify.iter().enumerate() {
        out.push(SqlText {
            location: Location::root().key("verify").index(i).key("sql"),
            site: SqlSite::Verification(i),
            text: &v.sql,
            role: SqlRole::Query,
        });
    }
    for (i, g) in plan.guards.iter().enumerate() {
        if let Some(sql) = &g.sql {
            out.push(SqlText {
                location: Location::root().key("guards").index(i).key("sql"),
                site: SqlSite::Guard(i),
                text: sql,
                role: SqlRole::Query,
            });
        }
    }
    for (i, r) in plan.rollback.iter().enumerate() {
        if let RollbackStep::Sql(s) = r {
            out.push(SqlText {
                location: Location::root().key("rollback").index(i).key("sql"),
                site: SqlSite::Rollback(i),
                text: &s.sql,
                role: SqlRole::Rollback {
                    allow_without_where: s.allow_without_where,
                    allow_ddl: s.allow_ddl,
                },
            });
        }
    }
    if let Some(backup) = &plan.backup {
        for (i, t) in backup.tables.iter().enumerate() {
            if let Some(filter) = &t.filter {
                out.push(SqlText {
                    location: Location::root()
                        .key("backup")
                        .key("tables")
                        .index(i)
                        .key("where"),
                    site: SqlSite::BackupFilter(i),
                    text: filter,
                    role: SqlRole::BackupFilter,
                });
            }
        }
    }
    out
}

/// Every template of the plan, a publish step's default `message_id` and an http step's default
/// `idempotency_key` included.
pub fn templates(plan: &RawPlan) -> Vec<TemplateText<'_>> {
    let mut out = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let here = Location::root().key("steps").index(i);
        match step {
            Step::Publish(p) => {
                let per_event = p.each == PublishEach::Event;
                let mut push = |location: Location, field: MessageField<'static>, text| {
                    out.push(TemplateText {
                        location,
                        step: &p.id,
                        field,
                        text,
                        per_event,
                        secrets: None,
                    })
                };
                push(
                    here.key("routing_key"),
                    MessageField::RoutingKey,
                    &p.routing_key,
                );
                push(here.key("payload"), MessageField::Payload, &p.payload);
                push(
                    here.key("message_id"),
                    MessageField::MessageId,
                    p.message_id_template(),
                );
                for (name, value) in &p.headers {
                    out.push(TemplateText {
                        location: here.key("headers").key(name.clone()),
                        step: &p.id,
                        field: MessageField::Header(name),
                        text: value,
                        per_event,
                        secrets: None,
                    });
                }
            }
            Step::Http(h) => {
                let per_event = h.each == HttpEach::Event;
                let secrets = || Some(h.secrets_env.keys().map(String::as_str).collect());
                let mut push = |location: Location, field: MessageField<'static>, text| {
                    out.push(TemplateText {
                        location,
                        step: &h.id,
                        field,
                        text,
                        per_event,
                        secrets: secrets(),
                    })
                };
                push(here.key("url"), MessageField::Url, &h.url);
                if let Some(body) = &h.body {
                    push(here.key("body"), MessageField::Body, body);
                }
                push(
                    here.key("idempotency_key"),
                    MessageField::IdempotencyKey,
                    h.idempotency_key_template(),
                );
                for (name, value) in &h.headers {
                    out.push(TemplateText {
                        location: here.key("headers").key(name.clone()),
                        step: &h.id,
                        field: MessageField::Header(name),
                        text: value,
                        per_event,
                        secrets: secrets(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Selection values, with their locations (the places where `{{ params.NAME }}` may stand).
pub fn selection_values(plan: &RawPlan) -> Vec<(Location, &str)> {
    let select = Location::root().key("select");
    let s = &plan.select;
    let mut out: Vec<(Location, &str)> = Vec::new();
    for (key, items) in [
        ("status", &s.status),
        ("event_types", &s.event_types),
        ("event_ids", &s.event_ids),
    ] {
        for (i, v) in items.iter().enumerate() {
            out.push((select.key(key).index(i), v.as_str()));
        }
    }
    for (key, v) in [
        ("processed_within", &s.processed_within),
        ("processed_before", &s.processed_before),
    ] {
        if let Some(v) = v {
            out.push((select.key(key), v.as_str()));
        }
    }
    if let Some(b) = &s.processed_between {
        out.push((select.key("processed_between").key("from"), b.from.as_str()));
        out.push((select.key("processed_between").key("to"), b.to.as_str()));
    }
    for (k, v) in &s.payload {
        out.push((select.key("payload").key(k.clone()), v.as_str()));
    }
    out
}

/// The statements that change the schema or privileges (allowed by `allow_ddl`), as
/// `steps[2].sql: DROP`, for the review reports.
pub fn schema_changes(plan: &RawPlan) -> Vec<String> {
    sql_texts(plan)
        .into_iter()
        .filter(|t| matches!(t.role, SqlRole::Step { .. } | SqlRole::Rollback { .. }))
        .filter_map(|t| {
            let ddl = super::sql::analyze(t.text).ok()?.ddl?;
            Some(format!("{}: {ddl}", t.location))
        })
        .collect()
}
