//! What the integration tests share: the broker URL, the test database's URL, table checksums.

use sqlx::PgPool;

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The URL of a database on the server `DATABASE_URL` names.
pub fn url_of(db: &str) -> anyhow::Result<String> {
    let server = std::env::var("DATABASE_URL")?;
    Ok(format!(
        "{}/{db}",
        server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b)
    ))
}

/// The URL of the test's own database (`#[sqlx::test]` made it).
pub async fn database_url(pool: &PgPool) -> anyhow::Result<String> {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await?;
    url_of(&db)
}

/// Checksums of every table in the public schema, and whether the executor's schema exists.
pub async fn fingerprint(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for t in tables {
        let sum: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM \"{t}\" t"
        )))
        .fetch_one(pool)
        .await?;
        out.push((t, sum.unwrap_or_default()));
    }
    let schema: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 'replay'")
            .fetch_optional(pool)
            .await?;
    out.push(("replay schema".into(), schema.unwrap_or_default()));
    Ok(out)
}

/// A Habitat of `events` events processed over the last day, a tenth of them failed.
pub async fn failed_tenth(pool: &PgPool, events: u64) -> anyhow::Result<()> {
    let config = habitat::GeneratorConfig {
        events,
        failed_share: 0.1,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..habitat::GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    Ok(())
}

/// A finished command's standard output and error, for assertions and their messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Records every change of an event's status (`status_changes`: event, old and new status, and
/// when), so that a test can prove which rows a run touched and when.
pub async fn record_status_changes(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE status_changes (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, old TEXT, new TEXT, \
           at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()); \
         CREATE FUNCTION record_status_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN INSERT INTO status_changes (event_id, old, new) VALUES (NEW.event_id, OLD.status, NEW.status); RETURN NEW; END $$; \
         CREATE TRIGGER status_changes AFTER UPDATE ON processed_events FOR EACH ROW \
           WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION record_status_change();",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the run log has an entry of `kind` (for `step`, when given).
pub async fn logged(pool: &PgPool, kind: &str, step: Option<&str>) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM replay.run_log WHERE kind = $1 AND ($2::text IS NULL OR step_id = $2))",
    )
    .bind(kind)
    .bind(step)
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}
