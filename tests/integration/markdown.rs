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

/// Personal data in payloads, masked by `review.mask`, reaches no report of a real dry-run: not
/// the sampled events, not the rendered messages (body and headers), in Markdown, text or JSON.
#[sqlx::test(migrations = false)]
async fn masked_payload_fields_never_reach_a_dry_run_report(pool: PgPool) -> anyhow::Result<()> {
    use lapin::options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::FieldTable;

    habitat::schema::apply(&pool).await?;
    // Values that cannot appear in a report by chance.
    let secrets = [
        "alice.masked@example.com",
        "DE89370400440532013000",
        "bob.masked@example.com",
        "GB29NWBK60161331926819",
    ];
    for (i, (email, iban)) in [(secrets[0], secrets[1]), (secrets[2], secrets[3])]
        .into_iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO processed_events (event_type, event_id, payload, status, processed_at) \
             VALUES ('customer.updated', $1, $2, 'error', now())",
        )
        .bind(format!("masked-{i}"))
        .bind(serde_json::json!({
            "customer_id": i,
            "email": email,
            "customer": { "name": "kept", "iban": iban },
        }))
        .execute(&pool)
        .await?;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (format!("test-mask-{id}"), format!("test-mask-{id}"));
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let text = format!(
        "version: 1\nname: masked-review\nreason: \"republish customer events with personal data\"\n\
         target: {{ exchange: {exchange} }}\nselect: {{ status: [error], event_types: [customer.updated] }}\n\
         review: {{ mask: [email, customer.iban] }}\n\
         steps:\n  - id: republish\n    kind: publish\n    headers: {{ x-mail: \"{{{{ event.payload.email }}}}\" }}\n"
    );
    let validated = plan::validate(Source::from_text("masked.yaml".into(), text)?);
    let raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("invalid: {:?}", validated.diagnostics))?;
    let plan = plan::compile(raw, &[])?;
    let report = dry_run(&pool, &plan).await;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    let report = report?;
    assert_eq!(report.selected, 2);
    assert_eq!(report.breakdown.sample.len(), 2, "both events sampled");
    assert_eq!(report.messages.len(), 2, "both messages rendered");

    let outputs = [
        ("markdown", markdown::render(&report)),
        ("text", replay::render::text(&report)),
        ("json", serde_json::to_string(&report)?),
    ];
    for (format, out) in &outputs {
        for secret in secrets {
            assert!(!out.contains(secret), "{format} shows `{secret}`:\n{out}");
        }
        // What is not masked still shows, so the test looks where the values would be.
        assert!(
            out.contains("kept"),
            "{format} shows the unmasked field:\n{out}"
        );
        assert!(out.contains("***"), "{format} shows the mask:\n{out}");
    }
    // Masked where each one stood: the sampled payloads and the messages' bodies and headers.
    for (_, _, payload) in &report.breakdown.sample {
        let value: serde_json::Value = serde_json::from_str(payload)?;
        assert_eq!(value["email"], "***");
        assert_eq!(value["customer"]["iban"], "***");
        assert_eq!(value["customer"]["name"], "kept");
    }
    for m in &report.messages {
        let body: serde_json::Value = serde_json::from_str(&m.body)?;
        assert_eq!(body["email"], "***");
        assert_eq!(body["customer"]["iban"], "***");
        assert_eq!(m.headers, [("x-mail".to_string(), "***".to_string())]);
    }
    // The events themselves are untouched.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'email' FROM processed_events WHERE event_type = 'customer.updated' ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(stored, [secrets[0], secrets[2]]);
    Ok(())
}
