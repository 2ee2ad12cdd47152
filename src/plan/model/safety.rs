//! Safety gates: size cap, low-traffic window, and the bypass of idempotency.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Gates checked in dry-run and again at apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    /// Refuse the run when the selection holds more events than this.
    #[schemars(range(min = 1, max = 100_000_000))]
    pub max_events: u64,
    /// Accept a selection of no events. Without it a run that selects nothing is refused: an
    /// id with a typo or a filter that matches nothing is a mistake far more often than not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Only run inside this low-traffic window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Bypass idempotency (delete the idempotency record so events are processed as new).
    /// Side effects such as emails and payments may repeat; needs `acknowledge`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Written acknowledgement required by `force: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledgement>,
    /// Refuse to run unless the plan takes a backup (`backup.tables` or `backup.pg_dump`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_backup: bool,
    /// Refuse to run unless a `pg_dump` file in this directory is younger than `max_age` (or the
    /// run takes its own backup), e.g. the nightly dump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_dump: Option<RecentDump>,
    /// Refuse to run unless the same plan (same hash) was rehearsed on another target (staging),
    /// proven by the file that rehearsal wrote (`--out`), given as `--rehearsal FILE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<Rehearsal>,
}

/// What a staging rehearsal must have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rehearsal {
    /// A dry-run that said the plan would run.
    DryRun,
    /// A real run that succeeded.
    Apply,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_events: 100_000,
            allow_empty: false,
            window: None,
            force: false,
            acknowledge: None,
            require_backup: false,
            recent_dump: None,
            rehearsal: None,
        }
    }
}

/// The acknowledgement that `force: true` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Acknowledgement {
    /// "I understand side effects may be applied twice."
    DuplicateSideEffects,
}

/// A time-of-day window such as `01:00-05:00` (may wrap past midnight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// `HH:MM-HH:MM` in `timezone`.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub between: String,
    /// IANA time zone name, e.g. `UTC` or `Europe/Berlin`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Days of the week the window is open (`mon` … `sun`); all days when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
}

fn utc() -> String {
    "UTC".into()
}

impl Weekday {
    pub fn name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    pub fn chrono(self) -> chrono::Weekday {
        match self {
            Weekday::Mon => chrono::Weekday::Mon,
            Weekday::Tue => chrono::Weekday::Tue,
            Weekday::Wed => chrono::Weekday::Wed,
            Weekday::Thu => chrono::Weekday::Thu,
            Weekday::Fri => chrono::Weekday::Fri,
            Weekday::Sat => chrono::Weekday::Sat,
            Weekday::Sun => chrono::Weekday::Sun,
        }
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A recent enough dump file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentDump {
    /// Directory holding `*.dump` files (`pg_dump -Fc`).
    pub directory: String,
    /// How old the newest dump may be, e.g. `24h`.
    pub max_age: String,
}
