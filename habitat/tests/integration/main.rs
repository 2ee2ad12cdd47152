//! The `habitat` command line against the real PostgreSQL and RabbitMQ: each test in its own
//! database (`#[sqlx::test]`, or a uniquely named one for the demo) and with its own exchange
//! and queue.

mod demo;
mod generate;
mod help;
mod support;
mod worker;
