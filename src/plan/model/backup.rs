//! The backup taken before the first write.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Snapshots of the rows the run will touch, stored in the executor's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Tables to snapshot before any write.
    #[schemars(length(min = 1))]
    pub tables: Vec<BackupTable>,
    /// Also write a `pg_dump -Fc` file of the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump: Option<PgDump>,
}

/// One table to snapshot. The events table without `where` snapshots exactly the selected events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTable {
    /// Table name, optionally schema-qualified.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"))]
    pub table: String,
    /// Condition choosing the rows (SQL with `:param` binds). Omit for the events table.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Primary-key column used to restore exactly the snapshotted rows.
    #[serde(default = "default_key")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub key: String,
    /// Snapshot the whole table (needed when `where` is omitted on a table other than the events table).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_table: bool,
}

fn default_key() -> String {
    "id".into()
}

/// A `pg_dump -Fc` of the database written before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgDump {
    /// Directory for the dump file (`pre-replay-<run id>.dump`).
    pub directory: String,
}
