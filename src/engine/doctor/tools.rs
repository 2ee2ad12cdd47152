//! Programs a run calls: `pg_dump`, for plans that ask for a dump, present and at least as new
//! as the server (an older `pg_dump` refuses to dump a newer server).

use super::check::Check;
use super::preflight::Preflight;

pub async fn checks(preflight: &Preflight, server_major: Option<i32>) -> Vec<Check> {
    let dumps = preflight
        .plans
        .iter()
        .any(|p| p.raw.backup.as_ref().is_some_and(|b| b.pg_dump.is_some()));
    if !dumps {
        return Vec::new();
    }
    let output = tokio::process::Command::new("pg_dump")
        .arg("--version")
        .output()
        .await;
    let version = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => {
            return vec![Check::fail(
                "pg_dump",
                "`backup.pg_dump` needs the `pg_dump` program, which is not installed or not on PATH",
                "install the PostgreSQL client of the server's major version (e.g. `postgresql-client-15`)",
            )];
        }
    };
    let major = major_of(&version);
    let table = preflight
        .targets()
        .first()
        .map(|t| t.events_table.clone())
        .unwrap_or_default();
    let connects = match crate::engine::dump::probe(&preflight.database_url, &table).await {
        Ok(()) => Check::pass(
            "pg_dump connects",
            "a schema-only dump over the run's URL (and its TLS settings) works",
        ),
        Err(why) => Check::fail(
            "pg_dump connects",
            format!("pg_dump cannot dump over the run's URL: {why}"),
            "pg_dump judges TLS as libpq does: give `sslrootcert` for `verify-ca`/`verify-full`, and the role SELECT on what it dumps",
        ),
    };
    let mut out = vec![match (major, server_major) {
        (Some(dump), Some(server)) if dump < server => Check::fail(
            "pg_dump",
            format!("`{version}` is older than the server ({server}); it refuses to dump it"),
            format!(
                "install the PostgreSQL {server} client (`postgresql-client-{server}`) and put its pg_dump first on PATH"
            ),
        ),
        (Some(_), Some(server)) => Check::pass(
            "pg_dump",
            format!("`{version}` can dump the server ({server})"),
        ),
        _ => Check::warn(
            "pg_dump",
            format!("`{version}`: the versions could not be compared"),
            "make sure pg_dump's major version is at least the server's",
        ),
    }];
    out.push(connects);
    out
}

/// `15` of `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)`.
fn major_of(version: &str) -> Option<i32> {
    version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_major_version_is_read() {
        let cases = [
            (
                "pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)",
                Some(15),
            ),
            ("pg_dump (PostgreSQL) 9.6.24", Some(9)),
            ("pg_dump (PostgreSQL) 17devel", None),
        ];
        for (text, expected) in cases {
            assert_eq!(super::major_of(text), expected, "{text}");
        }
    }
}
