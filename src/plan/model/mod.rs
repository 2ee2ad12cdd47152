//! What a plan file says: the typed form of the YAML, with serde and JSON Schema derived from one source.

mod backup;
mod canary;
mod guard;
mod http;
mod notify;
mod params;
mod plan;
mod rate_limit;
mod review;
mod safety;
mod selection;
mod step;
mod target;
mod verify;

pub use backup::{Backup, BackupTable, PgDump};
pub use canary::Canary;
pub use guard::{Guard, GuardAction};
pub use http::{HttpEach, HttpMethod, HttpStep};
pub use notify::{Notify, NotifyOn};
pub use params::{ParamSpec, ParamType};
pub use plan::RawPlan;
pub use rate_limit::RateLimit;
pub use review::Review;
pub use safety::{Acknowledgement, RecentDump, Rehearsal, Safety, Weekday, Window};
pub use selection::{ProcessedBetween, Selection};
pub use step::{
    ExpectRows, PublishEach, PublishStep, PurgeQueueStep, ResetStep, RestoreBackup, RollbackSql,
    RollbackStep, SqlEach, SqlStep, Step, WaitStep,
};
pub use target::{Columns, Target};
pub use verify::{Expectation, Verification};
