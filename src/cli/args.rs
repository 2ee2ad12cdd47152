//! Argument definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative, checkpointed, reviewable event replays for PostgreSQL + RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "replay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the JSON Schema of plans (draft 2020-12).
    Schema(SchemaArgs),
    /// Check plans offline: schema, SQL, templates, parameters, safety settings.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Write the schema to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Plan files to check.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Show the source line and a caret under each finding: `auto` does so on a terminal.
    #[arg(long, value_enum, default_value_t = Snippets::Auto)]
    pub snippets: Snippets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Snippets {
    Auto,
    Always,
    Never,
}
