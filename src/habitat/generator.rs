//! Deterministic, set-based generator of a Habitat world: periods, contributions, allocations,
//! payments and the `processed_events` rows their handlers would have logged.
//!
//! Everything is computed inside PostgreSQL from `generate_series` and `md5` of the seed and a
//! row number, so a million events take seconds and the same seed always yields the same
//! rows, uuids included. The event stream is laid out in three segments, in this order:
//! period events, allocation lifecycles (`allocation.calculated`, `allocation.distributed`,
//! `payment.initiated`, `payment.completed`), then contribution lifecycles
//! (`contribution.submitted`, then `approved` or `rejected`). Statuses are dealt by a
//! permutation of the event numbers so that exactly the requested number of events fail or
//! hang in `processing`. The domain tables show only the effects of events that were
//! `processed`: a failed `contribution.approved` leaves its contribution `pending`, exactly
//! the kind of damage a replay repairs. Statuses are dealt independently, so an event can be
//! `processed` although its predecessor failed (e.g. a distributed allocation whose
//! calculation failed has no allocation row).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use super::error::{Context, HabitatError};
use super::schema;

/// What world to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Seeds every id, amount, timestamp and status.
    pub seed: u64,
    /// Number of distinct members contributing.
    pub members: u32,
    /// Number of allocation periods splitting the `days` window; all but the newest are closed.
    pub periods: u32,
    /// Exact number of `processed_events` rows.
    pub events: u64,
    /// Share of events left in `error` (rounded to the nearest event).
    pub failed_share: f64,
    /// Share of events stuck in `processing` (rounded to the nearest event).
    pub stuck_share: f64,
    /// Length of the history, ending at `now`, over which `processed_at` is spread.
    pub days: u32,
    /// End of the history; fixed by default so that the default world is reproducible.
    pub now: DateTime<Utc>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            members: 100,
            periods: 6,
            events: 10_000,
            failed_share: 0.02,
            stuck_share: 0.005,
            days: 90,
            // 2025-06-01T00:00:00Z.
            now: DateTime::<Utc>::from_timestamp(1_748_736_000, 0).unwrap_or(DateTime::UNIX_EPOCH),
        }
    }
}

impl GeneratorConfig {
    /// Number of events the generator leaves in `error`.
    pub fn failed_events(&self) -> u64 {
        share_of(self.events, self.failed_share)
    }

    /// Number of events the generator leaves in `processing`.
    pub fn stuck_events(&self) -> u64 {
        share_of(self.events, self.stuck_share)
    }
}

/// Rounds `share` of `total` to a whole number of events; `share` is validated to `0..=1`.
fn share_of(total: u64, share: f64) -> u64 {
    // Exact for any `total` below 2^53, far beyond what the generator accepts.
    (total as f64 * share).round() as u64
}

/// What the generator wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeneratorReport {
    /// Rows in `processed_events`.
    pub events: u64,
    /// Events per `event_type`.
    pub by_type: BTreeMap<String, u64>,
    /// Events per `status`.
    pub by_status: BTreeMap<String, u64>,
    /// Events per `event_type`, then per `status`.
    pub by_type_and_status: BTreeMap<String, BTreeMap<String, u64>>,
    /// Rows in `allocation_periods`.
    pub periods: u64,
    /// Rows in `contributions`.
    pub contributions: u64,
    /// Rows in `allocations`.
    pub allocations: u64,
    /// Rows in `payments`.
    pub payments: u64,
    /// Wall time of the whole generation, commit included.
    pub elapsed: Duration,
}

impl GeneratorReport {
    /// Rows written across all tables (the generator's unit of throughput).
    pub fn total_rows(&self) -> u64 {
        self.events + self.periods + self.contributions + self.allocations + self.payments
    }
}

/// Messages of the failures Habitat's workers really log; one is dealt to each failed event.
const ERROR_MESSAGES: [&str; 6] = [
    "deadlock detected",
    r#"null value in column "amount" of relation "allocations" violates not-null constraint"#,
    "handler timeout after 30s",
    r#"duplicate key value violates unique constraint "payments_pkey""#,
    "could not serialize access due to concurrent update",
    "connection to server was lost",
];

/// Multipliers for the status permutation; one that does not divide the event count is
/// coprime with it (they are prime), which makes `n * m + offset mod N` a bijection.
const MULTIPLIERS: [u64; 3] = [1_000_003, 999_983, 1_000_033];

/// Upper bound on `events`, keeping `n * multiplier` inside a `bigint`.
const MAX_EVENTS: u64 = 1_000_000_000;

/// The numbers the SQL is built from, derived once from the config.
///
/// All SQL below is assembled with `format!` from these integers and from fixed literals only
/// (never from user text), which is why it may be marked [`AssertSqlSafe`].
struct Layout {
    seed: u64,
    members: u64,
    periods: u64,
    events: u64,
    /// Period events: one `period.opened` per period, one `period.closed` per closed period.
    period_events: u64,
    /// Allocation lifecycles, four events each.
    allocations: u64,
    /// Events of contribution lifecycles (two each; an odd count leaves the last undecided).
    contribution_events: u64,
    failed: u64,
    stuck: u64,
    multiplier: u64,
    offset: u64,
    window_start: String,
    now: String,
    /// Seconds per period.
    period_secs: u64,
}

impl Layout {
    fn new(config: &GeneratorConfig) -> Result<Layout, HabitatError> {
        let invalid = |m: String| Err(HabitatError::InvalidConfig(m));
        for (name, share) in [
            ("failed_share", config.failed_share),
            ("stuck_share", config.stuck_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return invalid(format!("`{name}` must lie in 0..=1, got {share}"));
            }
        }
        if config.failed_share + config.stuck_share > 1.0 {
            return invalid("`failed_share` + `stuck_share` must not exceed 1".into());
        }
        if config.members == 0 || config.periods == 0 || config.days == 0 {
            return invalid("`members`, `periods` and `days` must be at least 1".into());
        }
        if config.events > MAX_EVENTS {
            return invalid(format!("`events` must not exceed {MAX_EVENTS}"));
        }
        let events = config.events;
        let periods = u64::from(config.periods);
        let members = u64::from(config.members);
        let window_secs = u64::from(config.days) * 86_400;
        let period_secs = window_secs / periods;
        if period_secs == 0 {
            return invalid("a period must last at least one second".into());
        }
        let period_events = (2 * periods - 1).min(events);
        let closed = periods - 1;
        // Allocations take about half of what is left, bounded by one per member and closed period.
        let allocations = (members * closed).min((events - period_events) / 8);
        let contribution_events = events - period_events - 4 * allocations;
        let multiplier = MULTIPLIERS
            .into_iter()
            .find(|m| !events.is_multiple_of(*m))
            .unwrap_or(1);
        let window_start = config.now - chrono::Duration::seconds(window_secs as i64);
        Ok(Layout {
            seed: config.seed,
            members,
            periods,
            events,
            period_events,
            allocations,
            contribution_events,
            failed: config.failed_events(),
            stuck: config.stuck_events(),
            multiplier,
            offset: if events == 0 { 0 } else { config.seed % events },
            window_start: window_start.to_rfc3339_opts(SecondsFormat::Micros, true),
            now: config.now.to_rfc3339_opts(SecondsFormat::Micros, true),
            period_secs,
        })
    }

    fn allocation_base(&self) -> u64 {
        self.period_events
    }

    fn contribution_base(&self) -> u64 {
        self.period_events + 4 * self.allocations
    }

    fn contributions(&self) -> u64 {
        self.contribution_events.div_ceil(2)
    }

    /// Position of event `n` in the status permutation: below `failed` means `error`, below
    /// `failed + stuck` means `processing`.
    fn rank(&self, n: &str) -> String {
        format!(
            "((({n})::bigint * {m} + {o}) % {e})",
            m = self.multiplier,
            o = self.offset,
            e = self.events.max(1)
        )
    }

    fn status(&self, n: &str) -> String {
        let rank = self.rank(n);
        format!(
            "(CASE WHEN {rank} < {f} THEN 'error' WHEN {rank} < {fs} THEN 'processing' \
             ELSE 'processed' END)",
            f = self.failed,
            fs = self.failed + self.stuck
        )
    }

    /// Whether event `n` exists and was processed, i.e. its side effects are in the tables.
    fn processed(&self, n: &str) -> String {
        format!(
            "(({n}) < {e} AND {rank} >= {fs})",
            e = self.events,
            rank = self.rank(n),
            fs = self.failed + self.stuck
        )
    }

    fn uuid(&self, kind: &str, n: &str) -> String {
        format!("md5('{}:{kind}:' || ({n}))::uuid", self.seed)
    }

    fn md5(&self, kind: &str, n: &str) -> String {
        format!("md5('{}:{kind}:' || ({n}))", self.seed)
    }

    /// `window_start + secs`, as a timestamptz.
    fn at(&self, secs: &str) -> String {
        format!(
            "(timestamptz '{}' + make_interval(secs => ({secs})::double precision))",
            self.window_start
        )
    }

    fn capped(&self, ts: &str) -> String {
        format!("LEAST({ts}, timestamptz '{}')", self.now)
    }

    /// Columns of period `p`: `period_id`, `starts`, `ends`, `start_date`, `end_date`.
    fn period_from(&self, p: &str) -> String {
        format!(
            "LATERAL (SELECT {id} AS period_id, {starts} AS starts, {ends} AS ends) AS pb, \
             LATERAL (SELECT (pb.starts AT TIME ZONE 'UTC')::date AS start_date, \
                             ((pb.ends AT TIME ZONE 'UTC')::date - 1) AS end_date) AS pd",
            id = self.uuid("period", p),
            starts = self.at(&format!("({p}) * {}", self.period_secs)),
            ends = self.at(&format!("(({p}) + 1) * {}", self.period_secs)),
        )
    }

    /// Columns of contribution `c` (alias `cv`): ids, `ctype`, `amount`, `approved`,
    /// `created_at`, `decided_at`.
    fn contribution_from(&self, c: &str) -> String {
        let h = |part: u32| hash_part("ch.h", part);
        let h2 = |part: u32| hash_part("ch.h2", part);
        format!(
            "LATERAL (SELECT {hh} AS h, {hh2} AS h2) AS ch, \
             LATERAL (SELECT {h0} % {members} AS m, {h1} % {periods} AS p) AS cp, \
             LATERAL (SELECT {cid} AS contribution_id, {mid} AS member_id, {pid} AS period_id, \
                 (ARRAY['labor', 'capital', 'property', 'expertise'])[1 + {h3} % 4] AS ctype, \
                 round((100 + {h2_2} % 49900)::numeric / 100, 2) AS amount, \
                 {h2_3} % 100 < 85 AS approved, \
                 {created} AS created_at) AS cv0, \
             LATERAL (SELECT {decided} AS decided_at) AS cv",
            hh = self.md5("contribution", c),
            hh2 = self.md5("contribution-r", c),
            h0 = h(0),
            h1 = h(1),
            h3 = h(3),
            h2_2 = h2(2),
            h2_3 = h2(3),
            members = self.members,
            periods = self.periods,
            cid = self.uuid("contribution-id", c),
            mid = self.uuid("member", "cp.m"),
            pid = self.uuid("period", "cp.p"),
            created = self.capped(&self.at(&format!(
                "(cp.p + {f} / 4294967296.0) * {len}",
                f = h2(0),
                len = self.period_secs
            ))),
            decided = self.capped(&format!(
                "cv0.created_at + make_interval(hours => (1 + {} % 72)::int)",
                h2(1)
            )),
        )
    }

    /// Columns of allocation `a` (alias `av`): ids, `amount`, `calculated_at`.
    fn allocation_from(&self, a: &str) -> String {
        let closed = (self.periods - 1).max(1);
        format!(
            "LATERAL (SELECT {hh} AS h) AS ah, \
             LATERAL (SELECT ({a}) % {closed} AS p, (({a}) / {closed}) % {members} AS m) AS am, \
             LATERAL (SELECT {aid} AS allocation_id, {pay} AS payment_id, {pid} AS period_id, \
                 {mid} AS member_id, \
                 round((5000 + {h0} % 495000)::numeric / 100, 2) AS amount, \
                 {calculated} AS calculated_at) AS av",
            hh = self.md5("allocation", a),
            members = self.members,
            aid = self.uuid("allocation-id", a),
            pay = self.uuid("payment-id", a),
            pid = self.uuid("period", "am.p"),
            mid = self.uuid("member", "am.m"),
            h0 = hash_part("ah.h", 0),
            calculated = self.capped(&format!(
                "{ends} + make_interval(secs => (7200 + {h1} % 7200)::double precision)",
                ends = self.at(&format!("(am.p + 1) * {}", self.period_secs)),
                h1 = hash_part("ah.h", 1)
            )),
        )
    }

    /// Wraps a segment yielding `(n, event_type, payload, at)` into the `processed_events`
    /// insert, dealing status, id, retries and error message from `n`.
    fn insert_events(&self, segment: &str) -> String {
        let messages = ERROR_MESSAGES
            .iter()
            .map(|m| format!("'{}'", m.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO processed_events \
                 (event_type, event_id, payload, status, retry_count, error_message, processed_at) \
             SELECT ev.event_type, 'evt_' || substr(eh.h, 1, 24), ev.payload, st.status, \
                 CASE WHEN st.status = 'error' THEN 1 + {h3} % 5 ELSE 0 END, \
                 CASE WHEN st.status = 'error' \
                     THEN (ARRAY[{messages}])[1 + {h2} % {count}] END, \
                 ev.at \
             FROM ({segment}) AS ev, \
             LATERAL (SELECT {eh} AS h) AS eh, \
             LATERAL (SELECT {status} AS status) AS st",
            h2 = hash_part("eh.h", 2),
            h3 = hash_part("eh.h", 3),
            count = ERROR_MESSAGES.len(),
            eh = self.md5("event", "ev.n"),
            status = self.status("ev.n"),
        )
    }

    fn period_events_sql(&self) -> String {
        let p = self.periods;
        self.insert_events(&format!(
            "SELECT i AS n, \
                 CASE WHEN i < {p} THEN 'period.opened' ELSE 'period.closed' END AS event_type, \
                 jsonb_build_object('period_id', pb.period_id, 'start_date', pd.start_date, \
                     'end_date', pd.end_date, 'occurred_at', pt.at) AS payload, \
                 pt.at \
             FROM generate_series(0::bigint, {last}) AS i, \
             LATERAL (SELECT CASE WHEN i < {p} THEN i ELSE i - {p} END AS p) AS q, \
             {period}, \
             LATERAL (SELECT CASE WHEN i < {p} THEN pb.starts \
                 ELSE {closed_at} END AS at) AS pt",
            last = self.period_events as i64 - 1,
            period = self.period_from("q.p"),
            closed_at = self.capped("pb.ends + interval '1 hour'"),
        ))
    }

    fn allocation_events_sql(&self) -> String {
        self.insert_events(&format!(
            "SELECT {base} + j AS n, \
                 (ARRAY['allocation.calculated', 'allocation.distributed', 'payment.initiated', \
                     'payment.completed'])[1 + j % 4] AS event_type, \
                 CASE WHEN j % 4 < 2 \
                     THEN jsonb_build_object('allocation_id', av.allocation_id, \
                         'period_id', av.period_id, 'member_id', av.member_id) \
                     ELSE jsonb_build_object('payment_id', av.payment_id, \
                         'allocation_id', av.allocation_id, 'member_id', av.member_id) END \
                     || jsonb_build_object('amount', av.amount, 'occurred_at', at.at) AS payload, \
                 at.at \
             FROM generate_series(0::bigint, {last}) AS j, \
             {allocation}, \
             LATERAL (SELECT {at} AS at) AS at",
            base = self.allocation_base(),
            last = (4 * self.allocations) as i64 - 1,
            allocation = self.allocation_from("j / 4"),
            at = self.capped(&format!(
                "av.calculated_at + (ARRAY[interval '0', interval '1 day', \
                 interval '1 day 1 hour', interval '2 days'])[1 + j % 4] \
                 + make_interval(secs => (CASE WHEN j % 4 = 3 THEN {h} % 86400 ELSE 0 END)::double precision)",
                h = hash_part("ah.h", 2)
            )),
        ))
    }

    fn contribution_events_sql(&self) -> String {
        self.insert_events(&format!(
            "SELECT {base} + j AS n, \
                 CASE WHEN j % 2 = 0 THEN 'contribution.submitted' \
                     WHEN cv0.approved THEN 'contribution.approved' \
                     ELSE 'contribution.rejected' END AS event_type, \
                 jsonb_build_object('contribution_id', cv0.contribution_id, \
                     'member_id', cv0.member_id, 'period_id', cv0.period_id, \
                     'type', cv0.ctype, 'amount', cv0.amount, \
                     'occurred_at', CASE WHEN j % 2 = 0 THEN cv0.created_at ELSE cv.decided_at END) \
                 || CASE WHEN j % 2 = 1 AND NOT cv0.approved \
                     THEN jsonb_build_object('reason', 'insufficient evidence') \
                     ELSE '{{}}'::jsonb END AS payload, \
                 CASE WHEN j % 2 = 0 THEN cv0.created_at ELSE cv.decided_at END AS at \
             FROM generate_series(0::bigint, {last}) AS j, \
             {contribution}",
            base = self.contribution_base(),
            last = self.contribution_events as i64 - 1,
            contribution = self.contribution_from("j / 2"),
        ))
    }

    fn periods_sql(&self) -> String {
        let p = self.periods;
        format!(
            "INSERT INTO allocation_periods (id, status, start_date, end_date, closed_at) \
             SELECT pb.period_id, CASE WHEN c.closed THEN 'closed' ELSE 'open' END, \
                 pd.start_date, pd.end_date, \
                 CASE WHEN c.closed THEN {closed_at} END \
             FROM generate_series(0::bigint, {last}) AS p, \
             {period}, \
             LATERAL (SELECT p < {last} AND {processed} AS closed) AS c",
            last = p - 1,
            period = self.period_from("p"),
            closed_at = self.capped("pb.ends + interval '1 hour'"),
            processed = self.processed(&format!("{p} + p")),
        )
    }

    fn contributions_sql(&self) -> String {
        let decision = format!("{} + 2 * c + 1", self.contribution_base());
        let decided = format!(
            "2 * c + 1 < {ce} AND {processed}",
            ce = self.contribution_events,
            processed = self.processed(&decision)
        );
        format!(
            "INSERT INTO contributions (id, member_id, period_id, type, amount, status, created_at) \
             SELECT cv0.contribution_id, cv0.member_id, cv0.period_id, cv0.ctype, cv0.amount, \
                 CASE WHEN NOT ({decided}) THEN 'pending' \
                     WHEN cv0.approved THEN 'approved' ELSE 'rejected' END, \
                 cv0.created_at \
             FROM generate_series(0::bigint, {last}) AS c, \
             {contribution}",
            last = self.contributions() as i64 - 1,
            contribution = self.contribution_from("c"),
        )
    }

    fn allocations_sql(&self) -> String {
        let step = |k: u32| format!("{} + 4 * a + {k}", self.allocation_base());
        format!(
            "INSERT INTO allocations (id, period_id, member_id, amount, status, created_at) \
             SELECT av.allocation_id, av.period_id, av.member_id, av.amount, \
                 CASE WHEN {distributed} THEN 'distributed' ELSE 'calculated' END, \
                 av.calculated_at \
             FROM generate_series(0::bigint, {last}) AS a, \
             {allocation} \
             WHERE {calculated}",
            distributed = self.processed(&step(1)),
            calculated = self.processed(&step(0)),
            last = self.allocations as i64 - 1,
            allocation = self.allocation_from("a"),
        )
    }

    fn payments_sql(&self) -> String {
        let step = |k: u32| format!("{} + 4 * a + {k}", self.allocation_base());
        format!(
            "INSERT INTO payments (id, allocation_id, amount, status, created_at) \
             SELECT av.payment_id, av.allocation_id, av.amount, \
                 CASE WHEN {completed} THEN 'completed' ELSE 'initiated' END, \
                 {initiated_at} \
             FROM generate_series(0::bigint, {last}) AS a, \
             {allocation} \
             WHERE {initiated}",
            completed = self.processed(&step(3)),
            initiated = self.processed(&step(2)),
            initiated_at = self.capped("av.calculated_at + interval '1 day 1 hour'"),
            last = self.allocations as i64 - 1,
            allocation = self.allocation_from("a"),
        )
    }
}

/// 32 pseudo-random bits (as a non-negative bigint) from the `part`-th eighth of an md5 hex digest.
fn hash_part(digest: &str, part: u32) -> String {
    format!(
        "(('x' || substr({digest}, {start}, 8))::bit(32)::bigint)",
        start = part * 8 + 1
    )
}

/// Creates the schema if needed and fills the (empty) Habitat tables with the world `config`
/// describes, in one transaction.
pub async fn generate(
    pool: &PgPool,
    config: &GeneratorConfig,
) -> Result<GeneratorReport, HabitatError> {
    let started = Instant::now();
    let layout = Layout::new(config)?;
    schema::apply(pool)
        .await
        .context("apply the habitat schema")?;

    let mut tx = pool
        .begin()
        .await
        .context("begin the generator transaction")?;
    for table in schema::TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let occupied: bool = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await
            .context(format!("check whether `{table}` is empty"))?;
        if occupied {
            return Err(HabitatError::NotEmpty { table });
        }
    }
    // One commit at the end; nothing is lost by not flushing intermediate WAL.
    exec(
        &mut tx,
        "SET LOCAL synchronous_commit = off".into(),
        "tune the session",
    )
    .await?;

    let steps = [
        (
            layout.period_events > 0,
            layout.period_events_sql(),
            "insert period events",
        ),
        (
            layout.allocations > 0,
            layout.allocation_events_sql(),
            "insert allocation events",
        ),
        (
            layout.contribution_events > 0,
            layout.contribution_events_sql(),
            "insert contribution events",
        ),
        (true, layout.periods_sql(), "insert allocation periods"),
        (
            layout.contributions() > 0,
            layout.contributions_sql(),
            "insert contributions",
        ),
        (
            layout.allocations > 0,
            layout.allocations_sql(),
            "insert allocations",
        ),
        (
            layout.allocations > 0,
            layout.payments_sql(),
            "insert payments",
        ),
    ];
    for (wanted, sql, what) in steps {
        if wanted {
            exec(&mut tx, sql, what).await?;
        }
    }
    sqlx::query(
        "INSERT INTO audit_log (action, details, performed_by, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind("habitat_generate")
    .bind(format!(
        "generated seed={} members={} periods={} events={} failed={} stuck={} days={}",
        config.seed,
        config.members,
        config.periods,
        config.events,
        layout.failed,
        layout.stuck,
        config.days
    ))
    .bind("replay habitat generator")
    .bind(config.now)
    .execute(&mut *tx)
    .await
    .context("record the generation in `audit_log`")?;

    let mut report = count(&mut tx).await?;
    tx.commit().await.context("commit the generated world")?;
    report.elapsed = started.elapsed();
    tracing::info!(
        events = report.events,
        rows = report.total_rows(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "habitat world generated"
    );
    Ok(report)
}

async fn exec(
    tx: &mut Transaction<'_, Postgres>,
    sql: String,
    what: &str,
) -> Result<(), HabitatError> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await
        .context(what)?;
    Ok(())
}

/// Counts what is in the tables now.
async fn count(tx: &mut Transaction<'_, Postgres>) -> Result<GeneratorReport, HabitatError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT event_type, status, count(*) FROM processed_events GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await
    .context("count generated events")?;
    let mut report = GeneratorReport::default();
    for (event_type, status, n) in rows {
        let n = n as u64;
        report.events += n;
        *report.by_type.entry(event_type.clone()).or_default() += n;
        *report.by_status.entry(status.clone()).or_default() += n;
        *report
            .by_type_and_status
            .entry(event_type)
            .or_default()
            .entry(status)
            .or_default() += n;
    }
    let (periods, contributions, allocations, payments): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM allocation_periods), (SELECT count(*) FROM contributions), \
                (SELECT count(*) FROM allocations), (SELECT count(*) FROM payments)",
    )
    .fetch_one(&mut **tx)
    .await
    .context("count generated domain rows")?;
    report.periods = periods as u64;
    report.contributions = contributions as u64;
    report.allocations = allocations as u64;
    report.payments = payments as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{GeneratorConfig, Layout};

    fn case(events: u64, periods: u32, members: u32, expect: (u64, u64, u64)) {
        let config = GeneratorConfig {
            events,
            periods,
            members,
            ..GeneratorConfig::default()
        };
        let layout = Layout::new(&config).expect("valid config");
        let got = (
            layout.period_events,
            layout.allocations,
            layout.contribution_events,
        );
        assert_eq!(
            got, expect,
            "events={events} periods={periods} members={members}"
        );
        assert_eq!(
            layout.period_events + 4 * layout.allocations + layout.contribution_events,
            events
        );
        if events > 0 {
            assert_ne!(events % layout.multiplier, 0, "multiplier must be coprime");
        }
    }

    #[test]
    fn segments_add_up_to_the_requested_events() {
        case(10_000, 6, 100, (11, 500, 7_989));
        case(1_000_000, 6, 100, (11, 500, 997_989));
        case(5, 6, 100, (5, 0, 0));
        case(0, 3, 10, (0, 0, 0));
        case(100, 1, 10, (1, 0, 99));
    }

    #[test]
    fn rejects_impossible_shares() {
        for (failed, stuck) in [(1.5, 0.0), (-0.1, 0.0), (0.6, 0.6), (f64::NAN, 0.0)] {
            let config = GeneratorConfig {
                failed_share: failed,
                stuck_share: stuck,
                ..GeneratorConfig::default()
            };
            assert!(Layout::new(&config).is_err(), "{failed} + {stuck}");
        }
    }
}
