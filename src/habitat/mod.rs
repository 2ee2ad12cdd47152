//! The Habitat reference world: schema, data generator and reference worker (test and demo infrastructure).

mod error;
mod event_type;
pub mod generator;
pub mod schema;

pub use error::HabitatError;
pub use event_type::EventType;
pub use generator::{GeneratorConfig, GeneratorReport, generate};
