//! `habitat generate`: a Habitat world of one's own in a database one names, ending now.

use replay::engine::redact::redact_url;
use replay::render::numbers::thousands;

use super::{CliError, Percent, database, runtime};
use crate::{GeneratorConfig, GeneratorReport, HabitatError};

/// What world to generate, and where.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The database to fill; Habitat's tables are created in it if missing.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Events to generate (rows of `processed_events`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: u64,
    /// Percentage of the events left failed (`error`), 0 to 100.
    #[arg(long, value_name = "P")]
    pub failed_pct: Percent,
    /// Percentage of the events stuck in `processing`; with --failed-pct at most 100.
    #[arg(long, value_name = "P", default_value = "0")]
    pub stuck_pct: Percent,
    /// Days of history, ending now, over which the events are spread.
    #[arg(long, value_name = "D", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Seeds every id, amount and status: the same seed and counts give the same events.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Empty Habitat's tables first, in the same transaction, instead of refusing a database
    /// that holds events.
    #[arg(long)]
    pub replace: bool,
}

impl GenerateArgs {
    /// What clap cannot check on one argument alone.
    pub fn check(&self) -> Result<(), String> {
        if self.failed_pct.value() + self.stuck_pct.value() > 100.0 {
            return Err(format!(
                "--failed-pct {} and --stuck-pct {} add up to more than 100",
                self.failed_pct.value(),
                self.stuck_pct.value()
            ));
        }
        Ok(())
    }

    /// Generates the world and prints what it made.
    pub fn run(&self) -> Result<(), CliError> {
        runtime()?.block_on(self.generate())
    }

    async fn generate(&self) -> Result<(), CliError> {
        let shown = redact_url(&self.database_url);
        let pool = database(&self.database_url).await?;
        let name: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&pool)
            .await
            .map_err(|e| CliError::failed(format!("read the database name of {shown}"), e))?;
        let config = GeneratorConfig {
            seed: self.seed,
            events: self.events,
            failed_share: self.failed_pct.share(),
            stuck_share: self.stuck_pct.share(),
            days: self.days,
            now: chrono::Utc::now(),
            ..GeneratorConfig::default()
        };
        let generated = if self.replace {
            crate::generator::replace(&pool, &config).await
        } else {
            crate::generate(&pool, &config).await
        };
        let report = match generated {
            Ok(report) => report,
            Err(HabitatError::NotEmpty { table }) => {
                let events: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(0);
                let holds = if events > 0 {
                    format!("{} events", thousands(events.into()))
                } else {
                    format!("rows in `{table}`")
                };
                return Err(CliError::Refused(format!(
                    "refused to generate into database `{name}` ({shown}): it already holds {holds}; \
                     `--replace` empties Habitat's tables first"
                )));
            }
            Err(e) => {
                return Err(CliError::failed(
                    format!("generate a Habitat in database `{name}` ({shown})"),
                    e,
                ));
            }
        };
        print!("{}", summary(&report, &name, &shown, self));
        Ok(())
    }
}

/// What the generator made, with thousands separators.
fn summary(report: &GeneratorReport, name: &str, shown: &str, args: &GenerateArgs) -> String {
    let span = match args.days {
        1 => "the last day".to_owned(),
        n => format!("the last {n} days"),
    };
    let mut out = format!(
        "generated {} events over {span} in database `{name}` ({shown}) in {:.1}s, seed {}{}:\n",
        thousands(report.events.into()),
        report.elapsed.as_secs_f64(),
        args.seed,
        if args.replace {
            ", replacing what it held"
        } else {
            ""
        },
    );
    // The statuses the generator deals, always listed; any other after them.
    let mut statuses: Vec<(&str, u64)> = ["processed", "error", "processing"]
        .into_iter()
        .map(|s| (s, report.by_status.get(s).copied().unwrap_or(0)))
        .collect();
    for (status, count) in &report.by_status {
        if !statuses.iter().any(|(s, _)| s == status) {
            statuses.push((status, *count));
        }
    }
    let width = statuses
        .iter()
        .map(|(_, n)| thousands((*n).into()).len())
        .max()
        .unwrap_or(1);
    for (status, count) in statuses {
        out.push_str(&format!(
            "  {status:<11}{:>width$}\n",
            thousands(count.into())
        ));
    }
    out.push_str(&format!(
        "and {} periods, {} contributions, {} allocations, {} payments\n",
        thousands(report.periods.into()),
        thousands(report.contributions.into()),
        thousands(report.allocations.into()),
        thousands(report.payments.into()),
    ));
    out
}
