//! `backup.pg_dump`: a `pg_dump -Fc` of the target database before the first write.

use std::path::{Path, PathBuf};

use crate::engine::error::RunError;
use crate::engine::redact::scrub;

/// Checks that `pg_dump` can run and the directory is writable (what a dry-run can promise).
pub async fn check(directory: &str) -> Result<(), RunError> {
    let version = tokio::process::Command::new("pg_dump")
        .arg("--version")
        .output()
        .await;
    if !matches!(version, Ok(ref out) if out.status.success()) {
        return Err(RunError::Refused(
            "`backup.pg_dump` needs the `pg_dump` program, which is not installed or not on PATH"
                .into(),
        ));
    }
    let dir = Path::new(directory);
    std::fs::create_dir_all(dir).map_err(|e| {
        RunError::Refused(format!(
            "cannot create the dump directory `{directory}`: {e}"
        ))
    })?;
    Ok(())
}

/// Writes `DIRECTORY/pre-replay-RUN.dump`; the password travels in the environment, not argv.
pub async fn dump(
    database_url: &str,
    directory: &str,
    run_id: uuid::Uuid,
) -> Result<PathBuf, RunError> {
    check(directory).await?;
    let path = Path::new(directory).join(format!("pre-replay-{run_id}.dump"));
    let (url, password) = split_password(database_url);
    let mut command = tokio::process::Command::new("pg_dump");
    command
        .arg("-Fc")
        .arg("-f")
        .arg(&path)
        .arg("--dbname")
        .arg(&url);
    if let Some(p) = password {
        command.env("PGPASSWORD", p);
    }
    let out = command
        .output()
        .await
        .map_err(|e| RunError::Refused(format!("cannot run pg_dump: {e}")))?;
    if !out.status.success() {
        // pg_dump creates its file before it connects: a failed dump must leave nothing that
        // could pass for a backup (the `recent_dump` gate looks at these files).
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(RunError::Refused(format!(
            "pg_dump failed: {}",
            scrub(stderr.trim(), database_url)
        )));
    }
    Ok(path)
}

/// Whether `pg_dump` can reach the database as a run's dump would (the same URL, so the same TLS
/// settings, which libpq judges by its own rules): a schema-only dump of one table, discarded.
pub async fn probe(database_url: &str, table: &str) -> Result<(), String> {
    let (url, password) = split_password(database_url);
    let mut command = tokio::process::Command::new("pg_dump");
    command
        .args(["--schema-only", "--file", "/dev/null", "--table"])
        .arg(table)
        .arg("--dbname")
        .arg(&url);
    if let Some(p) = password {
        command.env("PGPASSWORD", p);
    }
    let out = command
        .output()
        .await
        .map_err(|e| format!("cannot run pg_dump: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(scrub(
            String::from_utf8_lossy(&out.stderr).trim(),
            database_url,
        )),
    }
}

/// The URL without its password (user info or `password=` parameter), and the decoded
/// password: pg_dump gets it in its environment only, never in its arguments.
fn split_password(url: &str) -> (String, Option<String>) {
    let password = crate::engine::redact::password(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let (authority, tail) = crate::engine::redact::split_authority(rest);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| {
                    !p.split_once('=')
                        .is_some_and(|(k, _)| k.eq_ignore_ascii_case("password"))
                })
                .collect();
            match kept.is_empty() {
                true => path.to_string(),
                false => format!("{path}?{}", kept.join("&")),
            }
        }
        None => tail.to_string(),
    };
    (format!("{scheme}://{authority}{tail}"), password)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_leave_the_url_decoded() {
        let cases = [
            (
                "postgres://u:p%40ss@h:5432/db",
                "postgres://u@h:5432/db",
                Some("p@ss"),
            ),
            (
                "postgres://u@h/db?password=s%3Dcret&sslmode=require",
                "postgres://u@h/db?sslmode=require",
                Some("s=cret"),
            ),
            ("postgres://u@h/db", "postgres://u@h/db", None),
            (
                "postgres://u:ab/cd@h/db?sslmode=require",
                "postgres://u@h/db?sslmode=require",
                Some("ab/cd"),
            ),
        ];
        for (url, stripped, password) in cases {
            let (u, p) = super::split_password(url);
            assert_eq!((u.as_str(), p.as_deref()), (stripped, password), "{url}");
        }
    }
}
