//! `replay`: declarative, checkpointed event replays for PostgreSQL + RabbitMQ event stores.

// The engine's async traits are used on one task inside this crate; `Send` bounds are not needed.
#![allow(async_fn_in_trait)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod exit_codes;
pub mod plan;
pub mod render;

pub use cli::run;
