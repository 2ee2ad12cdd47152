//! The async runtime and the database connection the commands open, failing with the server's
//! redacted URL.

use std::time::Duration;

use replay::engine::redact::redact_url;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::CliError;

/// How long a connection may take before the command gives up on the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The multi-threaded runtime the commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed("start the async runtime", e))
}

/// A pool on `url`, after one connection made on its own, so that a wrong URL fails here with
/// the driver's reason (a pool would only report that it timed out).
pub async fn database(url: &str) -> Result<PgPool, CliError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        CliError::failed(format!("connect to PostgreSQL at {}", redact_url(url)), e)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(probe)) => {
            // The pool opens its own; whether this one closes cleanly does not matter.
            let _ = probe.close().await;
        }
        Ok(Err(e)) => return Err(failed(e.into())),
        Err(e) => return Err(failed(e.into())),
    }
    PgPoolOptions::new()
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| failed(e.into()))
}
