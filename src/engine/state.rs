//! The executor's own records in the `replay` schema: migrations, leases, runs, steps, the run
//! log, captured values and verifications. Every `replay.*` query of a run lives here or in the
//! journal (`writes.rs`), backups and rollback.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::engine::error::RunError;
use crate::engine::redact::{redact_url, scrub};
use crate::engine::status::{RunStatus, StepStatus};
use crate::plan::Plan;

/// Connects to the target database; the error never shows the password.
/// The server's `system_identifier` (readable by any role): what tells one PostgreSQL server
/// from another behind the same address.
pub async fn system_identifier(url: &str) -> Result<Option<String>, RunError> {
    let pool = connect(url).await?;
    let id =
        sqlx::query_scalar::<_, String>("SELECT system_identifier::text FROM pg_control_system()")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
    pool.close().await;
    Ok(id)
}

pub async fn connect(url: &str) -> Result<PgPool, RunError> {
    connect_with(url, None, 4).await
}

/// Connects an executor. A session of it that sits idle inside a transaction longer than its
/// lease (a process paused by SIGSTOP, say) is ended by the server, so its row locks never hold
/// up the executor that takes the run over.
/// `batches` is how many batch transactions the run holds at once; the heartbeat, the stop
/// watcher and the run's own records get connections besides those.
pub async fn connect_executor(
    url: &str,
    lease: Duration,
    batches: u32,
) -> Result<PgPool, RunError> {
    connect_with(url, Some(lease), batches + 3).await
}

/// How long a first connection may take to open its socket before the server is said to be
/// unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(2);

async fn connect_with(
    url: &str,
    idle_in_transaction: Option<Duration>,
    connections: u32,
) -> Result<PgPool, RunError> {
    let failed = |e: sqlx::Error| RunError::Connect {
        url: redact_url(url),
        message: scrub(&crate::engine::error::describe_sqlx(&e), url),
    };
    let mut options: sqlx::postgres::PgConnectOptions = url.parse().map_err(failed)?;
    // libpq: `sslmode=require` with a root certificate given behaves as `verify-ca`.
    let root_cert = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("sslrootcert=")))
        || std::env::var_os("PGSSLROOTCERT").is_some();
    if root_cert && matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::Require) {
        options = options.ssl_mode(sqlx::postgres::PgSslMode::VerifyCa);
    }
    // So that a DBA sees who holds a connection (and a test can terminate exactly these).
    if options.get_application_name().is_none() {
        options = options.application_name("replay");
    }
    if let Some(limit) = idle_in_transaction {
        options = options.options([(
            "idle_in_transaction_session_timeout",
            limit.as_millis().to_string(),
        )]);
    }
    // A server that is not there is said at once, naming it: the pool would retry until its
    // acquire timeout and then say only "pool timed out".
    if options.get_socket().is_none() && !options.get_host().starts_with('/') {
        let (host, port) = (options.get_host().to_string(), options.get_port());
        let reached = tokio::time::timeout(
            REACH_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await;
        let unreachable = |why: String| RunError::Connect {
            url: redact_url(url),
            message: format!("cannot reach {host}:{port}: {why}"),
        };
        match reached {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}",
                    crate::plan::duration::format(REACH_TIMEOUT)
                )));
            }
        }
    }
    PgPoolOptions::new()
        .max_connections(connections)
        // Short: a database that is gone is a passing fault the driver retries with backoff.
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(failed)
}

/// Whether this pool's connections to the database are encrypted (`pg_stat_ssl`).
pub async fn encryption(pool: &PgPool) -> Result<crate::engine::report::Encryption, RunError> {
    let row: Option<(bool, Option<String>)> =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(pool)
            .await
            .map_err(RunError::db("reading the connection's encryption"))?;
    let (encrypted, protocol) = row.unwrap_or((false, None));
    Ok(crate::engine::report::Encryption {
        encrypted,
        protocol: protocol.filter(|_| encrypted),
    })
}

/// Creates or upgrades the `replay` schema. A schema that is up to date is left alone without
/// running the migrator, whose `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the database even
/// when the schema exists: so a role without it (see `docs/least-privilege.md`) can apply.
pub async fn migrate(pool: &PgPool) -> Result<(), RunError> {
    if matches!(migrations(pool).await, Ok(Migrations::UpToDate { .. })) {
        return Ok(());
    }
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("replay._sqlx_migrations");
    migrator.create_schema("replay");
    migrator.run(pool).await.map_err(|e| RunError::Database {
        doing: "creating the `replay` schema".into(),
        message: e.to_string(),
        transient: false,
    })
}

/// How far the `replay` schema is migrated, against the migrations this build carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrations {
    /// No `replay` schema (or no migration record in it).
    Missing,
    /// Some of this build's migrations are not applied (or an applied one differs).
    Behind {
        applied: usize,
        known: usize,
    },
    UpToDate {
        applied: usize,
    },
}

pub async fn migrations(pool: &PgPool) -> Result<Migrations, RunError> {
    let migrator = sqlx::migrate!("./migrations");
    let known: Vec<(i64, Vec<u8>)> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('replay._sqlx_migrations')::text")
            .fetch_one(pool)
            .await
            .map_err(RunError::db("looking for the `replay` schema"))?;
    if exists.is_none() {
        return Ok(Migrations::Missing);
    }
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT version, checksum FROM replay._sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the `replay` schema's migrations"))?;
    let done = known.iter().filter(|m| applied.contains(m)).count();
    Ok(match done == known.len() {
        true => Migrations::UpToDate {
            applied: applied.len(),
        },
        false => Migrations::Behind {
            applied: done,
            known: known.len(),
        },
    })
}

/// How long an executor's lease lasts without a heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// An unfinished run of a plan.
#[derive(Debug, Clone)]
pub struct OpenRun {
    pub id: uuid::Uuid,
    pub plan_hash: String,
    pub params_hash: String,
    pub status: RunStatus,
    pub selected: Option<i64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The error that ended the last attempt (the cause of a rollback in progress).
    pub error: Option<String>,
    /// The digest of the frozen selection's keys, recorded with its size (none for runs frozen
    /// before it was recorded).
    pub selection_digest: Option<String>,
}

/// The lock that a batch holds shared while it runs and a change of the run's status takes
/// exclusively: a status is recorded only once the batches in flight (of every executor) have
/// committed, and a batch that starts after it sees it. An advisory lock, not a row lock: its
/// queue is fair, so batches side by side never starve the change (a row held `FOR SHARE` by
/// a stream of batches would), and it works behind a transaction pooler.
macro_rules! run_batches_lock {
    () => {
        "hashtextextended('replay:batches:' || $1::text, 0)"
    };
}

/// The columns `open_run_of` reads, in order (a macro, so queries stay static strings).
macro_rules! run_columns {
    () => {
        "id, plan_hash, params_hash, status, selected_count, started_at, error, selection_digest"
    };
}

fn open_run_of(r: &sqlx::postgres::PgRow) -> OpenRun {
    OpenRun {
        id: r.get(0),
        plan_hash: r.get(1),
        params_hash: r.get(2),
        status: r.get(3),
        selected: r.get(4),
        started_at: r.get(5),
        error: r.get(6),
        selection_digest: r.get(7),
    }
}

/// This executor's hold on a run: the fencing token proves ownership in every checkpoint.
#[derive(Debug, Clone)]
pub struct Lease {
    pub run_id: uuid::Uuid,
    pub token: i64,
    pub owner: String,
    pub ttl: Duration,
    /// Set by the heartbeat when it stops the run: the lease was taken over, or could not be
    /// renewed before it ran out.
    lapse: std::sync::Arc<std::sync::OnceLock<Lapse>>,
}

/// Why the heartbeat stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// Another executor holds the run now.
    TakenOver,
    /// The database could not be reached to renew it before it ran out.
    Expired,
}

/// Who this executor is, for `lease_owner` and the run log: `host:pid`.
pub fn executor_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The boot and PID namespace this executor runs in: pids mean something only within them.
pub(crate) fn origin() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_string())
        .unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match boot.is_empty() || namespace.is_empty() {
        // Without them pids cannot be compared: never take a lease over early.
        true => format!("unknown:{}", uuid::Uuid::new_v4()),
        false => format!("{boot}/{namespace}"),
    }
}

/// What `acquire` found.
pub enum Acquired {
    /// A new run, or an unfinished one of the same plan and parameters to resume.
    Run { run: OpenRun, lease: Lease },
    /// An unfinished run of the plan whose plan or parameters differ.
    Changed(OpenRun),
    /// The run is in progress under another executor's live lease, with the same plan and
    /// parameters: join it (`--join`).
    Join(OpenRun),
    /// The same plan with the same parameters already succeeded on this target.
    Succeeded {
        run_id: uuid::Uuid,
        finished_at: chrono::DateTime<chrono::Utc>,
    },
}

/// Finds the plan's unfinished run (or creates one) and takes its lease. Creation is serialised
/// per plan by a transaction-scoped advisory lock, which works behind a transaction pooler.
/// How `acquire` may take a run: what the operator asked for.
#[derive(Debug, Clone, Copy)]
pub struct Taking<'a> {
    /// The lease's time without a heartbeat.
    pub ttl: Duration,
    /// Abandon an unfinished run whose plan or parameters differ (`--restart`).
    pub restart: bool,
    /// Run anew what already succeeded (`--again`).
    pub again: bool,
    /// The operator's reason, for an abandoned rollback.
    pub because: Option<&'a str>,
    /// Join the run in progress instead of being refused by its lease (`--join`).
    pub join: bool,
    /// The id a new run takes: the one its operator confirmed.
    pub new_id: Option<uuid::Uuid>,
}

pub async fn acquire(
    pool: &PgPool,
    plan: &Plan,
    operator: &str,
    taking: Taking<'_>,
) -> Result<Acquired, RunError> {
    let Taking {
        ttl,
        restart,
        again,
        because,
        join,
        new_id,
    } = taking;
    let doing = "taking the run's lease";
    let owner = executor_name();
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('replay:' || $1, 0))")
        .bind(&plan.raw.name)
        .execute(&mut *tx)
        .await
        .map_err(RunError::db(doing))?;
    let open = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        ", lease_expires_at > clock_timestamp() AS live, lease_owner, lease_origin, stop_requested FROM replay.runs \
         WHERE plan_name = $1 AND status = ANY($2) ORDER BY started_at DESC LIMIT 1 FOR UPDATE"
    ))
    .bind(&plan.raw.name)
    .bind(RunStatus::resumable_names())
    .fetch_optional(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    let mut resume = None;
    if let Some(row) = open {
        let run = open_run_of(&row);
        // By name: `run_columns!` comes first and may grow.
        let live = row.get::<Option<bool>, _>("live").unwrap_or(false);
        let holder: Option<String> = row.get("lease_owner");
        let same_origin =
            row.get::<Option<String>, _>("lease_origin").as_deref() == Some(origin().as_str());
        let same = run.plan_hash == plan.hash && run.params_hash == plan.params_hash;
        let stop_requested = row.get::<bool, _>("stop_requested");
        if live && !(same_origin && holder.as_deref().is_some_and(died_here)) {
            return match (join, same) {
                (true, true) => Ok(Acquired::Join(run)),
                (true, false) => Ok(Acquired::Changed(run)),
                (false, _) => Err(RunError::Locked {
                    plan: plan.raw.name.clone(),
                    run_id: run.id.to_string(),
                    holder: holder.unwrap_or_default(),
                }),
            };
        }
        match (same, restart) {
            (true, _) if join && (!run.status.joinable() || stop_requested) => {
                return Err(RunError::Refused(format!(
                    "run `{}` of plan `{}` is {}{}; an executor that joins never resumes it: \
                     resume it with `replay apply` of the plan, without `--join`",
                    run.id,
                    plan.raw.name,
                    run.status,
                    if stop_requested {
                        " and a stop was requested"
                    } else {
                        ""
                    }
                )));
            }
            (true, _) => resume = Some(run),
            (false, true) if run.status == RunStatus::RollingBack && because.is_none() => {
                return Err(RunError::Refused(format!(
                    "run `{}` is rolling back; finish it with `replay apply` of its original plan or \
                     `replay rollback {}`. Its rollback never committed, so its rows are as its steps \
                     left them; to abandon it anyway, pass `--restart --because \"…\"` (audited)",
                    run.id, run.id
                )));
            }
            (false, true) => {
                // As any change of status: after the batches in flight, before any other.
                sqlx::query(concat!(
                    "SELECT pg_advisory_xact_lock(",
                    run_batches_lock!(),
                    ")"
                ))
                .bind(run.id)
                .execute(&mut *tx)
                .await
                .map_err(RunError::db(doing))?;
                sqlx::query(
                    // Its lease goes with it (and its token moves on, fencing out any late
                    // writer), so that `replay rollback` can take the run at once.
                    "UPDATE replay.runs SET status = $2, error = 'abandoned by --restart', \
                     lease_token = lease_token + 1, lease_expires_at = NULL, \
                     finished_at = now(), updated_at = now() WHERE id = $1",
                )
                .bind(run.id)
                .bind(RunStatus::Abandoned)
                .execute(&mut *tx)
                .await
                .map_err(RunError::db(doing))?;
                insert_log(
                    &mut tx,
                    run.id,
                    "abandoned",
                    None,
                    serde_json::json!({"by": operator, "because": because, "was": run.status}),
                )
                .await
                .map_err(RunError::db(doing))?;
            }
            (false, false) => return Ok(Acquired::Changed(run)),
        }
    }
    if resume.is_none() && !again {
        // Re-running what already succeeded would do it all twice.
        if let Some((run_id, finished_at)) = succeeded(&mut *tx, plan).await? {
            return Ok(Acquired::Succeeded {
                run_id,
                finished_at,
            });
        }
    }
    let run = match resume {
        Some(run) => run,
        None => create_run(&mut tx, plan, operator, new_id).await?,
    };
    let token: i64 = sqlx::query_scalar(
        "UPDATE replay.runs SET lease_token = lease_token + 1, lease_owner = $2, \
         lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
         status = $4, stop_requested = false, updated_at = now(), lease_origin = $5 \
         WHERE id = $1 RETURNING lease_token",
    )
    .bind(run.id)
    .bind(&owner)
    .bind(ttl.as_millis() as f64)
    // A rollback in progress stays one; anything else runs (a stop asked of an earlier attempt is spent).
    .bind(match run.status {
        RunStatus::RollingBack => RunStatus::RollingBack,
        _ => RunStatus::Running,
    })
    .bind(origin())
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    insert_log(
        &mut tx,
        run.id,
        "lease",
        None,
        serde_json::json!({"executor": owner, "token": token, "operator": operator}),
    )
    .await
    .map_err(RunError::db(doing))?;
    tx.commit().await.map_err(RunError::db(doing))?;
    Ok(Acquired::Run {
        lease: Lease {
            run_id: run.id,
            token,
            owner,
            ttl,
            lapse: Default::default(),
        },
        run,
    })
}

/// The latest run of this plan (same identity, same parameters) that succeeded, and when.
pub async fn succeeded<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    plan: &Plan,
) -> Result<Option<(uuid::Uuid, chrono::DateTime<chrono::Utc>)>, RunError> {
    sqlx::query_as(
        "SELECT id, coalesce(finished_at, updated_at) FROM replay.runs \
         WHERE plan_name = $1 AND plan_hash = $2 AND params_hash = $3 AND status = $4 \
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(&plan.raw.name)
    .bind(&plan.hash)
    .bind(&plan.params_hash)
    .bind(RunStatus::Succeeded)
    .fetch_optional(conn)
    .await
    .map_err(RunError::db("looking for a run of the plan that succeeded"))
}

/// Takes the lease on a given run (for `replay rollback RUN`), refusing when it is live elsewhere.
pub async fn acquire_run(
    pool: &PgPool,
    run_id: uuid::Uuid,
    ttl: Duration,
) -> Result<Lease, RunError> {
    let owner = executor_name();
    let row = sqlx::query(
        "UPDATE replay.runs SET lease_token = lease_token + 1, lease_owner = $2, \
         lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond', lease_origin = $4 \
         WHERE id = $1 AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp()) \
         RETURNING lease_token",
    )
    .bind(run_id)
    .bind(&owner)
    .bind(ttl.as_millis() as f64)
    .bind(origin())
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("taking the run's lease"))?;
    match row {
        Some(r) => Ok(Lease {
            run_id,
            token: r.get(0),
            owner,
            ttl,
            lapse: Default::default(),
        }),
        None => Err(RunError::Locked {
            plan: plan_name(pool, run_id).await?.unwrap_or_default(),
            run_id: run_id.to_string(),
            holder: lease_holder(pool, run_id).await?.unwrap_or_default(),
        }),
    }
}

/// Refuses as [`acquire_run`] would when the run's lease is live elsewhere, without taking it
/// (for a preview of `replay rollback RUN`, which writes nothing).
pub async fn lease_free(pool: &PgPool, run_id: uuid::Uuid) -> Result<(), RunError> {
    let free: Option<bool> = sqlx::query_scalar(
        "SELECT lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp() \
         FROM replay.runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("reading the run's lease"))?;
    match free {
        Some(false) => Err(RunError::Locked {
            plan: plan_name(pool, run_id).await?.unwrap_or_default(),
            run_id: run_id.to_string(),
            holder: lease_holder(pool, run_id).await?.unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

/// Who holds the run's lease (`host:pid`), if anyone.
async fn lease_holder(pool: &PgPool, run_id: uuid::Uuid) -> Result<Option<String>, RunError> {
    sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM replay.runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
        .map_err(RunError::db("reading the run's lease"))
}

/// The run as it is now, and its lease's token when the lease is free to take (never taken,
/// given up, run out, or held by a process of this machine that is gone); in one read.
pub async fn run_and_free_lease(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<(OpenRun, Option<FreeLease>), RunError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        ", lease_expires_at > clock_timestamp() AS live, lease_owner, lease_origin, lease_token \
         FROM replay.runs WHERE id = $1"
    ))
    .bind(run_id)
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading the run"))?;
    let live = row.get::<Option<bool>, _>("live").unwrap_or(false);
    let holder: Option<String> = row.get("lease_owner");
    let died = row.get::<Option<String>, _>("lease_origin").as_deref() == Some(origin().as_str())
        && holder.as_deref().is_some_and(died_here);
    let free = FreeLease {
        token: row.get("lease_token"),
        holder_died: died,
    };
    Ok((open_run_of(&row), (!live || died).then_some(free)))
}

/// A run's lease seen free: its token then, and whether its holder died on this machine (else
/// it ran out).
#[derive(Debug, Clone, Copy)]
pub struct FreeLease {
    pub token: i64,
    pub holder_died: bool,
}

/// Takes over the lease of a run in progress whose lease was seen free (see
/// [`run_and_free_lease`]), for an executor that joined it: only if nobody took or renewed it
/// since (checked in the same statement), the run is still joinable and no stop was requested.
/// Never creates a run, never resumes a stopped or failed one.
pub async fn take_over(
    pool: &PgPool,
    run_id: uuid::Uuid,
    seen: FreeLease,
    ttl: Duration,
) -> Result<Option<Lease>, RunError> {
    let doing = "taking over the run's lease";
    let owner = executor_name();
    let joinable: Vec<&str> = RunStatus::ALL
        .iter()
        .filter(|s| s.joinable())
        .map(|s| s.as_str())
        .collect();
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    let token: Option<i64> = sqlx::query_scalar(
        "UPDATE replay.runs SET lease_token = lease_token + 1, lease_owner = $3, \
         lease_expires_at = clock_timestamp() + $4 * interval '1 millisecond', lease_origin = $5, \
         status = CASE WHEN status = $6 THEN status ELSE $7 END, updated_at = now() \
         WHERE id = $1 AND lease_token = $2 AND status = ANY($8) AND NOT stop_requested \
           AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp() OR $9) \
         RETURNING lease_token",
    )
    .bind(run_id)
    .bind(seen.token)
    .bind(&owner)
    .bind(ttl.as_millis() as f64)
    .bind(origin())
    .bind(RunStatus::RollingBack)
    .bind(RunStatus::Running)
    .bind(&joinable)
    .bind(seen.holder_died)
    .fetch_optional(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    let Some(token) = token else {
        return Ok(None);
    };
    insert_log(
        &mut tx,
        run_id,
        "lease",
        None,
        serde_json::json!({"executor": owner, "token": token, "taken_over_by_a_joined_executor": true}),
    )
    .await
    .map_err(RunError::db(doing))?;
    tx.commit().await.map_err(RunError::db(doing))?;
    Ok(Some(Lease {
        run_id,
        token,
        owner,
        ttl,
        lapse: Default::default(),
    }))
}

/// The gates the run's operator overrode when it started (`--override … --because …`): an
/// executor that joins, or takes the run over, holds the run to them, not to its own flags.
pub async fn overridden_gates(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<Vec<crate::engine::gates::Gate>, RunError> {
    use clap::ValueEnum;
    Ok(logged_details(pool, run_id, "override")
        .await?
        .iter()
        .filter_map(|d| d.get("gate")?.as_str().map(str::to_string))
        .filter_map(|g| crate::engine::gates::Gate::from_str(&g, true).ok())
        .collect())
}

/// Another unfinished run whose frozen selection shares events with this one's.
#[derive(Debug, Clone)]
pub struct Overlap {
    pub run_id: uuid::Uuid,
    pub plan: String,
    pub status: RunStatus,
    pub shared: i64,
}

/// Checks the run's frozen selection against the frozen selections of every unfinished run on
/// the same events table, in PostgreSQL (a hash join over the selections, never in memory).
/// Checks are serialised by a transaction-scoped advisory lock, and each run checks after its
/// own selection is committed, so of two overlapping runs starting at once at least one sees the
/// other. A run that passes (or is let through) is recorded as checked, so a resume does not
/// judge it again.
pub async fn check_overlap(
    pool: &PgPool,
    run_id: uuid::Uuid,
    events_table: &str,
    record: impl FnOnce(&[Overlap]) -> bool,
) -> Result<Vec<Overlap>, RunError> {
    let doing = "checking the selection against unfinished runs";
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('replay:overlap', 0))")
        .execute(&mut *tx)
        .await
        .map_err(RunError::db(doing))?;
    let rows = sqlx::query(
        "WITH others AS MATERIALIZED ( \
            SELECT id, plan_name, status FROM replay.runs \
            WHERE id <> $1 AND status = ANY($2) AND selected_count IS NOT NULL \
              AND plan_document -> 'target' ->> 'events_table' = $3) \
         SELECT o.id, o.plan_name, o.status, count(*) \
         FROM others o \
         JOIN replay.selection theirs ON theirs.run_id = o.id \
         JOIN replay.selection mine ON mine.run_id = $1 AND mine.event_id = theirs.event_id \
         GROUP BY o.id, o.plan_name, o.status ORDER BY count(*) DESC",
    )
    .bind(run_id)
    .bind(RunStatus::resumable_names())
    .bind(events_table)
    .fetch_all(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    let overlaps: Vec<Overlap> = rows
        .iter()
        .map(|r| Overlap {
            run_id: r.get(0),
            plan: r.get(1),
            status: r.get(2),
            shared: r.get(3),
        })
        .collect();
    if record(&overlaps) {
        insert_log(
            &mut tx,
            run_id,
            "overlap_checked",
            None,
            serde_json::json!({"overlaps": overlaps.iter().map(|o| serde_json::json!({"run": o.run_id, "plan": o.plan, "shared": o.shared})).collect::<Vec<_>>()}),
        )
        .await
        .map_err(RunError::db(doing))?;
    }
    tx.commit().await.map_err(RunError::db(doing))?;
    Ok(overlaps)
}

/// Whether a lease holder ran on this machine and its process is gone (killed, crashed): its lease
/// need not be waited out. A holder elsewhere, or alive, keeps its lease until it expires.
pub(crate) fn died_here(holder: &str) -> bool {
    let me = executor_name();
    let (Some((host, pid)), Some((my_host, _))) = (holder.rsplit_once(':'), me.rsplit_once(':'))
    else {
        return false;
    };
    host == my_host
        && pid.parse::<u32>().is_ok_and(|pid| {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
        })
}

impl Lease {
    /// Renews the lease every third of its time; when it finds the lease taken, it cancels the
    /// run (whose next checkpoint would fail anyway).
    pub fn heartbeat(
        &self,
        pool: PgPool,
        cancel: crate::engine::steps::Cancel,
    ) -> tokio::task::JoinHandle<()> {
        let lease = self.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(lease.ttl / 3).await;
                // Timed from the request, and bounded: a black-holed connection must not hold the
                // heartbeat past the point where it has to stop the executor.
                let sent = tokio::time::Instant::now();
                let answer = tokio::time::timeout(lease.ttl / 3, lease.renew(&pool))
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut));
                match answer {
                    Ok(true) => renewed = sent,
                    Ok(false) => {
                        tracing::error!(run = %lease.run_id, "the lease was taken over by another executor; stopping");
                        let _ = lease.lapse.set(Lapse::TakenOver);
                        cancel.cancel();
                        return;
                    }
                    // A passing fault: the next beat tries again; checkpoints stay fenced. Work
                    // outside PostgreSQL (publishing) is not, so once the lease may have run out
                    // this executor stops on its own.
                    Err(e) if renewed.elapsed() >= lease.ttl * 2 / 3 => {
                        tracing::error!(error = %e, run = %lease.run_id, "cannot renew the lease before it runs out; stopping");
                        let _ = lease.lapse.set(Lapse::Expired);
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
                }
            }
        })
    }

    /// Why the heartbeat stopped the run, if it did.
    pub fn lapse(&self) -> Option<Lapse> {
        self.lapse.get().copied()
    }

    async fn renew(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE replay.runs SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond' \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.run_id)
        .bind(self.token)
        .bind(self.ttl.as_millis() as f64)
        .execute(pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Gives the run up for another executor at once (a clean exit).
    pub async fn release(&self, pool: &PgPool) {
        let _ = sqlx::query(
            "UPDATE replay.runs SET lease_expires_at = NULL, lease_owner = NULL WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.run_id)
        .bind(self.token)
        .execute(pool)
        .await;
    }
}

/// Proves, inside a batch's transaction, that this executor still owns the run, and reads
/// whether `replay stop` asked it to stop. The row lock holds off a take-over until the batch
/// commits.
pub async fn fence(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    token: i64,
) -> Result<bool, RunError> {
    let row = sqlx::query(
        "SELECT stop_requested, lease_token = $2 AND lease_expires_at > clock_timestamp() \
         FROM replay.runs WHERE id = $1 FOR SHARE",
    )
    .bind(run_id)
    .bind(token)
    .fetch_one(&mut *conn)
    .await
    .map_err(RunError::db("checking the run's lease"))?;
    if !row.get::<Option<bool>, _>(1).unwrap_or(false) {
        return Err(RunError::LeaseLost {
            run_id: run_id.to_string(),
        });
    }
    Ok(row.get(0))
}

pub async fn open_run(pool: &PgPool, plan: &str) -> Result<Option<OpenRun>, RunError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM replay.runs WHERE plan_name = $1 AND status = ANY($2) ORDER BY started_at DESC LIMIT 1"
    ))
    .bind(plan)
    .bind(RunStatus::resumable_names())
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("looking for an unfinished run"))?;
    Ok(row.as_ref().map(open_run_of))
}

/// The run as it is now (each attempt of the driver starts from this).
pub async fn run(pool: &PgPool, run_id: uuid::Uuid) -> Result<OpenRun, RunError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM replay.runs WHERE id = $1"
    ))
    .bind(run_id)
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading the run"))?;
    Ok(open_run_of(&row))
}

async fn plan_name(pool: &PgPool, run_id: uuid::Uuid) -> Result<Option<String>, RunError> {
    sqlx::query_scalar("SELECT plan_name FROM replay.runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(RunError::db("reading the run"))
}

async fn create_run(
    tx: &mut sqlx::PgConnection,
    plan: &Plan,
    operator: &str,
    id: Option<uuid::Uuid>,
) -> Result<OpenRun, RunError> {
    let id = id.unwrap_or_else(uuid::Uuid::new_v4);
    let started_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO replay.runs (id, plan_name, plan_hash, params_hash, params, plan_document, operator, reason, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING started_at",
    )
    .bind(id)
    .bind(&plan.raw.name)
    .bind(&plan.hash)
    .bind(&plan.params_hash)
    .bind(plan.params_json())
    .bind(serde_json::to_value(&plan.raw).unwrap_or_default())
    .bind(operator)
    .bind(&plan.raw.reason)
    .bind(RunStatus::Running)
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db("creating the run"))?;
    for (i, step) in plan.raw.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO replay.step_runs (run_id, step_id, ordinal, kind) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(step.id())
        .bind(i as i32)
        .bind(step.kind())
        .execute(&mut *tx)
        .await
        .map_err(RunError::db("creating the run"))?;
    }
    // The canary's own records of the same steps, listed before them.
    if plan.raw.canary.is_some() {
        let n = plan.raw.steps.len() as i32;
        for (i, step) in plan.raw.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO replay.step_runs (run_id, step_id, ordinal, kind) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(crate::engine::canary::recorded_id(step.id()))
            .bind(i as i32 - n)
            .bind(step.kind())
            .execute(&mut *tx)
            .await
            .map_err(RunError::db("creating the run"))?;
        }
    }
    Ok(OpenRun {
        id,
        plan_hash: plan.hash.clone(),
        params_hash: plan.params_hash.clone(),
        status: RunStatus::Running,
        selected: None,
        started_at,
        error: None,
        selection_digest: None,
    })
}

/// Records the run's status in a transaction of its own (see [`record_status`]).
pub async fn set_status(
    pool: &PgPool,
    lease: &Lease,
    status: RunStatus,
    error: Option<&str>,
) -> Result<(), RunError> {
    let doing = "recording the run's status";
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    record_status(&mut tx, lease, status, error).await?;
    tx.commit().await.map_err(RunError::db(doing))
}

/// Takes the run's batch lock shared, in a batch's transaction.
pub async fn share_run(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(concat!(
        "SELECT pg_advisory_xact_lock_shared(",
        run_batches_lock!(),
        ")"
    ))
    .bind(run_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Records the run's status, fenced by the lease: an executor that lost the run writes nothing.
/// Waits for the run's batches in flight, and holds new ones off until the transaction ends.
pub async fn record_status(
    conn: &mut sqlx::PgConnection,
    lease: &Lease,
    status: RunStatus,
    error: Option<&str>,
) -> Result<(), RunError> {
    sqlx::query(concat!(
        "SELECT pg_advisory_xact_lock(",
        run_batches_lock!(),
        ")"
    ))
    .bind(lease.run_id)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db("recording the run's status"))?;
    let finished = !status.resumable();
    // A rollback under way ends only as rolled back (or goes on rolling back), a succeeded run
    // changes only by being rolled back, and other finished runs stay as they are: whatever an
    // executor concludes, it cannot reopen or forget them.
    let (owned, changed): (Option<bool>, Option<bool>) = sqlx::query_as(
        "WITH current AS (SELECT lease_token = $2 AS owned, status FROM replay.runs WHERE id = $1), \
              changed AS ( \
                UPDATE replay.runs SET status = $3, error = $4, updated_at = now(), \
                       finished_at = CASE WHEN $5 THEN now() END \
                WHERE id = $1 AND lease_token = $2 \
                  AND (status = ANY($6) OR (status IN ($7, $9) AND $3 = ANY($8))) \
                RETURNING 1) \
         SELECT (SELECT owned FROM current), EXISTS (SELECT 1 FROM changed)",
    )
    .bind(lease.run_id)
    .bind(lease.token)
    .bind(status)
    .bind(error)
    .bind(finished)
    .bind(
        RunStatus::ALL
            .iter()
            .filter(|s| s.resumable() && **s != RunStatus::RollingBack)
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(RunStatus::RollingBack)
    .bind([RunStatus::RollingBack.as_str(), RunStatus::RolledBack.as_str()])
    .bind(RunStatus::Succeeded)
    .fetch_one(conn)
    .await
    .map_err(RunError::db("recording the run's status"))?;
    if owned != Some(true) {
        return Err(RunError::LeaseLost {
            run_id: lease.run_id.to_string(),
        });
    }
    if changed != Some(true) {
        tracing::warn!(run = %lease.run_id, status = %status, "the run's recorded status stands");
    }
    Ok(())
}

/// Records the size of the frozen selection.
/// Records the frozen selection's size and digest, in the freeze's own transaction: a run has a
/// size exactly when its selection is complete.
pub async fn record_selection(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    lease: i64,
    frozen: &crate::engine::freeze::Frozen,
) -> Result<(), RunError> {
    let recorded = sqlx::query(
        "UPDATE replay.runs SET selected_count = $3, selection_digest = $4 \
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(run_id)
    .bind(lease)
    .bind(frozen.selected as i64)
    .bind(&frozen.digest)
    .execute(conn)
    .await
    .map_err(RunError::db("recording the selection size"))?
    .rows_affected();
    if recorded == 0 {
        return Err(RunError::LeaseLost {
            run_id: run_id.to_string(),
        });
    }
    Ok(())
}

/// Whether `replay stop` asked this run to stop.
pub async fn stop_requested(pool: &PgPool, run_id: uuid::Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT stop_requested FROM replay.runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(pool)
        .await
}

async fn insert_log(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    kind: &str,
    step: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replay.run_log (run_id, kind, step_id, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(run_id)
    .bind(kind)
    .bind(step)
    .bind(detail)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn log(pool: &PgPool, run_id: uuid::Uuid, kind: &str, step: Option<&str>, detail: Value) {
    // The log is for people; a failure to write it must not fail the run.
    if let Ok(mut conn) = pool.acquire().await {
        let _ = insert_log(&mut conn, run_id, kind, step, detail).await;
    }
}

/// Records the pace of the plan in hand for a run it resumes: `rate_limit` is not part of the
/// plan's identity, so a resumed run may be paced anew. Returns the pace it replaced, if it
/// differs (logged as `pace`, with the operator).
pub async fn repace(
    pool: &PgPool,
    run_id: uuid::Uuid,
    pace: &crate::plan::model::RateLimit,
    operator: &str,
) -> Result<Option<Value>, RunError> {
    let doing = "recording the run's pace";
    let new = serde_json::to_value(pace).unwrap_or_default();
    let old: Option<Value> = sqlx::query_scalar(
        "UPDATE replay.runs r SET plan_document = jsonb_set(r.plan_document, '{rate_limit}', $2) \
         FROM (SELECT plan_document -> 'rate_limit' AS old FROM replay.runs WHERE id = $1 FOR UPDATE) o \
         WHERE r.id = $1 AND o.old IS DISTINCT FROM $2 RETURNING o.old",
    )
    .bind(run_id)
    .bind(&new)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db(doing))?
    .flatten();
    if let Some(old) = &old {
        // The plan in hand paces the run from now on: what an operator set live is dropped.
        sqlx::query(
            "UPDATE replay.pace SET per_second = NULL, batch_size = NULL WHERE run_id = $1",
        )
        .bind(run_id)
        .execute(pool)
        .await
        .map_err(RunError::db(doing))?;
        log(
            pool,
            run_id,
            "pace",
            None,
            serde_json::json!({"was": old, "now": new, "operator": operator}),
        )
        .await;
    }
    Ok(old)
}

/// Records that the run's canary passed, fenced by the lease: the plan's batch-wise `steps` go
/// on after the canary's `events` (their checkpoint: those events are done), and the log says so
/// with `detail`; one transaction, so a resume either runs the canary or never again.
pub async fn pass_canary(
    pool: &PgPool,
    lease: &Lease,
    events: i64,
    steps: &[&str],
    detail: Value,
) -> Result<(), RunError> {
    let doing = "recording that the canary passed";
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    let owned: Option<bool> =
        sqlx::query_scalar("SELECT lease_token = $2 FROM replay.runs WHERE id = $1 FOR UPDATE")
            .bind(lease.run_id)
            .bind(lease.token)
            .fetch_optional(&mut *tx)
            .await
            .map_err(RunError::db(doing))?;
    if owned != Some(true) {
        return Err(RunError::LeaseLost {
            run_id: lease.run_id.to_string(),
        });
    }
    sqlx::query(
        "UPDATE replay.step_runs SET checkpoint = $3 \
         WHERE run_id = $1 AND step_id = ANY($2) AND checkpoint < $3",
    )
    .bind(lease.run_id)
    .bind(steps)
    .bind(events)
    .execute(&mut *tx)
    .await
    .map_err(RunError::db(doing))?;
    insert_log(&mut tx, lease.run_id, CANARY_PASSED, None, detail)
        .await
        .map_err(RunError::db(doing))?;
    tx.commit().await.map_err(RunError::db(doing))
}

/// Forgets the canary's step records of a run that has none (the canary was not smaller than
/// the selection), so that they do not stand pending.
pub async fn drop_canary_records(pool: &PgPool, run_id: uuid::Uuid) -> Result<(), RunError> {
    sqlx::query(
        "DELETE FROM replay.step_runs WHERE run_id = $1 AND step_id LIKE 'canary/%' AND checkpoint = 0 AND status = 'pending'",
    )
    .bind(run_id)
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(RunError::db("forgetting the canary's records"))
}

/// The run-log kind that says a run's canary passed.
pub const CANARY_PASSED: &str = "canary_passed";

/// The first `n` event ids of a run's frozen selection, in order.
pub async fn first_selected(
    conn: &mut sqlx::PgConnection,
    selection_table: &str,
    run_id: uuid::Uuid,
    n: i64,
) -> Result<Vec<String>, RunError> {
    let sql = format!(
        "SELECT event_id FROM {selection_table} WHERE run_id = $1 AND seq <= $2 ORDER BY seq"
    );
    sqlx::query_scalar(crate::engine::binds::audited(&sql))
        .bind(run_id)
        .bind(n)
        .fetch_all(conn)
        .await
        .map_err(RunError::db("reading the canary's events"))
}

/// The run a reference names: a whole id, or the first (at least 6) hexadecimal characters of
/// one. An unknown run, or a prefix that several runs share (listed), is a refusal.
pub async fn resolve_run(pool: &PgPool, text: &str) -> Result<uuid::Uuid, RunError> {
    let text = text.trim().to_ascii_lowercase();
    // Dashes or not, as the operator copied it: compared on the hexadecimal digits alone.
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    let rows: Vec<(uuid::Uuid, String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, plan_name, status, started_at FROM replay.runs \
         WHERE replace(id::text, '-', '') LIKE $1 || '%' ORDER BY started_at DESC LIMIT 11",
    )
    .bind(&digits)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("looking up the run"))?;
    match rows.as_slice() {
        [] => Err(RunError::RunNotNamed(format!(
            "no run `{text}` (`replay status` lists the runs)"
        ))),
        [(id, ..)] => Ok(*id),
        many => {
            let listed: Vec<String> = many
                .iter()
                .take(10)
                .map(|(id, plan, status, at)| {
                    format!(
                        "  {id}  {plan}  {status}  started {}",
                        at.format("%Y-%m-%d %H:%M:%S")
                    )
                })
                .collect();
            Err(RunError::RunNotNamed(format!(
                "`{text}` names {} runs; give more of the id:\n{}",
                if many.len() > 10 {
                    "more than 10".to_string()
                } else {
                    many.len().to_string()
                },
                listed.join("\n")
            )))
        }
    }
}

/// Whether the run log has an entry of this kind (a `pg_dump` already taken, …).
pub async fn logged(pool: &PgPool, run_id: uuid::Uuid, kind: &str) -> Result<bool, RunError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM replay.run_log WHERE run_id = $1 AND kind = $2)",
    )
    .bind(run_id)
    .bind(kind)
    .fetch_one(pool)
    .await
    .map_err(RunError::db("reading the run log"))
}

/// The run log's details of one kind, in order.
pub async fn logged_details(
    pool: &PgPool,
    run_id: uuid::Uuid,
    kind: &str,
) -> Result<Vec<Value>, RunError> {
    sqlx::query_scalar(
        "SELECT detail FROM replay.run_log WHERE run_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(run_id)
    .bind(kind)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the run log"))
}

/// A step's progress: status, checkpoint and rows touched so far.
#[derive(Debug, Clone, Default)]
pub struct StepProgress {
    pub done: bool,
    pub checkpoint: i64,
    pub touched: i64,
    /// Batches (`from..upto` in selection `seq`) done beyond the checkpoint, by batches that
    /// committed side by side.
    pub ahead: Vec<(i64, i64)>,
}

impl StepProgress {
    /// Events whose batch is done: up to the checkpoint, and beyond it.
    pub fn events_done(&self) -> i64 {
        self.checkpoint + events_in(&self.ahead)
    }
}

/// Events in a list of `from..upto` ranges.
pub fn events_in(ranges: &[(i64, i64)]) -> i64 {
    ranges.iter().map(|(f, u)| u - f).sum()
}

pub async fn step_progress(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<HashMap<String, StepProgress>, RunError> {
    let rows = sqlx::query(
        "SELECT step_id, status, checkpoint, touched, ahead FROM replay.step_runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the checkpoints"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                StepProgress {
                    done: r.get::<StepStatus, _>(1) == StepStatus::Done,
                    checkpoint: r.get(2),
                    touched: r.get(3),
                    ahead: pairs(&r.get::<Vec<i64>, _>(4)),
                },
            )
        })
        .collect())
}

/// The rows a step changed so far.
pub async fn step_touched(
    pool: &PgPool,
    run_id: uuid::Uuid,
    step: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(
        "SELECT touched FROM replay.step_runs WHERE run_id = $1 AND step_id = $2",
    )
    .bind(run_id)
    .bind(step)
    .fetch_one(pool)
    .await
    .map(|t| t as u64)
}

/// Tables already snapshotted by this run.
pub async fn backed_up_tables(pool: &PgPool, run_id: uuid::Uuid) -> Result<Vec<String>, RunError> {
    sqlx::query_scalar("SELECT table_name FROM replay.backups WHERE run_id = $1")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(RunError::db("reading backups"))
}

/// An `equals_before` value captured before the first write.
pub async fn before_value(
    pool: &PgPool,
    run_id: uuid::Uuid,
    name: &str,
) -> Result<Option<Value>, RunError> {
    sqlx::query_scalar("SELECT value FROM replay.before_values WHERE run_id = $1 AND name = $2")
        .bind(run_id)
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(RunError::db("reading captured values"))
}

pub async fn record_before_value(
    pool: &PgPool,
    run_id: uuid::Uuid,
    name: &str,
    value: &Value,
) -> Result<(), RunError> {
    sqlx::query(
        "INSERT INTO replay.before_values (run_id, name, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(name)
    .bind(value)
    .execute(pool)
    .await
    .map_err(RunError::db("capturing values"))?;
    Ok(())
}

pub async fn record_verification(
    pool: &PgPool,
    run_id: uuid::Uuid,
    ordinal: usize,
    name: &str,
    passed: bool,
    actual: &Value,
    expected: &Value,
) -> Result<(), RunError> {
    sqlx::query(
        "INSERT INTO replay.verifications (run_id, ordinal, name, passed, actual, expected) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (run_id, ordinal) DO UPDATE SET passed = $4, actual = $5, expected = $6",
    )
    .bind(run_id)
    .bind(ordinal as i32)
    .bind(name)
    .bind(passed)
    .bind(actual)
    .bind(expected)
    .execute(pool)
    .await
    .map_err(RunError::db("recording verifications"))?;
    Ok(())
}

/// Whether the `replay` schema exists (a read command on a fresh database has nothing to show).
pub async fn schema_exists(pool: &PgPool) -> Result<bool, RunError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('replay.runs')::text")
        .fetch_one(pool)
        .await
        .map_err(RunError::db("looking for runs"))?;
    Ok(exists.is_some())
}

/// A run as `replay status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub id: uuid::Uuid,
    pub plan: String,
    pub status: RunStatus,
    pub selected: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub operator: String,
    pub plan_hash: String,
    pub error: Option<String>,
    /// The executor holding a live lease, if any (`host:pid`).
    pub executor: Option<String>,
    /// Every executor that took part (the one that started the run and those that joined).
    pub executors: Vec<crate::engine::claims::ExecutorSummary>,
    pub steps: Vec<StepSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepSummary {
    pub id: String,
    pub kind: String,
    pub status: StepStatus,
    pub checkpoint: i64,
    /// Events done beyond the checkpoint by batches that committed side by side.
    pub ahead: i64,
    pub touched: i64,
}

/// The newest runs (or one run), with their steps.
pub async fn runs(pool: &PgPool, run: Option<uuid::Uuid>) -> Result<Vec<RunSummary>, RunError> {
    let rows = sqlx::query(
        "SELECT id, plan_name, status, coalesce(selected_count, 0), started_at, operator, \
                left(plan_hash, 12), error, \
                CASE WHEN lease_expires_at > clock_timestamp() THEN lease_owner END \
         FROM replay.runs WHERE ($1::uuid IS NULL OR id = $1) ORDER BY started_at DESC LIMIT 20",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading runs"))?;
    let mut out = Vec::new();
    for r in rows {
        let id: uuid::Uuid = r.get(0);
        let steps = sqlx::query(
            "SELECT step_id, kind, status, checkpoint, touched, ahead FROM replay.step_runs \
             WHERE run_id = $1 ORDER BY ordinal",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .map_err(RunError::db("reading steps"))?
        .iter()
        .map(|s| StepSummary {
            id: s.get(0),
            kind: s.get(1),
            status: s.get(2),
            checkpoint: s.get(3),
            touched: s.get(4),
            ahead: events_in(&pairs(&s.get::<Vec<i64>, _>(5))),
        })
        .collect();
        out.push(RunSummary {
            id,
            plan: r.get(1),
            status: r.get(2),
            selected: r.get(3),
            started_at: r.get(4),
            operator: r.get(5),
            plan_hash: r.get(6),
            error: r.get(7),
            executor: r.get(8),
            executors: crate::engine::claims::executors(pool, id).await?,
            steps,
        });
    }
    Ok(out)
}

/// A run's status, if the run exists.
pub async fn status_of(pool: &PgPool, run_id: uuid::Uuid) -> Result<Option<RunStatus>, RunError> {
    sqlx::query_scalar("SELECT status FROM replay.runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(RunError::db("reading the run"))
}

/// One line of `replay audit`: a run and what operators did to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub id: uuid::Uuid,
    pub plan: String,
    pub plan_hash: String,
    pub operator: String,
    pub status: RunStatus,
    pub reason: String,
    /// Stops, rollbacks, restarts, overrides and re-runs, in order.
    pub actions: Vec<OperatorAction>,
}

/// Something an operator did to a run, from its run log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatorAction {
    /// The run-log kind: `stop_requested`, `operator_rollback`, `abandoned`, `override`,
    /// `rolled_back`, `again`, `pace`, `paused`, `unpaused` or `pace_set`.
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The gate an override let pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
}

impl std::fmt::Display for OperatorAction {
    /// `override max_events: incident 42`, `stop_requested by ana`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(gate) = &self.gate {
            write!(f, " {gate}")?;
        }
        if let Some(operator) = &self.operator {
            write!(f, " by {operator}")?;
        }
        if let Some(because) = &self.because {
            write!(f, ": {because}")?;
        }
        Ok(())
    }
}

pub async fn history(pool: &PgPool, limit: i64) -> Result<Vec<HistoryEntry>, RunError> {
    let rows = sqlx::query(
        "SELECT r.started_at, r.id, r.plan_name, left(r.plan_hash, 12), r.operator, r.status, r.reason, \
                coalesce(jsonb_agg(jsonb_build_object('kind', l.kind, 'at', l.at, \
                         'operator', l.detail ->> 'operator', 'gate', l.detail ->> 'gate', \
                         'because', l.detail ->> 'because') ORDER BY l.id) \
                         FILTER (WHERE l.kind IN ('stop_requested', 'operator_rollback', 'abandoned', \
                                 'override', 'rolled_back', 'again', 'pace', 'paused', 'unpaused', \
                                 'pace_set')), '[]') \
         FROM replay.runs r LEFT JOIN replay.run_log l ON l.run_id = r.id \
         GROUP BY r.id ORDER BY r.started_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the history"))?;
    rows.iter()
        .map(|r| {
            let actions: sqlx::types::Json<Vec<OperatorAction>> =
                r.try_get(7).map_err(RunError::db("reading the history"))?;
            Ok(HistoryEntry {
                started_at: r.get(0),
                id: r.get(1),
                plan: r.get(2),
                plan_hash: r.get(3),
                operator: r.get(4),
                status: r.get(5),
                reason: r.get(6),
                actions: actions.0,
            })
        })
        .collect()
}

/// The event ids of a run's frozen selection, in order; refuses an unknown run.
pub async fn selected_event_ids(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<Vec<String>, RunError> {
    if !schema_exists(pool).await? || status_of(pool, run_id).await?.is_none() {
        return Err(RunError::Refused(format!("no run `{run_id}`")));
    }
    sqlx::query_scalar("SELECT event_id FROM replay.selection WHERE run_id = $1 ORDER BY seq")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(RunError::db("reading the run's selection"))
}

/// A run as recorded, with what it needs to be rolled back later.
pub struct RecordedRun {
    pub plan_name: String,
    pub status: RunStatus,
    pub plan_document: Value,
    pub params: Value,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

pub async fn recorded_run(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<Option<RecordedRun>, RunError> {
    let row = sqlx::query(
        "SELECT plan_name, status, plan_document, params, started_at FROM replay.runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("reading the run"))?;
    Ok(row.map(|r| RecordedRun {
        plan_name: r.get(0),
        status: r.get(1),
        plan_document: r.get(2),
        params: r.get(3),
        started_at: r.get(4),
    }))
}

/// Asks a running run to stop at its next batch boundary; the plan's name, or why not.
pub async fn request_stop(
    pool: &PgPool,
    run_id: uuid::Uuid,
    operator: &str,
) -> Result<String, RunError> {
    let updated: Option<String> = sqlx::query_scalar(
        "UPDATE replay.runs SET stop_requested = true WHERE id = $1 AND status = $2 RETURNING plan_name",
    )
    .bind(run_id)
    .bind(RunStatus::Running)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("requesting the stop"))?;
    match updated {
        Some(plan) => {
            log(
                pool,
                run_id,
                "stop_requested",
                None,
                serde_json::json!({"operator": operator}),
            )
            .await;
            Ok(plan)
        }
        None => Err(RunError::Refused(match status_of(pool, run_id).await? {
            Some(s) => format!("run `{run_id}` is not running (it is {s})"),
            None => format!("no run `{run_id}`"),
        })),
    }
}

/// Where a run's frozen selection lives (`run_id, seq, event_id, event_type, payload,
/// processed_at`).
/// Where the batches of a run's batch-wise steps are recorded.
pub const BATCHES_TABLE: &str = "replay.batches";
pub const SELECTION_TABLE: &str = "replay.selection";

/// Records a step's checkpoint inside the batch's transaction, fenced by the lease's token;
/// says whether `replay stop` asked the run to stop (read in the same transaction).
pub async fn checkpoint_step(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    lease: i64,
    progress: &Checkpoint<'_>,
) -> Result<bool, RunError> {
    let stop = fence(&mut *conn, run_id, lease).await?;
    let at = StepRow {
        checkpoint: progress.checkpoint,
        ahead: Vec::new(),
        touched: Touched::Set(progress.touched),
        done: progress.done,
    };
    write_step_row(conn, run_id, progress.step, &at).await?;
    Ok(stop)
}

/// Records one batch of a step in the step's row, inside the batch's transaction: the
/// checkpoint moves over batches that are all done, and a batch done beyond it waits in `ahead`.
/// The step's row is locked, so two batches record one after the other. A batch recorded twice
/// is an error (it would have been done twice), and so rolls back.
pub async fn record_batch(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    batch: &Batch<'_>,
) -> Result<(), RunError> {
    let doing = || format!("checkpointing step `{}`", batch.step);
    let row = sqlx::query(
        "SELECT checkpoint, ahead FROM replay.step_runs WHERE run_id = $1 AND step_id = $2 FOR UPDATE",
    )
    .bind(run_id)
    .bind(batch.step)
    .fetch_one(&mut *conn)
    .await
    .map_err(RunError::db(doing()))?;
    let (checkpoint, ahead) = advance(
        row.get(0),
        pairs(&row.get::<Vec<i64>, _>(1)),
        batch.from,
        batch.upto,
    )
    .map_err(|message| RunError::Database {
        doing: doing(),
        message,
        transient: false,
    })?;
    let at = StepRow {
        checkpoint,
        ahead,
        touched: Touched::Add(batch.rows),
        done: checkpoint >= batch.total,
    };
    write_step_row(conn, run_id, batch.step, &at).await
}

/// What a checkpoint writes into a step's row.
struct StepRow {
    checkpoint: i64,
    ahead: Vec<(i64, i64)>,
    touched: Touched,
    done: bool,
}

/// A step's rows touched: so far in all (one batch at a time), or by this batch (side by side).
enum Touched {
    Set(i64),
    Add(i64),
}

async fn write_step_row(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    step: &str,
    at: &StepRow,
) -> Result<(), RunError> {
    let (touched, add) = match at.touched {
        Touched::Set(n) => (n, false),
        Touched::Add(n) => (n, true),
    };
    sqlx::query(
        "UPDATE replay.step_runs SET checkpoint = $3, ahead = $4, \
         touched = CASE WHEN $5 THEN touched + $6 ELSE $6 END, \
         status = CASE WHEN $7 THEN $8 ELSE $9 END, \
         started_at = coalesce(started_at, now()), \
         finished_at = CASE WHEN $7 THEN now() END \
         WHERE run_id = $1 AND step_id = $2",
    )
    .bind(run_id)
    .bind(step)
    .bind(at.checkpoint)
    .bind(
        at.ahead
            .iter()
            .flat_map(|&(f, u)| [f, u])
            .collect::<Vec<i64>>(),
    )
    .bind(add)
    .bind(touched)
    .bind(at.done)
    .bind(StepStatus::Done)
    .bind(StepStatus::Running)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(format!("checkpointing step `{step}`")))?;
    Ok(())
}

/// One batch of a step whose batches commit side by side: its range of the selection (`seq` in
/// `from + 1 ..= upto`) and the rows it changed.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'s> {
    pub step: &'s str,
    pub from: i64,
    pub upto: i64,
    pub rows: i64,
    /// The step's end: once the checkpoint reaches it, the step is done.
    pub total: i64,
}

/// Where a step's checkpoint and the ranges done beyond it stand once the batch `from..upto` is
/// done too. Ranges that touch are merged, so the list holds one range per gap. A batch at or
/// below the checkpoint, or overlapping a range already done, is an error: it would have been
/// done twice.
pub fn advance(
    checkpoint: i64,
    ahead: Vec<(i64, i64)>,
    from: i64,
    upto: i64,
) -> Result<(i64, Vec<(i64, i64)>), String> {
    if from < checkpoint || ahead.iter().any(|&(f, u)| from < u && f < upto) {
        return Err(format!(
            "the batch of events {}..={upto} was already recorded as done (checkpoint {checkpoint}, ahead {ahead:?})",
            from + 1
        ));
    }
    let mut ranges = ahead;
    ranges.push((from, upto));
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (f, u) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 == f => last.1 = u,
            _ => merged.push((f, u)),
        }
    }
    match merged.first() {
        Some(&(f, u)) if f == checkpoint => Ok((u, merged.split_off(1))),
        _ => Ok((checkpoint, merged)),
    }
}

/// `[from, upto, from, upto, …]` as pairs.
pub fn pairs(flat: &[i64]) -> Vec<(i64, i64)> {
    flat.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}

/// A step's progress as its checkpoint records it.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'s> {
    pub step: &'s str,
    /// The selection `seq` the step has reached.
    pub checkpoint: i64,
    pub touched: i64,
    pub done: bool,
    /// The batch changed rows of the target (a reset, a `sql` step): its transaction id joins
    /// the run's.
    pub wrote_rows: bool,
}

impl<'s> Checkpoint<'s> {
    /// A step that is done, having written no target rows in this transaction.
    pub fn finished(step: &'s str, touched: i64) -> Checkpoint<'s> {
        Checkpoint {
            step,
            checkpoint: 0,
            touched,
            done: true,
            wrote_rows: false,
        }
    }
}

/// Records the current transaction as one of the run's writes: rows whose `xmin` it is are still
/// as this run left them.
pub async fn record_write_xid(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replay.run_xids (run_id, xid) \
         VALUES ($1, txid_current() % 4294967296) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Records the checkpoint's transaction as one of the run's writes, so that rows whose `xmin`
/// it is count as still as this run left them.
pub async fn mark_written(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    step: &str,
) -> Result<(), RunError> {
    record_write_xid(conn, run_id)
        .await
        .map_err(RunError::db(format!("checkpointing step `{step}`")))
}

/// The condition (on a target row aliased `t`, with the run id as `$1`) that the row is still as
/// this run left it: written by one of its batch transactions, or by the current transaction.
pub const WRITTEN_BY_THE_RUN: &str = "(t.xmin::text::bigint IN \
     (SELECT xid FROM replay.run_xids WHERE run_id = $1) \
     OR t.xmin::text::bigint = txid_current() % 4294967296)";

/// Snapshots the rows a `SELECT key, row_data` query returns into the run's backup of `table`,
/// in the caller's transaction; returns (rows, checksum).
pub async fn snapshot_backup(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    table: &str,
    key_column: &str,
    select_rows: &str,
    binds: &[crate::plan::selection::Bind],
) -> Result<(i64, String), sqlx::Error> {
    let n = binds.len();
    let insert = format!(
        "INSERT INTO replay.backup_rows (run_id, table_name, key, row_data) \
         SELECT ${}, ${}, s.key, s.row_data FROM ({select_rows}) s",
        n + 1,
        n + 2
    );
    let query =
        crate::engine::binds::bind_all(sqlx::query(crate::engine::binds::audited(&insert)), binds)
            .bind(run_id)
            .bind(table);
    query.execute(&mut *conn).await?;
    let (rows, checksum): (i64, String) = sqlx::query_as(
        "SELECT count(*), coalesce(md5(string_agg(row_data::text, '' ORDER BY key)), '') \
         FROM replay.backup_rows WHERE run_id = $1 AND table_name = $2",
    )
    .bind(run_id)
    .bind(table)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO replay.backups (run_id, table_name, key_column, row_count, checksum) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(run_id)
    .bind(table)
    .bind(key_column)
    .bind(rows)
    .bind(&checksum)
    .execute(conn)
    .await?;
    Ok((rows, checksum))
}

/// The key column of the run's backup of `table`, if it took one.
pub async fn backup_key_column(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    table: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT key_column FROM replay.backups WHERE run_id = $1 AND table_name = $2",
    )
    .bind(run_id)
    .bind(table)
    .fetch_optional(conn)
    .await
}

/// The statement that lists the snapshotted rows of `table` (quoted, key column `key` quoted)
/// that differ from their snapshot or are gone, into `pg_temp.replay_restore`; binds the run id
/// as `$1` and the table name as `$2`.
pub fn backup_differences(table: &str, key: &str) -> String {
    format!(
        "INSERT INTO pg_temp.replay_restore (key, row_data, missing) \
         SELECT b.key, b.row_data, t.{key} IS NULL \
         FROM replay.backup_rows b LEFT JOIN {table} t ON t.{key}::text = b.key \
         WHERE b.run_id = $1 AND b.table_name = $2 AND (t.{key} IS NULL OR to_jsonb(t) <> b.row_data)"
    )
}

/// The failure groups among a run's selected events whose status is still `status` (the
/// repeated failures its report names).
pub async fn still_failing_groups(
    pool: &sqlx::PgPool,
    target: &crate::plan::model::Target,
    run_id: uuid::Uuid,
    status: &str,
) -> Result<Vec<crate::engine::groups::FailureGroup>, RunError> {
    use crate::plan::selection::quote_ident;
    let c = &target.columns;
    let query = format!(
        "SELECT e.{event_id}::text, e.{event_type}::text, e.{error}::text, e.{processed_at} \
         FROM {selection} s JOIN {table} e ON e.{event_id}::text = s.event_id \
         WHERE s.run_id = $1 AND e.{status}::text = $2 ORDER BY s.seq",
        event_id = quote_ident(&c.event_id),
        event_type = quote_ident(&c.event_type),
        error = quote_ident(&c.error_message),
        processed_at = quote_ident(&c.processed_at),
        status = quote_ident(&c.status),
        table = quote_ident(&target.events_table),
        selection = SELECTION_TABLE,
    );
    let rows = sqlx::query(crate::engine::binds::audited(&query))
        .bind(run_id)
        .bind(status)
        .fetch(pool);
    crate::engine::groups::collect(rows).await
}

/// The selected events of a run whose status is still `status` in the events table: (total, the
/// first `limit` in selection order with their error message).
pub async fn still_failing(
    pool: &PgPool,
    run_id: uuid::Uuid,
    target: &crate::plan::model::Target,
    status: &str,
    limit: i64,
) -> Result<Vec<(i64, String, Option<String>)>, sqlx::Error> {
    use crate::plan::selection::quote_ident;
    let c = &target.columns;
    sqlx::query_as(crate::engine::binds::audited(&format!(
        "SELECT count(*) OVER (), s.event_id, e.{error}::text FROM {SELECTION_TABLE} s \
         JOIN {events} e ON e.{event_id}::text = s.event_id \
         WHERE s.run_id = $1 AND e.{status}::text = $2 ORDER BY s.seq LIMIT $3",
        error = quote_ident(&c.error_message),
        events = quote_ident(&target.events_table),
        event_id = quote_ident(&c.event_id),
        status = quote_ident(&c.status),
    )))
    .bind(run_id)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn the_checkpoint_moves_only_over_batches_that_are_all_done() {
        // The second batch commits first: it waits beyond the checkpoint.
        let (c, ahead) = advance(0, vec![], 100, 200).unwrap();
        assert_eq!((c, ahead.clone()), (0, vec![(100, 200)]));
        // The third too.
        let (c, ahead) = advance(c, ahead, 200, 300).unwrap();
        assert_eq!(
            (c, ahead.clone()),
            (0, vec![(100, 300)]),
            "touching ranges merge"
        );
        // A fifth, leaving a gap.
        let (c, ahead) = advance(c, ahead, 400, 450).unwrap();
        assert_eq!(ahead, vec![(100, 300), (400, 450)]);
        // The first closes the gap up to the fourth.
        let (c, ahead) = advance(c, ahead, 0, 100).unwrap();
        assert_eq!((c, ahead.clone()), (300, vec![(400, 450)]));
        let (c, ahead) = advance(c, ahead, 300, 400).unwrap();
        assert_eq!((c, ahead), (450, vec![]));
    }

    #[test]
    fn a_batch_recorded_twice_is_refused() {
        assert!(advance(300, vec![], 200, 300).is_err());
        assert!(advance(0, vec![(100, 200)], 100, 200).is_err());
        assert!(advance(0, vec![(100, 200)], 150, 250).is_err());
        assert!(advance(0, vec![(100, 200)], 200, 300).is_ok());
        assert!(advance(0, vec![(100, 300)], 200, 250).is_err());
    }
}
