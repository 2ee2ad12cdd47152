//! Habitat's admin API, the runbook's "Replay via API": `POST /api/admin/replay-event` with
//! `{"event_id": "evt_123456", "force": false}` and `Authorization: Bearer $ADMIN_TOKEN` applies
//! one stored event again, as the worker does, and answers what became of it.
//!
//! An event already `processed` is not applied again unless `force` is true (the runbook's
//! warning about duplicate side effects holds), so a call made twice (a client's retry, the same
//! `Idempotency-Key`) changes nothing the second time.

use std::net::SocketAddr;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::http::{self, Request, Response, Server};
use crate::worker::{FailureMode, Replayed};

/// How the admin API runs.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The bearer token every call must carry.
    pub token: String,
    /// Whether the handlers still have the bug (as the worker's).
    pub failing: FailureMode,
}

/// Starts the admin API on `listen` (port 0 for any free one); it stops when the returned server
/// is dropped.
pub async fn start(
    pool: PgPool,
    listen: SocketAddr,
    config: AdminConfig,
) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    http::serve(listener, move |request| {
        let (pool, config) = (pool.clone(), config.clone());
        async move { answer(&pool, &config, request).await }
    })
}

async fn answer(pool: &PgPool, config: &AdminConfig, request: Request) -> Response {
    if request.path != "/api/admin/replay-event" {
        return Response::json(404, &json!({"error": "no such endpoint"}));
    }
    if request.method != "POST" {
        return Response::json(405, &json!({"error": "use POST"})).with_header("allow", "POST");
    }
    let authorised = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| !config.token.is_empty() && token.trim() == config.token);
    if !authorised {
        return Response::json(401, &json!({"error": "a valid bearer token is required"}))
            .with_header("www-authenticate", "Bearer");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return Response::json(400, &json!({"error": "the body is not JSON"}));
    };
    let Some(event_id) = body.get("event_id").and_then(Value::as_str) else {
        return Response::json(400, &json!({"error": "`event_id` (a string) is required"}));
    };
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    match replay(pool, &config.failing, event_id, force).await {
        Ok(Some(mut outcome)) => {
            outcome["event_id"] = json!(event_id);
            Response::json(200, &outcome)
        }
        Ok(None) => Response::json(404, &json!({"error": format!("no event `{event_id}`")})),
        Err(e) => {
            tracing::warn!(event_id, error = %e, "admin replay failed");
            Response::json(
                503,
                &json!({"error": "the event could not be replayed now"}),
            )
            .with_header("retry-after", "1")
        }
    }
}

/// Applies the event again in one transaction; `None` when there is no such event.
async fn replay(
    pool: &PgPool,
    failing: &FailureMode,
    event_id: &str,
    force: bool,
) -> Result<Option<Value>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<(i64, String, Value, String)> = sqlx::query_as(
        "SELECT id, event_type, payload, status FROM processed_events WHERE event_id = $1 FOR UPDATE",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, event_type, payload, status)) = row else {
        return Ok(None);
    };
    if status == "processed" && !force {
        return Ok(Some(json!({"outcome": "already_processed"})));
    }
    let outcome =
        crate::worker::apply_row(failing, &mut tx, id, event_id, &event_type, &payload).await?;
    tx.commit().await?;
    Ok(Some(match outcome {
        Replayed::Processed => json!({"outcome": "processed"}),
        Replayed::Failed(message) => json!({"outcome": "failed", "error": message}),
    }))
}
