//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod apply;
mod habitat;
mod markdown;
mod plans;
mod resilience;
