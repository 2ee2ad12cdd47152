//! `replay doctor` against the real services, and the least-privilege role of
//! `docs/least-privilege.md`: its grants applied as written, each revoked in turn, and a full
//! apply under it.

use super::process::*;
use super::support::*;
use std::time::{Duration, Instant};

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection as Amqp, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use sqlx::{Connection, PgPool};

/// Waits (with a deadline) until the RabbitMQ management API answers (`.ci/run` enables it).
async fn management_api() -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = client
            .get("http://127.0.0.1:15672/api/overview")
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the RabbitMQ management API is not up on port 15672 \
             (`rabbitmq-plugins enable rabbitmq_management`)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A test's own exchange, and its own queue bound to it with `pattern`; both deleted on drop.
struct Topology {
    name: String,
}

impl Topology {
    async fn new(pattern: Option<&str>) -> anyhow::Result<Topology> {
        let name = format!("doctor-{}", uuid::Uuid::new_v4().simple());
        let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.exchange_declare(
            name.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        if let Some(pattern) = pattern {
            ch.queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        conn.close(200, "declared".into()).await?;
        Ok(Topology { name })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
                let ch = conn.create_channel().await?;
                ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await?;
                ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// A login role of the test's own (roles are cluster-wide), dropped with what it was granted
/// when the test ends, however it ends.
struct Role {
    name: String,
    admin_url: String,
}

impl Role {
    async fn new(pool: &PgPool) -> anyhow::Result<Role> {
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(pool)
            .await?;
        // Identifiers stop at 63 bytes, as long as the test database's name: its tail is enough.
        let tail: String = db
            .chars()
            .rev()
            .take(24)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name = format!("apply_{tail}");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{name}\" LOGIN PASSWORD 'role-secret-1'"
        )))
        .execute(pool)
        .await?;
        Ok(Role {
            name,
            admin_url: database_url(pool).await?,
        })
    }

    /// The test database's URL as this role (the password is not checked under trust auth).
    fn url(&self) -> anyhow::Result<String> {
        let url = self.admin_url.replacen(
            "postgres://postgres@",
            &format!("postgres://{}:role-secret-1@", self.name),
            1,
        );
        anyhow::ensure!(url != self.admin_url, "unexpected DATABASE_URL {url}");
        Ok(url)
    }

    /// Runs `docs/least-privilege.md`'s SQL blocks for this role, on this database, as written.
    async fn grant_least_privilege(&self, pool: &PgPool) -> anyhow::Result<()> {
        let doc = std::fs::read_to_string("docs/least-privilege.md")?;
        let db: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(pool)
            .await?;
        let blocks: Vec<&str> = doc.split("```sql\n").skip(1).collect();
        anyhow::ensure!(blocks.len() == 2, "the doc's two SQL blocks");
        for block in blocks {
            let sql = block.split("```").next().unwrap_or("");
            for statement in sql.split(";\n") {
                let statement: String = statement
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let statement = statement.trim();
                if statement.is_empty() || statement.starts_with("CREATE ROLE") {
                    continue;
                }
                let statement = statement
                    .replace("replay_apply", &format!("\"{}\"", self.name))
                    .replace("DATABASE habitat", &format!("DATABASE \"{db}\""));
                sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                    .execute(pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{statement}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.admin_url.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                for sql in [
                    format!("DROP OWNED BY \"{name}\""),
                    format!("DROP ROLE IF EXISTS \"{name}\""),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// The plan of these tests: a reset, a publish, a `sql` step over a table of its own, a
/// verification and a backup, on the test's exchange.
fn full_plan(dir: &tempfile::TempDir, exchange: &str) -> std::path::PathBuf {
    plan_file(
        dir,
        "doctor-full",
        &format!(
            r#"target: {{ exchange: {exchange} }}
select: {{ status: [error], limit: 40 }}
backup:
  tables:
    - table: processed_events
steps:
  - {{ id: reset, kind: reset }}
  - {{ id: republish, kind: publish }}
  - id: touch-allocations
    kind: sql
    sql: "UPDATE allocations SET amount = amount WHERE period_id IS NULL"
verify:
  - name: nothing selected is still failing
    sql: "SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'"
    expect: {{ equals: 0 }}
rollback:
  - kind: restore_backup
    tables: [processed_events]
"#
        ),
    )
}

/// `replay doctor ARGS --format json` as the role of `url`: its exit code and its checks.
fn doctor(args: &[&str], url: &str) -> (Option<i32>, Vec<Value>, String) {
    let mut all = vec!["doctor", "--format", "json"];
    all.extend_from_slice(args);
    let out = run(&all, url);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let checks = serde_json::from_str::<Value>(&stdout)
        .ok()
        .and_then(|v| v["checks"].as_array().cloned())
        .unwrap_or_default();
    let both = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), checks, both)
}

/// The checks that failed, as `name: detail | fix`.
fn failed(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| {
            format!(
                "{}: {} | {}",
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or(""),
                c["fix"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn outcome<'c>(checks: &'c [Value], name: &str) -> &'c str {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["outcome"].as_str())
        .unwrap_or("absent")
}

#[sqlx::test(migrations = false)]
async fn doctor_passes_on_a_healthy_world(pool: PgPool) -> anyhow::Result<()> {
    management_api().await?;
    world(&pool, 300).await?;
    let url = database_url(&pool).await?;
    let topology = Topology::new(Some("#")).await?;
    let dir = tempfile::tempdir()?;
    let plan = full_plan(&dir, &topology.name);
    let (code, checks, output) = doctor(&[plan.to_str().unwrap_or_default()], &url);
    assert_eq!(failed(&checks), Vec::<String>::new(), "{output}");
    assert_eq!(code, Some(0), "{output}");
    for name in [
        "postgres",
        "postgres version",
        "table processed_events",
        "table audit_log",
        "privileges on processed_events",
        "privileges on allocations",
        "management api",
        "rabbitmq version",
        "routing doctor-full",
    ] {
        assert_eq!(outcome(&checks, name), "pass", "{name}: {output}");
    }
    assert_eq!(
        outcome(&checks, &format!("exchange {}", topology.name)),
        "pass"
    );
    // The text table says the same.
    let text = run(&["doctor", plan.to_str().unwrap_or_default()], &url);
    assert_exit(&text, 0);
    assert!(String::from_utf8_lossy(&text.stdout).contains("checks passed"));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn doctor_names_each_privilege_a_role_lacks(pool: PgPool) -> anyhow::Result<()> {
    management_api().await?;
    world(&pool, 200).await?;
    let admin = database_url(&pool).await?;
    assert_success(&run(&["init"], &admin));
    let role = Role::new(&pool).await?;
    role.grant_least_privilege(&pool).await?;
    let topology = Topology::new(Some("#")).await?;
    let dir = tempfile::tempdir()?;
    let plan = full_plan(&dir, &topology.name);
    let plan = plan.to_str().unwrap_or_default();

    let (code, checks, output) = doctor(&[plan], &role.url()?);
    assert_eq!(failed(&checks), Vec::<String>::new(), "{output}");
    assert_eq!(code, Some(0), "the documented grants are enough: {output}");

    let r = format!("\"{}\"", role.name);
    let cases = [
        (
            format!("REVOKE SELECT ON processed_events FROM {r}"),
            "privileges on processed_events",
            "SELECT (for the selection",
            format!("GRANT SELECT ON processed_events TO {r};"),
            format!("GRANT SELECT ON processed_events TO {r}"),
        ),
        (
            format!("REVOKE UPDATE ON processed_events FROM {r}"),
            "privileges on processed_events",
            "UPDATE (for reset steps",
            format!("GRANT UPDATE ON processed_events TO {r};"),
            format!("GRANT UPDATE ON processed_events TO {r}"),
        ),
        (
            format!("REVOKE INSERT ON audit_log FROM {r}"),
            "privileges on audit_log",
            "INSERT (for the audit row)",
            format!("GRANT INSERT ON audit_log TO {r};"),
            format!("GRANT INSERT ON audit_log TO {r}"),
        ),
        (
            format!("REVOKE USAGE ON SEQUENCE audit_log_id_seq FROM {r}"),
            "privileges on audit_log",
            "USAGE on sequence audit_log_id_seq",
            format!("GRANT USAGE ON SEQUENCE audit_log_id_seq TO {r};"),
            format!("GRANT USAGE ON SEQUENCE audit_log_id_seq TO {r}"),
        ),
        (
            format!("REVOKE UPDATE ON allocations FROM {r}"),
            "privileges on allocations",
            "UPDATE (for steps[2].sql)",
            format!("GRANT UPDATE ON allocations TO {r};"),
            format!("GRANT UPDATE ON allocations TO {r}"),
        ),
        (
            format!("REVOKE USAGE ON SCHEMA replay FROM {r}"),
            "privileges on schema replay",
            "lacks USAGE on schema replay",
            format!("GRANT USAGE ON SCHEMA replay TO {r};"),
            format!("GRANT USAGE ON SCHEMA replay TO {r}"),
        ),
        (
            format!("REVOKE INSERT ON replay.runs FROM {r}"),
            "privileges on schema replay",
            "INSERT on replay.runs",
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA replay TO {r};"),
            format!("GRANT INSERT ON replay.runs TO {r}"),
        ),
    ];
    for (revoke, name, lacks, fix, grant) in cases {
        sqlx::query(sqlx::AssertSqlSafe(revoke.clone()))
            .execute(&pool)
            .await?;
        let (code, checks, output) = doctor(&[plan], &role.url()?);
        let failures = failed(&checks);
        assert_eq!(failures.len(), 1, "{revoke}: exactly one failure: {output}");
        assert!(
            failures[0].starts_with(&format!("{name}: ")),
            "{revoke}: {failures:?}"
        );
        assert!(failures[0].contains(lacks), "{revoke}: {failures:?}");
        assert!(failures[0].contains(&fix), "{revoke}: {failures:?}");
        assert_eq!(code, Some(1), "{revoke}: {output}");
        sqlx::query(sqlx::AssertSqlSafe(grant))
            .execute(&pool)
            .await?;
    }
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn doctor_fails_a_missing_column_exchange_and_queue(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let missing = format!("doctor-missing-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "doctor-missing",
        &format!(
            r#"target: {{ exchange: {missing}, columns: {{ retry_count: retries }} }}
select: {{ status: [error] }}
steps:
  - {{ id: republish, kind: publish }}
  - {{ id: drained, kind: wait, queue_empty: {missing}, timeout: 1m }}
"#
        ),
    );
    let (code, checks, output) = doctor(&[plan.to_str().unwrap_or_default()], &url);
    let failures = failed(&checks);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(
        failures[0].starts_with("table processed_events: `processed_events` has no column `retries` (retry_count) | set `target.columns.retry_count`"),
        "{failures:?}"
    );
    assert!(
        failures[1].starts_with(&format!(
            "exchange {missing}: exchange `{missing}` does not exist | declare it"
        )),
        "{failures:?}"
    );
    assert!(
        failures[2].starts_with(&format!(
            "queue {missing}: queue `{missing}` does not exist | declare and bind it"
        )),
        "{failures:?}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn doctor_and_the_dry_run_report_an_unroutable_key(pool: PgPool) -> anyhow::Result<()> {
    management_api().await?;
    world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    // Bound for one type only: the other selected types reach no queue.
    let topology = Topology::new(Some("contribution.approved")).await?;
    let dir = tempfile::tempdir()?;
    let plan = full_plan(&dir, &topology.name);
    let plan = plan.to_str().unwrap_or_default();
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT event_type FROM (SELECT event_type FROM processed_events \
         WHERE status = 'error' ORDER BY processed_at NULLS FIRST, event_id LIMIT 40) s \
         WHERE event_type <> 'contribution.approved' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(!types.is_empty(), "the world must select other types");

    let (code, checks, output) = doctor(&[plan], &url);
    let failures = failed(&checks);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("routing doctor-full: routing key(s) that reach no queue"),
        "{failures:?}"
    );
    for t in &types {
        assert!(
            failures[0].contains(&format!("`{t}` on exchange `{}`", topology.name)),
            "{t}: {failures:?}"
        );
    }
    assert!(
        !failures[0].contains("`contribution.approved`"),
        "{failures:?}"
    );

    let before = fingerprint(&pool).await?;
    let out = run(&["apply", plan, "--dry-run", "--format", "json"], &url);
    assert_exit(&out, 4);
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "would_be_refused");
    let gate = report["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "routing"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gate["passed"], false, "{report}");
    for t in &types {
        assert!(
            gate["detail"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("`{t}`")),
            "{gate}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("safety gate `routing`"));
    assert_eq!(
        fingerprint(&pool).await?,
        before,
        "the dry-run changed nothing"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_bad_password_or_an_unreachable_server_is_a_failed_row_without_the_password(
    pool: PgPool,
) -> anyhow::Result<()> {
    let url = database_url(&pool).await?;
    // PostgreSQL here trusts every local connection, so its refusal is a closed port.
    let dead = "postgres://postgres:pg-secret-7@127.0.0.1:1/nowhere";
    let out = replay(&["doctor", "--format", "json"], dead)
        .env("AMQP_URL", "amqp://guest:amqp-secret-7@127.0.0.1:5672/%2f")
        .output()?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exit(&out, 1);
    for secret in ["pg-secret-7", "amqp-secret-7"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
    let checks: Vec<Value> = serde_json::from_slice::<Value>(&out.stdout)?["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let failures = failed(&checks);
    assert!(
        failures[0].starts_with(
            "postgres: cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/nowhere"
        ),
        "{failures:?}"
    );
    assert_eq!(outcome(&checks, "privileges"), "skipped");
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("rabbitmq: ") && f.contains("127.0.0.1:5672")),
        "{failures:?}"
    );
    assert_eq!(outcome(&checks, "routing"), "skipped");
    // The database itself is fine: only the broker's password is wrong.
    let out = replay(&["doctor"], &url)
        .env("AMQP_URL", "amqp://guest:amqp-secret-7@127.0.0.1:5672/%2f")
        .output()?;
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("amqp-secret-7"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL ") && l.contains(" rabbitmq ")),
        "{text}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_full_apply_runs_under_the_least_privilege_role(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 200).await?;
    let admin = database_url(&pool).await?;
    // The documented practice: the schema's owner creates it; the role only uses it.
    assert_success(&run(&["init"], &admin));
    let role = Role::new(&pool).await?;
    role.grant_least_privilege(&pool).await?;
    let topology = Topology::new(Some("#")).await?;
    let dir = tempfile::tempdir()?;
    let plan = full_plan(&dir, &topology.name);
    let selected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM processed_events WHERE status = 'error' LIMIT 40) s",
    )
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(selected > 0, "the world must have failed events");
    let failing_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;

    let out = run(&["apply", plan.to_str().unwrap_or_default()], &role.url()?);
    assert_exit(&out, 0);
    assert_one_run(&pool, "succeeded", "applied by the least-privilege role").await?;
    let (operator_rows, backups): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_log WHERE action = 'event_replay'), \
                (SELECT count(*) FROM replay.backup_rows)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((operator_rows, backups), (1, selected));
    let still_failing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        still_failing,
        failing_before - selected,
        "the selection was reset"
    );
    let published = drain_ids(&topology.name, selected as usize).await?;
    assert_eq!(published.len() as i64, selected);
    // The role could not have created the schema: the run used the owner's.
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'replay'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(owner, "postgres");
    Ok(())
}
