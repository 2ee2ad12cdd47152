//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod apply;
mod gates;
mod habitat;
mod plans;
mod resilience;
