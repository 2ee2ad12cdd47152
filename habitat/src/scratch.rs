//! The demo's scratch database: created with a mark (its comment), so that a later demo knows
//! which databases it may drop without asking.

use sqlx::PgPool;

/// The comment `habitat demo` leaves on every database it creates.
pub const MARK: &str = "created by habitat demo";

/// The longest database name PostgreSQL keeps whole; it truncates longer ones silently, which
/// would make the name checked differ from the name dropped.
pub const MAX_NAME_BYTES: usize = 63;

/// What is on the server under the scratch database's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    /// No such database.
    Absent,
    /// A database an earlier demo created: it may be dropped.
    Marked,
    /// Someone else's database, with the comment it has, if any.
    Unmarked {
        /// Its `COMMENT ON DATABASE`.
        comment: Option<String>,
    },
}

/// Checks a scratch database name: non-empty, at most [`MAX_NAME_BYTES`], no NUL.
pub fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("a database name cannot be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "PostgreSQL keeps at most {MAX_NAME_BYTES} bytes of a database name, this one has {}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err("a database name cannot hold a NUL character".into());
    }
    Ok(name.to_owned())
}

/// Whether database `name` exists on the server, and whether it bears the demo's mark.
pub async fn existing(server: &PgPool, name: &str) -> Result<Existing, sqlx::Error> {
    let found: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(server)
    .await?;
    Ok(match found {
        None => Existing::Absent,
        Some(Some(comment)) if comment == MARK => Existing::Marked,
        Some(comment) => Existing::Unmarked { comment },
    })
}

/// Drops database `name`, ending the sessions connected to it.
pub async fn drop(server: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    // Utility statements take no parameters: the name goes in as a quoted identifier.
    let sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(name)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(server)
        .await?;
    Ok(())
}

/// Creates database `name` and marks it as the demo's.
pub async fn create(server: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    let quoted = quote_identifier(name);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(server)
        .await?;
    // CREATE DATABASE cannot run in a transaction, so a crash right here leaves the database
    // unmarked: the next demo then asks before dropping it, which is the safe side.
    let comment = format!("COMMENT ON DATABASE {quoted} IS {}", quote_literal(MARK));
    sqlx::query(sqlx::AssertSqlSafe(comment))
        .execute(server)
        .await?;
    Ok(())
}

/// `name` as a PostgreSQL identifier: in double quotes, inner quotes doubled, case kept.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a standard-conforming string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The URL of database `database` on the server `url` points at (same user, host and
/// parameters).
pub fn url_of(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    // The path starts at the first `/` after the user info, which may itself hold a `/`.
    let authority_start = base[scheme_end..]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    let database = percent_encode(database);
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The database a URL names, as the driver reads it (`None` when it names none).
pub fn database_of(url: &str) -> Option<String> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    options.get_database().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_case(url: &str, database: &str, expected: &str) {
        assert_eq!(url_of(url, database), expected, "{url} with {database}");
        assert_eq!(
            database_of(expected).as_deref(),
            Some(database),
            "{expected} read back"
        );
    }

    #[test]
    fn a_database_url_keeps_server_user_and_parameters() {
        url_case(
            "postgres://postgres@127.0.0.1:5432/postgres",
            "replay_demo",
            "postgres://postgres@127.0.0.1:5432/replay_demo",
        );
        url_case(
            "postgres://u:p%2Fw@h:5433/db?sslmode=require",
            "x",
            "postgres://u:p%2Fw@h:5433/x?sslmode=require",
        );
        // Not a URL the driver reads (a raw `/` in the password), but the user info is kept
        // whole, as `replay`'s redaction reads it.
        assert_eq!(url_of("postgres://u:a/b@h/db", "x"), "postgres://u:a/b@h/x");
        url_case("postgres://h", "x", "postgres://h/x");
        url_case(
            "postgres://h/db",
            "My \"odd\" db/1?",
            "postgres://h/My%20%22odd%22%20db%2F1%3F",
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_identifier("replay_demo"), "\"replay_demo\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_identifier("Robert\"; DROP"), "\"Robert\"\"; DROP\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn names_postgres_would_change_are_refused() {
        assert!(check_name("replay_demo").is_ok());
        assert!(check_name(&"x".repeat(63)).is_ok());
        assert!(check_name(&"x".repeat(64)).is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a\0b").is_err());
    }
}
