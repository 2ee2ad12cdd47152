//! The PostgreSQL side of the preflight: the session (TLS, version), the target's tables and
//! columns, the table privileges the plans need, and the `replay` schema.

use sqlx::PgPool;

use crate::engine::catalog::{self, Relation, Session};
use crate::engine::redact::redact_url;
use crate::engine::state::{self, Migrations};
use crate::plan::access::Privilege;
use crate::plan::model::Target;
use crate::plan::privileges::{self, TableNeed};
use crate::plan::selection::quote_ident;

use super::check::Check;
use super::preflight::Preflight;

/// The oldest PostgreSQL major version `replay` supports.
pub const MIN_POSTGRES: i32 = 12;

/// The database checks, and the server's major version (for `pg_dump`).
pub async fn checks(pool: &PgPool, preflight: &Preflight) -> (Vec<Check>, Option<i32>) {
    let mut out = Vec::new();
    let session = match catalog::session(pool).await {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::fail(
                "postgres",
                e.to_string(),
                "check that the role may connect and read `pg_stat_ssl`",
            ));
            return (out, None);
        }
    };
    out.extend(session_checks(&session, &preflight.database_url));
    for target in preflight.targets() {
        out.extend(table_checks(pool, &target).await);
    }
    out.extend(privilege_checks(pool, preflight, &session).await);
    out.extend(replay_schema_checks(pool, &session).await);
    (out, Some(session.major()))
}

fn session_checks(session: &Session, url: &str) -> Vec<Check> {
    let mut out = vec![Check::pass(
        "postgres",
        format!("connected to {} as `{}`", redact_url(url), session.user),
    )];
    out.push(match session.ssl {
        true => Check::pass(
            "postgres tls",
            format!(
                "encrypted ({})",
                session.ssl_version.as_deref().unwrap_or("TLS")
            ),
        ),
        false => Check::warn(
            "postgres tls",
            "the connection is not encrypted",
            "add `sslmode=verify-full` (or `require`) to the database URL where the server offers TLS",
        ),
    });
    out.push(match session.major() >= MIN_POSTGRES {
        true => Check::pass(
            "postgres version",
            format!("{} (at least {MIN_POSTGRES})", session.version),
        ),
        false => Check::fail(
            "postgres version",
            format!(
                "{} is older than {MIN_POSTGRES}, the oldest version replay supports",
                session.version
            ),
            format!("upgrade the server to PostgreSQL {MIN_POSTGRES} or newer"),
        ),
    });
    out
}

/// The events table with every configured column, and the audit table with the columns the
/// audit row fills.
async fn table_checks(pool: &PgPool, target: &Target) -> Vec<Check> {
    let c = &target.columns;
    let mut tables = vec![(
        &target.events_table,
        vec![
            ("event_id", &c.event_id),
            ("event_type", &c.event_type),
            ("payload", &c.payload),
            ("status", &c.status),
            ("retry_count", &c.retry_count),
            ("error_message", &c.error_message),
            ("processed_at", &c.processed_at),
        ],
        "target.events_table",
    )];
    let audit_columns = ["action", "details", "performed_by"];
    let audit: Vec<(&str, &String)> = Vec::new();
    if !target.audit_table.is_empty() {
        tables.push((&target.audit_table, audit, "target.audit_table"));
    }
    let mut out = Vec::new();
    for (table, columns, setting) in tables {
        let name = format!("table {table}");
        let relation = match catalog::relation(pool, &quote_ident(table)).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                out.push(Check::fail(
                    name,
                    format!("`{table}` does not exist"),
                    format!("create it, or set `{setting}` in the plan to the table that exists"),
                ));
                continue;
            }
            Err(e) => {
                out.push(Check::fail(name, e.to_string(), "see the error"));
                continue;
            }
        };
        let present = match catalog::columns(pool, &relation).await {
            Ok(p) => p,
            Err(e) => {
                out.push(Check::fail(name, e.to_string(), "see the error"));
                continue;
            }
        };
        let (missing, fix) = if setting == "target.audit_table" {
            let missing: Vec<String> = audit_columns
                .iter()
                .filter(|col| !present.iter().any(|p| p == *col))
                .map(|col| format!("`{col}`"))
                .collect();
            (
                missing,
                "the audit row fills `action`, `details` and `performed_by`: add them, or set `target.audit_table: \"\"` to write none".to_string(),
            )
        } else {
            let missing: Vec<(&str, &String)> = columns
                .iter()
                .filter(|(_, col)| !present.iter().any(|p| p == *col))
                .copied()
                .collect();
            let fix = missing
                .iter()
                .map(|(key, _)| format!("`target.columns.{key}`"))
                .collect::<Vec<_>>()
                .join(", ");
            (
                missing
                    .iter()
                    .map(|(key, col)| format!("`{col}` ({key})"))
                    .collect(),
                format!("set {fix} in the plan to the column's name in `{table}`"),
            )
        };
        out.push(match missing.is_empty() {
            true => Check::pass(
                name,
                format!("`{}` has every configured column", relation.name),
            ),
            false => Check::fail(
                name,
                format!("`{table}` has no column {}", missing.join(", ")),
                fix,
            ),
        });
    }
    out
}

/// The table privileges the plans need, one row per table (and its `serial` sequences for an
/// `INSERT`), with the `GRANT` that gives what is missing.
async fn privilege_checks(pool: &PgPool, preflight: &Preflight, session: &Session) -> Vec<Check> {
    let mut needs: Vec<TableNeed> = Vec::new();
    if preflight.plans.is_empty() {
        needs.extend(privileges::target_needs(&preflight.default_target, true));
    }
    for p in &preflight.plans {
        needs.extend(privileges::table_needs(&p.raw));
    }
    // Resolved once per name; grouped per table, in the order first needed.
    let mut tables: Vec<(Relation, Vec<(Privilege, String)>)> = Vec::new();
    let mut missing_tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut out = Vec::new();
    for need in needs {
        match catalog::relation(pool, &need.lookup).await {
            Ok(Some(relation)) => match tables.iter_mut().find(|(r, _)| *r == relation) {
                Some((_, wanted)) => wanted.push((need.privilege, need.why)),
                None => tables.push((relation, vec![(need.privilege, need.why)])),
            },
            Ok(None) if need.target_table => {}
            Ok(None) => match missing_tables.iter_mut().find(|(t, _)| *t == need.table) {
                Some((_, whys)) => whys.push(need.why),
                None => missing_tables.push((need.table, vec![need.why])),
            },
            Err(e) => out.push(Check::fail(
                format!("privileges on {}", need.table),
                e.to_string(),
                "see the error",
            )),
        }
    }
    for (table, mut whys) in missing_tables {
        whys.dedup();
        out.push(Check::fail(
            format!("table {table}"),
            format!("`{table}` ({}) does not exist", whys.join(", ")),
            "create it, or correct the plan",
        ));
    }
    let role = quote_ident(&session.user);
    for (relation, wanted) in tables {
        let name = format!("privileges on {}", relation.name);
        // A restore inserts whole rows, keys included; other INSERTs may take a `serial` default.
        let takes_defaults = wanted
            .iter()
            .any(|(p, why)| *p == Privilege::Insert && why != privileges::RESTORE);
        let mut held = Vec::new();
        let mut missing: Vec<(Privilege, Vec<String>)> = Vec::new();
        let mut error = None;
        for (privilege, why) in wanted {
            if held.contains(&privilege) {
                continue;
            }
            if let Some((_, whys)) = missing.iter_mut().find(|(p, _)| *p == privilege) {
                if !whys.contains(&why) {
                    whys.push(why);
                }
                continue;
            }
            match catalog::has_table_privilege(pool, &relation, privilege).await {
                Ok(true) => held.push(privilege),
                Ok(false) => missing.push((privilege, vec![why])),
                Err(e) => error = Some(e.to_string()),
            }
        }
        if let Some(e) = error {
            out.push(Check::fail(name, e, "see the error"));
            continue;
        }
        let mut sequences = Vec::new();
        if takes_defaults && held.contains(&Privilege::Insert) {
            match catalog::serial_sequences(pool, &relation).await {
                Ok(s) => sequences = s.into_iter().filter(|(_, ok)| !ok).collect(),
                Err(e) => out.push(Check::fail(name.clone(), e.to_string(), "see the error")),
            }
        }
        if missing.is_empty() && sequences.is_empty() {
            held.sort();
            let list: Vec<&str> = held.iter().map(|p| p.as_str()).collect();
            out.push(Check::pass(name, list.join(", ")));
            continue;
        }
        missing.sort();
        let mut detail: Vec<String> = missing
            .iter()
            .map(|(p, whys)| format!("{p} (for {})", whys.join(", ")))
            .collect();
        detail.extend(
            sequences
                .iter()
                .map(|(s, _)| format!("USAGE on sequence {s} (for the INSERT's default)")),
        );
        let mut fix = Vec::new();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|(p, _)| p.as_str()).collect();
            fix.push(format!(
                "GRANT {} ON {} TO {role};",
                list.join(", "),
                relation.name
            ));
        }
        for (s, _) in &sequences {
            fix.push(format!("GRANT USAGE ON SEQUENCE {s} TO {role};"));
        }
        out.push(Check::fail(
            name,
            format!("`{}` lacks {}", session.user, detail.join("; ")),
            fix.join(" "),
        ));
    }
    out
}

/// The `replay` schema: there and migrated as far as this build, and what the role may do in it.
async fn replay_schema_checks(pool: &PgPool, session: &Session) -> Vec<Check> {
    let mut out = Vec::new();
    let role = quote_ident(&session.user);
    let (create_schema, temporary) = match catalog::database_privileges(pool).await {
        Ok(p) => p,
        Err(e) => {
            out.push(Check::fail("replay schema", e.to_string(), "see the error"));
            return out;
        }
    };
    out.push(match temporary {
        true => Check::pass("temporary tables", "TEMPORARY on the database"),
        false => Check::fail(
            "temporary tables",
            format!(
                "`{}` may not create temporary tables (the dry-run rehearses in one, and a rollback's restore compares in one)",
                session.user
            ),
            format!(
                "GRANT TEMPORARY ON DATABASE {} TO {role};",
                quote_ident(&session.database)
            ),
        ),
    });
    let schema = match catalog::schema(pool, "replay").await {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::fail("replay schema", e.to_string(), "see the error"));
            return out;
        }
    };
    let can_create = match create_schema {
        true => "this role can create it (CREATE on the database), and `replay apply` would",
        false => "this role cannot create it (no CREATE on the database): the schema's owner must",
    };
    let Some(schema) = schema else {
        let init =
            "run `replay init` as the role that is to own the schema (see docs/least-privilege.md)";
        out.push(match create_schema {
            true => Check::warn(
                "replay schema",
                format!("not created yet; {can_create}"),
                init,
            ),
            false => Check::fail(
                "replay schema",
                format!("not created yet; {can_create}"),
                init,
            ),
        });
        return out;
    };
    // Reading the migrations needs USAGE; without it the privilege row below says so.
    if schema.usage {
        let owner_runs = format!(
            "run `replay init` as `{}`, the schema's owner (this build's migrations are newer)",
            schema.owner
        );
        out.push(match state::migrations(pool).await {
            Ok(Migrations::UpToDate { applied }) => Check::pass(
                "replay schema",
                format!("up to date ({applied} migrations)"),
            ),
            Ok(Migrations::Missing) => Check::fail(
                "replay schema",
                "the schema exists but holds no migration record (`replay._sqlx_migrations`)",
                owner_runs,
            ),
            Ok(Migrations::Behind { applied, known }) => {
                let may = schema.owner == session.user && create_schema;
                let detail = format!("{applied} of this build's {known} migrations applied");
                match may {
                    true => Check::warn(
                        "replay schema",
                        format!("{detail}; `replay apply` migrates it (this role owns it)"),
                        "run `replay init` first to migrate outside a run",
                    ),
                    false => Check::fail("replay schema", detail, owner_runs),
                }
            }
            Err(e) => Check::fail(
                "replay schema",
                e.to_string(),
                format!("GRANT SELECT ON replay._sqlx_migrations TO {role};"),
            ),
        });
    }
    let missing = match catalog::missing_in_schema(pool, "replay", replay_privileges).await {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::fail(
                "privileges on schema replay",
                e.to_string(),
                "see the error",
            ));
            return out;
        }
    };
    if schema.usage && missing.is_empty() {
        out.push(Check::pass(
            "privileges on schema replay",
            "USAGE, and what the executor does to each of its tables and sequences",
        ));
        return out;
    }
    let mut detail = Vec::new();
    if !schema.usage {
        detail.push("USAGE on schema replay".to_string());
    }
    let shown = 4;
    for (object, privileges) in missing.iter().take(shown) {
        detail.push(format!("{} on {object}", privileges.join(", ")));
    }
    if missing.len() > shown {
        detail.push(format!("and privileges on {} more", missing.len() - shown));
    }
    out.push(Check::fail(
        "privileges on schema replay",
        format!("`{}` lacks {}", session.user, detail.join("; ")),
        format!(
            "as the schema's owner: GRANT USAGE ON SCHEMA replay TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA replay TO {role}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA replay TO {role};"
        ),
    ));
    out
}

/// What the executor needs on each object of the `replay` schema: the migration record is only
/// read (by the check that the schema is up to date), a view only read, a sequence used.
fn replay_privileges(name: &str, kind: char) -> &'static [&'static str] {
    match (name, kind) {
        (_, 'S') => &["USAGE"],
        ("_sqlx_migrations", _) | (_, 'v') => &["SELECT"],
        _ => &["SELECT", "INSERT", "UPDATE", "DELETE"],
    }
}
