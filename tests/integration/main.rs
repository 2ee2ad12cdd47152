//! Integration tests against the real PostgreSQL and RabbitMQ on this machine.

mod apply;
mod canary;
mod ci;
mod doctor;
mod faults;
mod gates;
mod groups;
mod guards;
mod http;
mod inspect;
mod lanes;
mod markdown;
mod notify;
mod packaging;
mod permissions;
mod pinned;
mod plans;
mod process;
mod resilience;
mod runs;
mod scale;
mod shipped;
mod support;
mod targets;
mod tls;
mod world;
