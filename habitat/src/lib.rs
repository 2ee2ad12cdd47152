//! The Habitat reference world: schema, data generator and reference worker, for `replay`'s tests,
//! benchmarks and demo. The `replay` crate does not depend on it.

pub mod admin;
pub mod cli;
pub mod demo;
mod error;
mod event_type;
pub mod generator;
mod handlers;
pub mod http;
pub mod publisher;
pub mod schema;
pub mod scratch;
pub mod worker;

pub use error::HabitatError;
pub use event_type::EventType;
pub use generator::{GeneratorConfig, GeneratorReport, generate, replace};
pub use publisher::{OutgoingEvent, Publisher};
pub use worker::{FailureMode, Worker, WorkerConfig, WorkerHandle, WorkerStats};
