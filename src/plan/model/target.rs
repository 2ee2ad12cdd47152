//! Where the events live: table, columns and exchange, configurable for any PostgreSQL + RabbitMQ store.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The event store and broker the plan acts on. Every default is Habitat's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Target {
    /// Table holding one row per event, optionally schema-qualified.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"))]
    pub events_table: String,
    /// Column names of the events table.
    pub columns: Columns,
    /// Topic exchange that events are published to.
    #[schemars(length(min = 1, max = 255))]
    pub exchange: String,
    /// Table that receives one row per run (`action`, `details`, `performed_by`); empty to disable.
    #[schemars(pattern(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?)?$"))]
    pub audit_table: String,
    /// Every value the status column takes; a selection naming another is an error. Habitat's
    /// by default.
    #[serde(skip_serializing_if = "is_habitat_statuses")]
    pub statuses: Vec<String>,
}

/// Habitat's statuses.
pub const HABITAT_STATUSES: [&str; 4] = ["pending", "processing", "processed", "error"];

fn is_habitat_statuses(statuses: &[String]) -> bool {
    statuses.iter().map(String::as_str).eq(HABITAT_STATUSES)
}

impl Default for Target {
    fn default() -> Self {
        Target {
            events_table: "processed_events".into(),
            columns: Columns::default(),
            exchange: "habitat-events".into(),
            audit_table: "audit_log".into(),
            statuses: HABITAT_STATUSES.map(String::from).to_vec(),
        }
    }
}

/// Column names of the events table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// Unique event key (text); carried as the AMQP `message_id`.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub event_id: String,
    /// Event type, also the default routing key.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub event_type: String,
    /// JSON payload.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub payload: String,
    /// Processing status (`pending`, `processing`, `processed`, `error`).
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub status: String,
    /// Retry counter reset by `reset`.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub retry_count: String,
    /// Error text cleared by `reset`.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub error_message: String,
    /// When the event was (last) processed; the time filters use it.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub processed_at: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            event_id: "event_id".into(),
            event_type: "event_type".into(),
            payload: "payload".into(),
            status: "status".into(),
            retry_count: "retry_count".into(),
            error_message: "error_message".into(),
            processed_at: "processed_at".into(),
        }
    }
}
