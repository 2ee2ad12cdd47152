//! The Markdown report of a dry-run, as a pull-request comment, on the real services.

use habitat::{self, GeneratorConfig};
use replay::engine::events::Collect;
use replay::engine::{self, Connection, Report};
use replay::plan::{self, Plan, Source};
use replay::render::markdown::{self, GITHUB_LIMIT};
use sqlx::PgPool;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PLAN: &str = "plans/replay-failed-events.yaml";

/// The test's database URL, and its database name.
async fn database_url(pool: &PgPool) -> anyhow::Result<(String, String)> {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await?;
    let server = std::env::var("DATABASE_URL")?;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Ok((format!("{base}/{db}"), db))
}

/// `host:port/db`, as `replay apply` prints a target (the CLI's own function is private).
fn target_identity(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_string()
}

fn load(edit: impl Fn(String) -> String, params: &[&str]) -> anyhow::Result<Plan> {
    let text = edit(std::fs::read_to_string(PLAN)?);
    let validated = plan::validate(Source::from_text(PLAN.into(), text)?);
    let raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("invalid: {:?}", validated.diagnostics))?;
    Ok(plan::compile(
        raw,
        &params.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )?)
}

/// A dry-run with the report filled in as `replay apply --dry-run` fills it.
async fn dry_run(pool: &PgPool, plan: &Plan) -> anyhow::Result<Report> {
    let (url, _) = database_url(pool).await?;
    let mut report = Report {
        version: 1,
        mode: replay::engine::status::Mode::DryRun,
        plan: plan.raw.name.clone(),
        plan_hash: plan.hash.clone(),
        params: plan.params_json(),
        target: target_identity(&url),
        ..Report::default()
    };
    let connection = Connection {
        database_url: url,
        amqp_url: AMQP.into(),
        operator: "test".into(),
        target: None,
    };
    engine::dry_run(
        plan,
        &connection,
        &Default::default(),
        &mut Collect::default(),
        &mut report,
    )
    .await?;
    report.next.push(format!(
        "apply with: replay apply {PLAN}{}",
        plan.param_args()
    ));
    Ok(report)
}

#[sqlx::test(migrations = false)]
async fn dry_run_markdown_of_failed_events(pool: PgPool) -> anyhow::Result<()> {
    // The default `now` is fixed, so ids, payloads and days are the same on every run; `since`
    // reaches back far enough to cover it from today.
    let config = GeneratorConfig {
        events: 400,
        failed_share: 0.05,
        stuck_share: 0.0,
        days: 7,
        ..GeneratorConfig::default()
    };
    habitat::generate(&pool, &config).await?;
    let plan = load(|t| t, &["since=3650d"])?;
    let report = dry_run(&pool, &plan).await?;
    assert_eq!(report.selected, config.failed_events());

    let (url, db) = database_url(&pool).await?;
    let server = target_identity(&url)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let out = markdown::render(&report)
        .replace(&plan.hash, "[plan hash]")
        .replace(&db, "[database]")
        .replace(&server, "[host:port]");
    insta::assert_snapshot!(out);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_million_selected_events_fit_in_one_comment(pool: PgPool) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 1_000_000,
        ..GeneratorConfig::default()
    };
    habitat::generate(&pool, &config).await?;
    // Every status, and a cheap step: resetting a million rows in a rehearsal takes minutes and
    // adds nothing to the comment's size.
    let plan = load(
        |t| {
            let head = &t[..t.find("backup:").unwrap_or(t.len())];
            head.replace(
                "status: [error]",
                "status: [processed, error, processing, pending]",
            )
            .replace("max_events: 100000", "max_events: 2000000")
                + "steps:\n  - id: wait-nothing\n    kind: wait\n    until: \"SELECT true\"\n    timeout: 1m\n"
        },
        &["since=3650d"],
    )?;
    let report = dry_run(&pool, &plan).await?;
    assert_eq!(report.selected, 1_000_000);

    let out = markdown::render(&report);
    assert!(
        out.chars().count() < GITHUB_LIMIT,
        "{} characters",
        out.chars().count()
    );
    assert!(out.starts_with("## ✅ Dry-run of `replay-failed-events`: would run\n"));
    assert!(out.contains("| **Selected events** | **1,000,000** |"));
    assert!(out.contains("| `contribution.submitted` |"));
    assert!(out.contains(&format!(
        "```sh\nreplay apply {PLAN} --param since=3650d\n```"
    )));
    Ok(())
}
