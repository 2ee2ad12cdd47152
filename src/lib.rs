//! `replay`: declarative, checkpointed event replays for PostgreSQL + RabbitMQ event stores.

pub mod habitat;
