//! A queue the broker refuses (exclusive to another connection) is reported refused, not missing.

use super::support::*;
use std::process::Command;

use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_refused_queue_is_not_reported_missing(pool: PgPool) -> anyhow::Result<()> {
    failed_tenth(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let queue = format!("test-refused-{}", uuid::Uuid::new_v4().simple());
    // Exclusive to this connection: another one's passive declare gets 405 RESOURCE_LOCKED.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(["inspect", "--status", "error", "--queue", &queue])
        .args(["--database-url", &url, "--amqp-url", AMQP])
        .output()?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("the broker refused access to queue `{queue}`")),
        "{text}"
    );
    assert!(text.contains("RESOURCE_LOCKED"), "{text}");
    assert!(!text.contains("does not exist"), "{text}");
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
