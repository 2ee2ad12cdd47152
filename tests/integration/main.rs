//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod apply;
mod ci;
mod faults;
mod gates;
mod inspect;
mod lanes;
mod markdown;
mod pinned;
mod plans;
mod process;
mod resilience;
mod scale;
mod shipped;
mod support;
mod world;
