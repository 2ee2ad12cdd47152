//! What the target database says about itself and the connecting role: the session (TLS,
//! version), tables and their columns, and privileges. Every catalog query of `replay doctor`
//! lives here; the `replay` schema's own records are the state store's (`state.rs`).

use sqlx::PgPool;

use crate::engine::error::RunError;
use crate::plan::access::Privilege;

/// The connection as the server sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub database: String,
    /// `server_version`, e.g. `15.8 (Debian 15.8-1)`.
    pub version: String,
    /// `server_version_num`, e.g. `150008`.
    pub version_num: i32,
    /// Whether this connection is encrypted, and with which protocol.
    pub ssl: bool,
    pub ssl_version: Option<String>,
}

impl Session {
    /// The major version (`15` of `150008`; `9` of `90624`, which is older than 10).
    pub fn major(&self) -> i32 {
        self.version_num / 10_000
    }
}

pub async fn session(pool: &PgPool) -> Result<Session, RunError> {
    let (user, database, version, version_num, ssl, ssl_version): (
        String,
        String,
        String,
        String,
        Option<bool>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT current_user::text, current_database()::text, current_setting('server_version'), \
                current_setting('server_version_num'), s.ssl, s.version \
         FROM (SELECT 1) one LEFT JOIN pg_stat_ssl s ON s.pid = pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading the session"))?;
    Ok(Session {
        user,
        database,
        version,
        version_num: version_num.parse().unwrap_or(0),
        ssl: ssl.unwrap_or(false),
        ssl_version,
    })
}

/// A table (or view) the server found for a name, by its canonical name and oid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: i64,
    /// `oid::regclass::text`: schema-qualified when not on the search path.
    pub name: String,
}

/// Resolves a name as a statement would (`to_regclass`); `None` when there is no such table. A
/// name that cannot be a table name at all is no table either.
pub async fn relation(pool: &PgPool, lookup: &str) -> Result<Option<Relation>, RunError> {
    let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT r::oid::bigint, r::text FROM (SELECT to_regclass($1) AS r) t WHERE r IS NOT NULL",
    )
    .bind(lookup)
    .fetch_optional(pool)
    .await
    .or_else(|e| match e {
        // `to_regclass` rejects malformed names (SQLSTATE 42602) instead of returning NULL.
        sqlx::Error::Database(ref db) if db.code().as_deref() == Some("42602") => Ok(None),
        e => Err(e),
    })
    .map_err(RunError::db(format!("looking up table `{lookup}`")))?;
    Ok(row.and_then(|(oid, name)| {
        Some(Relation {
            oid: oid?,
            name: name?,
        })
    }))
}

/// The columns of a table, in order.
pub async fn columns(pool: &PgPool, table: &Relation) -> Result<Vec<String>, RunError> {
    sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute \
         WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table.oid)
    .fetch_all(pool)
    .await
    .map_err(RunError::db(format!(
        "reading the columns of `{}`",
        table.name
    )))
}

/// Whether the connecting role holds `privilege` on the table (directly, through a role it is
/// a member of, or through PUBLIC).
pub async fn has_table_privilege(
    pool: &PgPool,
    table: &Relation,
    privilege: Privilege,
) -> Result<bool, RunError> {
    sqlx::query_scalar("SELECT has_table_privilege($1::bigint::oid, $2)")
        .bind(table.oid)
        .bind(privilege.as_str())
        .fetch_one(pool)
        .await
        .map_err(RunError::db(format!(
            "reading privileges on `{}`",
            table.name
        )))
}

/// The sequences that fill a table's `serial` columns (an `INSERT` that takes their default
/// needs USAGE on them), with whether the role has it. Identity columns need none.
pub async fn serial_sequences(
    pool: &PgPool,
    table: &Relation,
) -> Result<Vec<(String, bool)>, RunError> {
    sqlx::query_as(
        "SELECT s.oid::regclass::text, has_sequence_privilege(s.oid, 'USAGE') \
         FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         WHERE d.refobjid = $1::bigint::oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'a' \
         ORDER BY 1",
    )
    .bind(table.oid)
    .fetch_all(pool)
    .await
    .map_err(RunError::db(format!("reading the sequences of `{}`", table.name)))
}

/// A schema, and what the connecting role may do in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaAccess {
    pub owner: String,
    pub usage: bool,
    pub create: bool,
}

pub async fn schema(pool: &PgPool, name: &str) -> Result<Option<SchemaAccess>, RunError> {
    let row: Option<(String, bool, bool)> = sqlx::query_as(
        "SELECT pg_get_userbyid(nspowner)::text, has_schema_privilege(oid, 'USAGE'), \
                has_schema_privilege(oid, 'CREATE') \
         FROM pg_namespace WHERE nspname = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db(format!("looking up schema `{name}`")))?;
    Ok(row.map(|(owner, usage, create)| SchemaAccess {
        owner,
        usage,
        create,
    }))
}

/// What the role may do in the current database: create schemas, create temporary tables.
pub async fn database_privileges(pool: &PgPool) -> Result<(bool, bool), RunError> {
    sqlx::query_as(
        "SELECT has_database_privilege(current_database(), 'CREATE'), \
                has_database_privilege(current_database(), 'TEMPORARY')",
    )
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading database privileges"))
}

/// Every table, view and sequence of a schema, with the privileges the role lacks among those
/// `wanted` gives for its kind (`r` table, `v` view, `S` sequence).
pub async fn missing_in_schema(
    pool: &PgPool,
    schema: &str,
    wanted: fn(&str, char) -> &'static [&'static str],
) -> Result<Vec<(String, Vec<&'static str>)>, RunError> {
    let objects: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text, c.oid::bigint FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'S') ORDER BY c.relname",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .map_err(RunError::db(format!("listing schema `{schema}`")))?;
    let mut out = Vec::new();
    for (name, kind, oid) in objects {
        let kind = kind.chars().next().unwrap_or('r');
        let mut missing = Vec::new();
        for privilege in wanted(&name, kind) {
            let query = match kind {
                'S' => "SELECT has_sequence_privilege($1::bigint::oid, $2)",
                _ => "SELECT has_table_privilege($1::bigint::oid, $2)",
            };
            let held: bool = sqlx::query_scalar(query)
                .bind(oid)
                .bind(*privilege)
                .fetch_one(pool)
                .await
                .map_err(RunError::db(format!(
                    "reading privileges on `{schema}.{name}`"
                )))?;
            if !held {
                missing.push(*privilege);
            }
        }
        if !missing.is_empty() {
            out.push((format!("{schema}.{name}"), missing));
        }
    }
    Ok(out)
}
