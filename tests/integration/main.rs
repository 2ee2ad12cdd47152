//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod apply;
mod gates;
mod habitat;
mod inspect;
mod markdown;
mod pinned;
mod plans;
mod resilience;
mod shipped;
mod support;
