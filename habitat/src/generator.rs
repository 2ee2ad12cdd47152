//! Deterministic, set-based generator of a Habitat world: periods, contributions, allocations,
//! payments and the `processed_events` rows their handlers would have logged.
//!
//! Everything is computed inside PostgreSQL from `generate_series`, `hashint8extended` (for
//! pseudo-random numbers) and `md5` (for uuids) of the seed and a row number, so a million
//! events take seconds and the same seed always yields the same rows, uuids included. The event stream is laid out in three segments, in this order:
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

    /// A stable pseudo-random non-negative 31-bit integer for row `n` and purpose `kind`.
    ///
    /// `hashint8extended` is what hash partitioning uses, so PostgreSQL keeps it stable across
    /// versions; it is an order of magnitude cheaper than `md5`.
    fn rand(&self, kind: Rand, n: &str) -> String {
        let salt = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(kind as u64) as i64;
        format!("(hashint8extended(({n})::bigint, {salt}) & 2147483647)")
    }

    /// A uuid for entity `n` of `kind`, e.g. contribution 42.
    fn uuid(&self, kind: &str, n: &str) -> String {
        format!("md5('{}:{kind}:' || ({n}))::uuid", self.seed)
    }

    /// The uuid of member `m`, from an array built once per statement: members recur in every
    /// row, so hashing them per row would dominate the cost.
    fn member_uuid(&self, m: &str) -> String {
        format!(
            "((SELECT array_agg({uuid} ORDER BY i) FROM generate_series(0::bigint, {last}) AS i))\
             [({m}) + 1]",
            uuid = self.uuid("member", "i"),
            last = self.members - 1,
        )
    }

    /// The uuid of period `p`, like [`Layout::member_uuid`].
    fn period_uuid(&self, p: &str) -> String {
        format!(
            "((SELECT array_agg({uuid} ORDER BY i) FROM generate_series(0::bigint, {last}) AS i))\
             [({p}) + 1]",
            uuid = self.uuid("period", "i"),
            last = self.periods - 1,
        )
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

    /// Columns of period `p` (alias `pb`): `period_id`, `starts`, `ends`, `start_date`, `end_date`.
    ///
    /// Every derived table here ends in `OFFSET 0`, which stops PostgreSQL from inlining it:
    /// inlined, each reference to a column would recompute its expression.
    fn period_from(&self, p: &str) -> String {
        format!(
            "LATERAL (SELECT {id} AS period_id, {starts} AS starts, {ends} AS ends OFFSET 0) AS pb0, \
             LATERAL (SELECT pb0.*, (pb0.starts AT TIME ZONE 'UTC')::date AS start_date, \
                 ((pb0.ends AT TIME ZONE 'UTC')::date - 1) AS end_date OFFSET 0) AS pb",
            id = self.uuid("period", p),
            starts = self.at(&format!("({p}) * {}", self.period_secs)),
            ends = self.at(&format!("(({p}) + 1) * {}", self.period_secs)),
        )
    }

    /// Columns of contribution `c` (alias `cv`): `contribution_id`, `member_id`, `period_id`,
    /// `ctype`, `amount`, `approved`, `created_at`, `decided_at`.
    fn contribution_from(&self, c: &str) -> String {
        format!(
            "LATERAL (SELECT {m} % {members} AS m, {p} % {periods} AS p OFFSET 0) AS cp, \
             LATERAL (SELECT {cid} AS contribution_id, {mid} AS member_id, {pid} AS period_id, \
                 (ARRAY['labor', 'capital', 'property', 'expertise'])[1 + {t} % 4] AS ctype, \
                 round((100 + {a} % 49900)::numeric / 100, 2) AS amount, \
                 {ok} % 100 < 85 AS approved, \
                 {created} AS created_at OFFSET 0) AS cv0, \
             LATERAL (SELECT cv0.*, {decided} AS decided_at OFFSET 0) AS cv",
            m = self.rand(Rand::ContributionMember, c),
            p = self.rand(Rand::ContributionPeriod, c),
            t = self.rand(Rand::ContributionType, c),
            a = self.rand(Rand::ContributionAmount, c),
            ok = self.rand(Rand::ContributionApproved, c),
            members = self.members,
            periods = self.periods,
            cid = self.uuid("contribution", c),
            mid = self.member_uuid("cp.m"),
            pid = self.period_uuid("cp.p"),
            created = self.capped(&self.at(&format!(
                "(cp.p + {f} / 2147483648.0) * {len}",
                f = self.rand(Rand::ContributionCreated, c),
                len = self.period_secs
            ))),
            decided = self.capped(&format!(
                "cv0.created_at + make_interval(hours => (1 + {} % 72)::int)",
                self.rand(Rand::ContributionDecided, c)
            )),
        )
    }

    /// Columns of allocation `a` (alias `av`): `allocation_id`, `payment_id`, `period_id`,
    /// `member_id`, `amount`, `calculated_at`.
    fn allocation_from(&self, a: &str) -> String {
        let closed = (self.periods - 1).max(1);
        format!(
            "LATERAL (SELECT ({a}) % {closed} AS p, (({a}) / {closed}) % {members} AS m OFFSET 0) AS am, \
             LATERAL (SELECT {aid} AS allocation_id, {pay} AS payment_id, {pid} AS period_id, \
                 {mid} AS member_id, \
                 round((5000 + {amount} % 495000)::numeric / 100, 2) AS amount, \
                 {calculated} AS calculated_at OFFSET 0) AS av",
            members = self.members,
            aid = self.uuid("allocation", a),
            pay = self.uuid("payment", a),
            pid = self.period_uuid("am.p"),
            mid = self.member_uuid("am.m"),
            amount = self.rand(Rand::AllocationAmount, a),
            calculated = self.capped(&format!(
                "{ends} + make_interval(secs => (7200 + {delay} % 7200)::double precision)",
                ends = self.at(&format!("(am.p + 1) * {}", self.period_secs)),
                delay = self.rand(Rand::AllocationDelay, a)
            )),
        )
    }

    /// Wraps a segment yielding `(n, event_type, payload, at)` in ascending `n` into the
    /// `processed_events` insert, dealing id, status, retries and error message from `n`.
    fn insert_events(&self, segment: &str) -> String {
        let messages = ERROR_MESSAGES
            .iter()
            .map(|m| format!("'{}'", m.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO processed_events \
                 (event_type, event_id, payload, status, retry_count, error_message, processed_at) \
             SELECT ev.event_type, \
                 'evt_' || lpad(to_hex({id}), 16, '0') || lpad(to_hex(ev.n), 8, '0'), \
                 ev.payload, st.status, \
                 CASE WHEN st.status = 'error' THEN 1 + {retries} % 5 ELSE 0 END, \
                 CASE WHEN st.status = 'error' \
                     THEN (ARRAY[{messages}])[1 + {message} % {count}] END, \
                 ev.at \
             FROM ({segment}) AS ev, \
             LATERAL (SELECT {status} AS status OFFSET 0) AS st",
            // The hash makes ids look like Habitat's random ones; the event number appended in
            // fixed width keeps them unique.
            id = self.rand(Rand::EventId, "ev.n"),
            retries = self.rand(Rand::EventRetries, "ev.n"),
            message = self.rand(Rand::EventMessage, "ev.n"),
            count = ERROR_MESSAGES.len(),
            status = self.status("ev.n"),
        )
    }

    fn period_events_sql(&self) -> String {
        let p = self.periods;
        self.insert_events(&format!(
            "SELECT i AS n, \
                 CASE WHEN i < {p} THEN 'period.opened' ELSE 'period.closed' END AS event_type, \
                 jsonb_build_object('period_id', pb.period_id, 'start_date', pb.start_date, \
                     'end_date', pb.end_date, 'occurred_at', pt.at) AS payload, \
                 pt.at \
             FROM generate_series(0::bigint, {last}) AS i, \
             LATERAL (SELECT CASE WHEN i < {p} THEN i ELSE i - {p} END AS p OFFSET 0) AS q, \
             {period}, \
             LATERAL (SELECT CASE WHEN i < {p} THEN pb.starts \
                 ELSE {closed_at} END AS at OFFSET 0) AS pt",
            last = self.period_events as i64 - 1,
            period = self.period_from("q.p"),
            closed_at = self.capped("pb.ends + interval '1 hour'"),
        ))
    }

    fn allocation_events_sql(&self) -> String {
        // One allocation computed once, fanned out into its four events.
        self.insert_events(&format!(
            "SELECT {base} + 4 * a + s.step AS n, s.event_type, \
                 CASE WHEN s.step < 2 \
                     THEN jsonb_build_object('allocation_id', av.allocation_id, \
                         'period_id', av.period_id, 'member_id', av.member_id, \
                         'amount', av.amount, 'occurred_at', t.at) \
                     ELSE jsonb_build_object('payment_id', av.payment_id, \
                         'allocation_id', av.allocation_id, 'member_id', av.member_id, \
                         'amount', av.amount, 'occurred_at', t.at) END AS payload, \
                 t.at \
             FROM generate_series(0::bigint, {last}) AS a, \
             {allocation}, \
             LATERAL (VALUES (0, 'allocation.calculated', av.calculated_at), \
                     (1, 'allocation.distributed', av.calculated_at + interval '1 day'), \
                     (2, 'payment.initiated', av.calculated_at + interval '1 day 1 hour'), \
                     (3, 'payment.completed', av.calculated_at + interval '2 days')) \
                 AS s(step, event_type, due), \
             LATERAL (SELECT {at} AS at OFFSET 0) AS t",
            base = self.allocation_base(),
            last = self.allocations as i64 - 1,
            allocation = self.allocation_from("a"),
            at = self.capped(&format!(
                "s.due + make_interval(secs => \
                 (CASE WHEN s.step = 3 THEN {settle} % 86400 ELSE 0 END)::double precision)",
                settle = self.rand(Rand::PaymentSettled, "a")
            )),
        ))
    }

    fn contribution_events_sql(&self) -> String {
        // One contribution computed once, fanned out into its submission and its decision.
        self.insert_events(&format!(
            "SELECT {base} + 2 * c + s.step AS n, \
                 CASE WHEN s.step = 0 THEN 'contribution.submitted' \
                     WHEN cv.approved THEN 'contribution.approved' \
                     ELSE 'contribution.rejected' END AS event_type, \
                 CASE WHEN s.step = 1 AND NOT cv.approved \
                     THEN jsonb_build_object('contribution_id', cv.contribution_id, \
                         'member_id', cv.member_id, 'period_id', cv.period_id, \
                         'type', cv.ctype, 'amount', cv.amount, 'occurred_at', s.at, \
                         'reason', 'insufficient evidence') \
                     ELSE jsonb_build_object('contribution_id', cv.contribution_id, \
                         'member_id', cv.member_id, 'period_id', cv.period_id, \
                         'type', cv.ctype, 'amount', cv.amount, 'occurred_at', s.at) \
                     END AS payload, \
                 s.at \
             FROM generate_series(0::bigint, {last}) AS c, \
             {contribution}, \
             LATERAL (VALUES (0, cv.created_at), (1, cv.decided_at)) AS s(step, at) \
             WHERE 2 * c + s.step < {events}",
            base = self.contribution_base(),
            last = self.contributions() as i64 - 1,
            contribution = self.contribution_from("c"),
            events = self.contribution_events,
        ))
    }

    fn periods_sql(&self) -> String {
        let p = self.periods;
        format!(
            "INSERT INTO allocation_periods (id, status, start_date, end_date, closed_at) \
             SELECT pb.period_id, CASE WHEN c.closed THEN 'closed' ELSE 'open' END, \
                 pb.start_date, pb.end_date, \
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
             SELECT cv.contribution_id, cv.member_id, cv.period_id, cv.ctype, cv.amount, \
                 CASE WHEN NOT ({decided}) THEN 'pending' \
                     WHEN cv.approved THEN 'approved' ELSE 'rejected' END, \
                 cv.created_at \
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

/// What a pseudo-random number is for; each purpose hashes with its own salt so that, say,
/// a contribution's member and its amount are independent.
#[derive(Clone, Copy)]
enum Rand {
    ContributionMember = 1,
    ContributionPeriod,
    ContributionType,
    ContributionAmount,
    ContributionApproved,
    ContributionCreated,
    ContributionDecided,
    AllocationAmount,
    AllocationDelay,
    PaymentSettled,
    EventId,
    EventRetries,
    EventMessage,
}

/// What becomes of rows already in the Habitat tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    /// They make the generator refuse ([`HabitatError::NotEmpty`]).
    Refuse,
    /// They are deleted in the generator's transaction, so a failed run leaves them in place.
    Replace,
}

/// Creates the schema if needed and fills the (empty) Habitat tables with the world `config`
/// describes, in one transaction.
pub async fn generate(
    pool: &PgPool,
    config: &GeneratorConfig,
) -> Result<GeneratorReport, HabitatError> {
    fill(pool, config, Existing::Refuse).await
}

/// Like [`generate`], but first empties the Habitat tables (restarting their ids) in the same
/// transaction: the old world is gone only once the new one is committed.
pub async fn replace(
    pool: &PgPool,
    config: &GeneratorConfig,
) -> Result<GeneratorReport, HabitatError> {
    fill(pool, config, Existing::Replace).await
}

async fn fill(
    pool: &PgPool,
    config: &GeneratorConfig,
    existing: Existing,
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
    if existing == Existing::Replace {
        exec(&mut tx, schema::TRUNCATE.into(), "empty the habitat tables").await?;
    }
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
    // JIT compilation costs more than it saves on these one-pass statements, and the index
    // builds at the end want memory.
    for setting in [
        "SET LOCAL jit = off",
        "SET LOCAL maintenance_work_mem = '256MB'",
    ] {
        exec(&mut tx, setting.into(), "tune the generator session").await?;
    }
    // Building the secondary indexes once at the end is several times faster than
    // maintaining them row by row; the table is empty and locked by this transaction, so
    // nobody sees it without them.
    let rebuild_unique: bool =
        sqlx::query_scalar("SELECT to_regclass('processed_events_event_id_key') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .context("look up the `event_id` constraint")?;
    if rebuild_unique {
        exec(
            &mut tx,
            "ALTER TABLE processed_events DROP CONSTRAINT processed_events_event_id_key".into(),
            "drop the `event_id` constraint for the bulk load",
        )
        .await?;
    }
    exec(
        &mut tx,
        schema::DROP_EVENT_INDEXES.into(),
        "drop the event indexes for the bulk load",
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
    if rebuild_unique {
        exec(
            &mut tx,
            "ALTER TABLE processed_events \
             ADD CONSTRAINT processed_events_event_id_key UNIQUE (event_id)"
                .into(),
            "rebuild the `event_id` constraint",
        )
        .await?;
    }
    sqlx::raw_sql(schema::EVENT_INDEXES)
        .execute(&mut *tx)
        .await
        .context("rebuild the event indexes")?;
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
