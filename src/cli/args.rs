//! Argument definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative, checkpointed, reviewable event replays for PostgreSQL + RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "replay", version = env!("REPLAY_VERSION"), about)]
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
    /// Run a plan (or rehearse it with `--dry-run`), with checkpoints; re-running resumes.
    Apply(ApplyArgs),
    /// Join a run in progress as one more executor (from any machine that reaches its database).
    Join(JoinArgs),
    /// Show runs and their progress.
    Status(StatusArgs),
    /// Create the executor's `replay` schema in the target database.
    Init(InitArgs),
    /// Ask a running apply to stop at its next batch boundary (from any machine).
    Stop(StopArgs),
    /// Hold a running run before its next batch, on every executor (from any machine).
    Pause(ControlArgs),
    /// Let a paused run go on.
    Resume(ControlArgs),
    /// Change a running run's pace: `rate=200` events/s, `batch=100` events (before its next batch).
    Set(SetArgs),
    /// Undo a finished or stopped run: its rollback actions and exact-row restores (shown, then
    /// confirmed; `--dry-run` only shows them).
    Rollback(RollbackArgs),
    /// Every apply, stop, rollback and override, with operator, reason, plan hash and outcome.
    Audit(AuditArgs),
    /// Look at events before planning (read-only): counts, a sample, queue depths; `--emit-plan`.
    Inspect(InspectArgs),
    /// Print a shell completion script (`replay completions bash > /etc/bash_completion.d/replay`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `replay man > replay.1`.
    Man,
    /// Preflight: check what the plans' runs will need (connections, TLS, versions, tables,
    /// columns, privileges, the `replay` schema, exchanges, queues, routing, pg_dump).
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Which database: a named target of `replay.toml`, or a URL.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// A named target of the project's `replay.toml` (its database, broker and defaults); wins
    /// over `--database-url` and `DATABASE_URL`.
    #[arg(long, env = "REPLAY_TARGET", value_name = "NAME")]
    pub target: Option<String>,
    /// The project configuration naming the targets (default: `replay.toml` in this directory
    /// or the nearest parent).
    #[arg(long, env = "REPLAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL of the target, when no `--target` is given.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Which database and broker: a named target of `replay.toml`, or URLs.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// RabbitMQ URL of the target, when no `--target` is given (default: the local broker as
    /// guest, except for `replay join`, which never guesses).
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Plans whose runs to check for; without any, the Habitat defaults (events table, audit
    /// table, exchange).
    pub plans: Vec<PathBuf>,
    /// A parameter value, `name=value` (repeatable): the selection's event types give the
    /// routing keys a plan will publish.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// RabbitMQ management API (for the server's version and the bindings); default: the AMQP
    /// host on port 15672, `https` for `amqps`, with the AMQP URL's credentials.
    #[arg(long, value_name = "URL")]
    pub management_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,
}

/// What `replay doctor` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    /// An aligned table, each failure with its fix.
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Statuses to select (repeatable), e.g. `--status error`.
    #[arg(long)]
    pub status: Vec<String>,
    /// Event type patterns with `*` (repeatable).
    #[arg(long = "type")]
    pub event_types: Vec<String>,
    /// Event ids (repeatable).
    #[arg(long = "event-id")]
    pub event_ids: Vec<String>,
    /// Processed within this duration (`24h`).
    #[arg(long)]
    pub within: Option<String>,
    /// Processed longer ago than this duration (`5m`).
    #[arg(long)]
    pub older_than: Option<String>,
    /// Payload field equality, `field=value` (repeatable).
    #[arg(long = "payload", value_name = "FIELD=VALUE")]
    pub payload: Vec<String>,
    /// Only the events a run selected (e.g. `--run RUN --status error`: those that failed again;
    /// with `--emit-plan`, a plan for exactly them).
    #[arg(long, value_name = "RUN_ID", value_parser = run_ref)]
    pub run: Option<RunRef>,
    /// Queues whose depth to show (repeatable).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Events in the sample.
    #[arg(long, default_value_t = 10)]
    pub sample: i64,
    /// Write a plan skeleton with exactly this selection to this file (with `--group K`: for
    /// exactly that failure group's events).
    #[arg(long)]
    pub emit_plan: Option<PathBuf>,
    /// Group the matching events: `error` groups failures by a fingerprint of their error
    /// message (numbers, UUIDs, ids and quoted values normalised away).
    #[arg(long, value_enum, value_name = "FIELD")]
    pub group_by: Option<GroupBy>,
    /// With `--group-by` and `--emit-plan`: the plan selects exactly group K (1 = the largest).
    #[arg(long, value_name = "K", requires_all = ["group_by", "emit_plan"])]
    pub group: Option<usize>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReadFormat::Text)]
    pub format: ReadFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// A parameter value, `name=value` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Rehearse: change nothing, publish nothing, report what would happen. Writes are rehearsed
    /// on the first batch of each step (with a 2 s lock timeout) and the rest is counted.
    #[arg(long)]
    pub dry_run: bool,
    /// With `--dry-run`: rehearse every batch of every step, not just the first (slow on large
    /// selections, and holds row locks until it ends).
    #[arg(long, requires = "dry_run")]
    pub rehearse_all: bool,
    /// Abandon an unfinished run of this plan whose plan or parameters changed, and start anew.
    #[arg(long)]
    pub restart: bool,
    /// Join the run of this plan in progress as one more executor, sharing its batches, instead
    /// of being refused by its lease; start (or resume) it when none is in progress. Same plan,
    /// same parameters, same target.
    #[arg(long, conflicts_with_all = ["dry_run", "restart", "again"])]
    pub join: bool,
    /// Do not ask for confirmation (required when standard input is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Run anew a plan that already succeeded with the same parameters on this target (needs
    /// `--because`; recorded). Without it such a re-run does nothing and exits 0.
    #[arg(long)]
    pub again: bool,
    /// Let a failing safety gate pass; needs `--because`.
    #[arg(long = "override", value_name = "GATE", value_enum)]
    pub overrides: Vec<crate::engine::gates::Gate>,
    /// Why the gates are overridden, or why `--again` (recorded in the run log and the audit row).
    #[arg(long)]
    pub because: Option<String>,
    /// Save what this dry-run (or run) saw as a pinned plan: hash, parameters, target, selection digest.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Hold the run to a pinned plan of this same target (refuse if the plan, parameters, target or
    /// selection changed). `replay apply FILE.json` does the same.
    #[arg(long, value_name = "FILE")]
    pub pinned: Option<PathBuf>,
    /// The proof of a rehearsal on another target (a file written with `--out` there), for
    /// plans with `safety.rehearsal` and for production targets. Evidence only: it pins nothing.
    #[arg(long, value_name = "FILE")]
    pub rehearsal: Option<PathBuf>,
    /// With `--yes` on a production target: its name again, so that no stray `--target` or
    /// `REPLAY_TARGET` applies to production unasked.
    #[arg(long, value_name = "NAME")]
    pub confirm_target: Option<String>,
    /// Events by which the selection may differ from the pinned one.
    #[arg(long, default_value_t = 0)]
    pub tolerance: u64,
    /// Passing faults (a lost connection, a restarting broker) retried from the last checkpoint
    /// before the run stops as `interrupted` (exit 75).
    #[arg(long, value_name = "N", default_value_t = crate::engine::apply::DEFAULT_RETRIES)]
    pub retries: u32,
    /// How long this executor's lease on the run lasts without a heartbeat (another executor can
    /// take the run over after that).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = lease_duration)]
    pub lease: std::time::Duration,
    #[command(flatten)]
    pub target: TargetArgs,
    /// RabbitMQ management API, for the dry-run's `routing` gate; default: the AMQP host on port
    /// 15672, with the AMQP URL's credentials.
    #[arg(long, value_name = "URL")]
    pub management_url: Option<String>,
    /// Who runs this (recorded); defaults to `$REPLAY_OPERATOR` or `$USER`.
    #[arg(long)]
    pub operator: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Log format on standard error (progress lines, step events).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The run to join (its id, or the first 6 or more characters of it).
    #[arg(value_parser = run_ref)]
    pub run: RunRef,
    /// Passing faults retried in a row before this executor stops (exit 75).
    #[arg(long, value_name = "N", default_value_t = crate::engine::apply::DEFAULT_RETRIES)]
    pub retries: u32,
    /// How long this executor's claims last without a heartbeat.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = lease_duration)]
    pub lease: std::time::Duration,
    /// On a production target: its name again (`replay join` asks nobody).
    #[arg(long, value_name = "NAME")]
    pub confirm_target: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Who runs this (recorded); defaults to `$REPLAY_OPERATOR` or `$USER`.
    #[arg(long)]
    pub operator: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One run (its id, or the first 6 or more characters of it); all recent runs when omitted.
    #[arg(value_parser = run_ref)]
    pub run: Option<RunRef>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReadFormat::Text)]
    pub format: ReadFormat,
    /// Keep showing it, refreshed, until the runs shown are no longer running (or Ctrl-C); with
    /// `--format json`, one JSON document per line.
    #[arg(long)]
    pub watch: bool,
    /// How often `--watch` refreshes, e.g. `2s`.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration, requires = "watch")]
    pub every: std::time::Duration,
    #[command(flatten)]
    pub target: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub target: DatabaseArgs,
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
    /// Output format: `github` writes workflow annotations, `sarif` a SARIF 2.1.0 log for code
    /// scanning.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
    /// Refuse SQL functions outside the allowlist (docs/strict-sql.md) and statements whose
    /// effects a rollback does not undo: for plans from untrusted pull requests.
    #[arg(long)]
    pub strict_sql: bool,
    /// Show the source line and a caret under each finding: `auto` does so on a terminal.
    #[arg(long, value_enum, default_value_t = Snippets::Auto)]
    pub snippets: Snippets,
}

/// Formats of a run's report (`apply`, `join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    /// A pull-request comment.
    Markdown,
}

/// What `inspect --group-by` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// The fingerprint of the error message.
    Error,
}

/// Formats of what `status` and `audit` read, and of `rollback`'s report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadFormat {
    Text,
    /// One JSON document.
    Json,
}

/// Formats of `validate`'s findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    /// GitHub Actions workflow annotations (`::error file=…,line=…::…`).
    Github,
    /// A SARIF 2.1.0 log, for code scanning.
    Sarif,
}

/// Formats of the log on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Snippets {
    Auto,
    Always,
    Never,
}

/// A run as the operator names it: its id, or the first 6 or more hexadecimal characters of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef(pub String);

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn run_ref(text: &str) -> Result<RunRef, String> {
    let hex = text.chars().filter(|c| *c != '-').count();
    if text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') && (6..=32).contains(&hex) {
        Ok(RunRef(text.to_string()))
    } else {
        Err("a run id, or at least its first 6 hexadecimal characters".into())
    }
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The run to stop (its id, or the first 6 or more characters of it).
    #[arg(value_parser = run_ref)]
    pub run: RunRef,
    /// Return at once instead of waiting for the run to stop.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the run to stop, e.g. `2m`.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration)]
    pub timeout: std::time::Duration,
    /// Who stops the run (recorded); defaults to `$REPLAY_OPERATOR` or `$USER`.
    #[arg(long)]
    pub operator: Option<String>,
    #[command(flatten)]
    pub target: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The run (its id, or the first 6 or more characters of it).
    #[arg(value_parser = run_ref)]
    pub run: RunRef,
    /// Who does it (recorded in the run log); defaults to `$REPLAY_OPERATOR` or `$USER`.
    #[arg(long)]
    pub operator: Option<String>,
    #[command(flatten)]
    pub target: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// `rate=N` (events per second over the run, 1 to 100000) and/or `batch=N` (events per
    /// batch, 1 to 10000), as in the plan's `rate_limit`.
    #[arg(required = true, value_name = "SETTING", value_parser = setting)]
    pub settings: Vec<Setting>,
}

/// One `key=value` of `replay set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Rate(u32),
    Batch(u32),
}

fn setting(text: &str) -> Result<Setting, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write `rate=N` or `batch=N`"))?;
    let number = |max: u32| {
        value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("`{key}` takes a whole number from 1 to {max}, not `{value}`"))
    };
    match key.trim() {
        "rate" | "per_second" => number(100_000).map(Setting::Rate),
        "batch" | "batch_size" => number(10_000).map(Setting::Batch),
        other => Err(format!(
            "unknown setting `{other}`: `rate` (events per second) or `batch` (events per batch)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo (its id, or the first 6 or more characters of it).
    #[arg(value_parser = run_ref)]
    pub run: RunRef,
    /// Restore rows even where they changed after the run ended.
    #[arg(long)]
    pub force: bool,
    /// Show what the rollback would restore, and which rows it would keep because they changed
    /// since the run wrote them; write nothing. The actions run in a transaction that is rolled
    /// back (with a 2 s lock timeout).
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required when standard input is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Who rolls back (recorded); defaults to `$REPLAY_OPERATOR` or `$USER`.
    #[arg(long)]
    pub operator: Option<String>,
    #[command(flatten)]
    pub target: DatabaseArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReadFormat::Text)]
    pub format: ReadFormat,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many runs to list, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReadFormat::Text)]
    pub format: ReadFormat,
    #[command(flatten)]
    pub target: DatabaseArgs,
}

/// A lease of at least a second: shorter, the heartbeat could not keep it.
fn lease_duration(text: &str) -> Result<std::time::Duration, String> {
    let lease = crate::plan::duration::parse(text)?;
    if lease < std::time::Duration::from_secs(1) {
        return Err(format!(
            "`{text}` is too short for a lease; give at least `1s`"
        ));
    }
    Ok(lease)
}

/// A duration as plans write them (`30s`, `2m`).
fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::plan::duration::parse(text)
}
