//! The executor: turns a compiled plan into a checkpointed run (or a rehearsal of one).

pub mod amqp_url;
pub mod apply;
pub mod audit;
pub mod backup;
pub mod batches;
pub mod binds;
pub mod broker;
pub mod claims;
pub mod connection;
pub mod dry_run;
pub mod dump;
pub mod error;
pub mod events;
pub mod freeze;
pub mod gates;
pub mod groups;
pub mod inspect;
pub mod join;
pub mod notify;
pub mod pace;
pub mod pinned;
pub mod redact;
pub mod report;
pub mod rollback;
pub mod sequence;
pub mod state;
pub mod status;
pub mod steps;
pub mod verify;
pub mod window;
pub mod writes;

pub use apply::{ApplyOptions, apply};
pub use connection::Connection;
pub use dry_run::{DryRunOptions, dry_run};
pub use error::RunError;
pub use report::Report;
