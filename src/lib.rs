//! `replay`: declarative, checkpointed event replays for PostgreSQL + RabbitMQ event stores.

pub mod cli;
pub mod exit_codes;
pub mod habitat;
pub mod plan;

pub use cli::run;
