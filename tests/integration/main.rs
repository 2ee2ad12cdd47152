//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod habitat;
mod plans;
