//! Tests of the Habitat reference world.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use habitat::{
    self, EventType, FailureMode, GeneratorConfig, OutgoingEvent, Publisher, Worker, WorkerConfig,
    WorkerStats,
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn small_world() -> GeneratorConfig {
    GeneratorConfig {
        seed: 7,
        members: 40,
        periods: 4,
        events: 5_000,
        failed_share: 0.05,
        stuck_share: 0.01,
        days: 60,
        ..GeneratorConfig::default()
    }
}

#[sqlx::test(migrations = false)]
async fn generator_counts_match_the_config(pool: PgPool) -> anyhow::Result<()> {
    let config = small_world();
    let report = habitat::generate(&pool, &config).await?;

    assert_eq!(report.events, 5_000);
    let expected_status = BTreeMap::from([
        ("error".to_string(), 250),
        ("processing".to_string(), 50),
        ("processed".to_string(), 4_700),
    ]);
    assert_eq!(report.by_status, expected_status);
    for t in EventType::ALL {
        assert!(
            report.by_type.get(t.as_str()).copied().unwrap_or(0) > 0,
            "no `{t}` events in {:?}",
            report.by_type
        );
    }
    assert_eq!(report.by_type["period.opened"], 4);
    assert_eq!(report.by_type["period.closed"], 3);

    // The report is what the table holds.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM processed_events GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await?;
    let in_table: BTreeMap<String, u64> = rows.into_iter().map(|(s, n)| (s, n as u64)).collect();
    assert_eq!(in_table, expected_status);

    // Timestamps stay inside the requested window.
    let (oldest, newest): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(processed_at), max(processed_at) FROM processed_events")
            .fetch_one(&pool)
            .await?;
    assert!(
        oldest >= config.now - chrono::Duration::days(60),
        "{oldest}"
    );
    assert!(newest <= config.now, "{newest}");

    // Only the newest period is open by design; a closed one can be open if its close failed.
    let open_newest: bool = sqlx::query_scalar(
        "SELECT status = 'open' FROM allocation_periods ORDER BY start_date DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    assert!(open_newest);
    assert!(report.contributions > 0 && report.allocations > 0 && report.payments > 0);

    // The bulk load rebuilt every index it dropped.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'processed_events' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        indexes,
        [
            "processed_events_event_id_key",
            "processed_events_event_type_idx",
            "processed_events_pending_idx",
            "processed_events_pkey",
            "processed_events_status_processed_at_idx",
        ]
    );
    Ok(())
}

/// Checksums of every Habitat table, rows in id order.
async fn checksums(pool: &PgPool) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut sums = Vec::new();
    for table in habitat::schema::TABLES {
        let sql = format!("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} AS t");
        let sum: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        sums.push((table.to_string(), sum));
    }
    Ok(sums)
}

#[sqlx::test(migrations = false)]
async fn same_seed_reproduces_the_same_world(pool: PgPool) -> anyhow::Result<()> {
    let config = small_world();
    habitat::generate(&pool, &config).await?;
    let first = checksums(&pool).await?;
    assert!(first.iter().all(|(_, sum)| sum.is_some()), "{first:?}");

    habitat::schema::reset(&pool).await?;
    habitat::generate(&pool, &config).await?;
    assert_eq!(checksums(&pool).await?, first);

    habitat::schema::reset(&pool).await?;
    let other = GeneratorConfig {
        seed: config.seed + 1,
        ..config
    };
    habitat::generate(&pool, &other).await?;
    let second = checksums(&pool).await?;
    assert_ne!(second[0], first[0], "another seed must give other events");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn generator_refuses_a_populated_world(pool: PgPool) -> anyhow::Result<()> {
    habitat::generate(&pool, &small_world()).await?;
    let error = habitat::generate(&pool, &small_world())
        .await
        .expect_err("second generation must be refused");
    assert_eq!(
        error.to_string(),
        "generate into table `processed_events`: it already holds rows \
         (call `habitat::schema::reset` first)"
    );
    Ok(())
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A worker configuration on an exchange and queue of the test's own.
fn own_topology(failing: FailureMode) -> WorkerConfig {
    let suffix = Uuid::new_v4().simple().to_string();
    WorkerConfig {
        exchange: format!("habitat-test-{suffix}"),
        queue: format!("habitat-test-worker-{suffix}"),
        failing,
        poll_interval: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

/// Polls `check` until it holds or ten seconds have passed.
async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

async fn event_status(pool: &PgPool, event_id: &str) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT status FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?,
    )
}

fn event(event_type: &str, payload: serde_json::Value) -> OutgoingEvent {
    OutgoingEvent {
        event_type: event_type.into(),
        event_id: format!("evt_{}", Uuid::new_v4().simple()),
        payload,
    }
}

#[sqlx::test(migrations = false)]
async fn worker_applies_a_twice_delivered_event_once(pool: PgPool) -> anyhow::Result<()> {
    let config = own_topology(FailureMode::None);
    let worker = Worker::start(pool.clone(), &amqp_url(), config.clone()).await?;
    let publisher = Publisher::connect(&amqp_url(), &config.exchange).await?;
    let payment_id = Uuid::new_v4();
    let payment = event(
        "payment.initiated",
        json!({ "payment_id": payment_id, "allocation_id": Uuid::new_v4(), "amount": 42.5 }),
    );

    publisher.publish(&payment).await?;
    publisher.publish(&payment).await?;
    let waited = wait_for("both deliveries", || async {
        let s = worker.stats();
        Ok(s.processed + s.duplicates + s.failed == 2)
    })
    .await;

    let stats = worker.stop().await?;
    publisher.delete_topology(&config.queue).await?;
    publisher.close().await?;
    waited?;

    assert_eq!(
        stats,
        WorkerStats {
            processed: 1,
            failed: 0,
            duplicates: 1
        }
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(&pool)
        .await?;
    assert_eq!(payments, 1);
    let (status, retries, amount): (String, i32, String) = sqlx::query_as(
        "SELECT e.status, e.retry_count, p.amount::text FROM processed_events e, payments p \
         WHERE e.event_id = $1 AND p.id = $2",
    )
    .bind(&payment.event_id)
    .bind(payment_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (status.as_str(), retries, amount.as_str()),
        ("processed", 0, "42.5")
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn failed_events_are_processed_once_the_worker_is_fixed(pool: PgPool) -> anyhow::Result<()> {
    let buggy = own_topology(FailureMode::failing(&["allocation.*"], 1.0));
    let url = amqp_url();
    let allocation = |id: Uuid| {
        event(
            "allocation.calculated",
            json!({
                "allocation_id": id,
                "period_id": Uuid::new_v4(),
                "member_id": Uuid::new_v4(),
                "amount": 120,
            }),
        )
    };
    // One event is replayed the runbook's database way, the other by republishing it.
    let (reset_id, republished_id) = (Uuid::new_v4(), Uuid::new_v4());
    let (reset, republished) = (allocation(reset_id), allocation(republished_id));

    let worker = Worker::start(pool.clone(), &url, buggy.clone()).await?;
    let publisher = Publisher::connect(&url, &buggy.exchange).await?;
    publisher
        .publish_all(&[reset.clone(), republished.clone()])
        .await?;
    let both_failed = wait_for("the buggy worker to fail both events", || async {
        Ok(worker.stats().failed == 2)
    })
    .await;
    worker.stop().await?;

    let fixed = WorkerConfig {
        failing: FailureMode::None,
        ..buggy.clone()
    };
    let worker = Worker::start(pool.clone(), &url, fixed).await?;
    let outcome = async {
        both_failed?;
        let (status, retries, message): (String, i32, Option<String>) = sqlx::query_as(
            "SELECT status, retry_count, error_message FROM processed_events WHERE event_id = $1",
        )
        .bind(&reset.event_id)
        .fetch_one(&pool)
        .await?;
        assert_eq!((status.as_str(), retries), ("error", 1));
        assert!(
            message
                .unwrap_or_default()
                .contains("violates not-null constraint")
        );
        assert_eq!(
            allocations(&pool).await?,
            0,
            "a failed event has no side effects"
        );

        sqlx::query(
            "UPDATE processed_events \
             SET status = 'pending', retry_count = 0, error_message = NULL, processed_at = NULL \
             WHERE event_id = $1",
        )
        .bind(&reset.event_id)
        .execute(&pool)
        .await?;
        publisher.publish(&republished).await?;
        for e in [&reset, &republished] {
            wait_for("the fixed worker to process the event", || async {
                Ok(event_status(&pool, &e.event_id).await?.as_deref() == Some("processed"))
            })
            .await?;
        }
        // Once processed, a further delivery changes nothing.
        publisher.publish(&republished).await?;
        wait_for("the duplicate to be skipped", || async {
            Ok(worker.stats().duplicates == 1)
        })
        .await?;
        anyhow::Ok(())
    }
    .await;

    let stats = worker.stop().await?;
    publisher.delete_topology(&buggy.queue).await?;
    publisher.close().await?;
    outcome?;

    assert_eq!(
        stats,
        WorkerStats {
            processed: 2,
            failed: 0,
            duplicates: 1
        }
    );
    assert_eq!(allocations(&pool).await?, 2);
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM allocations ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let mut expected = vec![reset_id, republished_id];
    expected.sort();
    assert_eq!(ids, expected);
    Ok(())
}

async fn allocations(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM allocations")
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = false)]
async fn replaying_a_generated_world_repairs_failed_contributions(
    pool: PgPool,
) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 2_000,
        failed_share: 0.1,
        stuck_share: 0.0,
        ..small_world()
    };
    habitat::generate(&pool, &config).await?;
    let pending_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM contributions c WHERE c.status = 'pending' AND EXISTS ( \
             SELECT 1 FROM processed_events e WHERE e.status = 'error' \
             AND e.event_type IN ('contribution.approved', 'contribution.rejected') \
             AND e.payload->>'contribution_id' = c.id::text)",
    )
    .fetch_one(&pool)
    .await?;
    assert!(pending_before > 0, "the world must have damage to repair");

    let topology = own_topology(FailureMode::None);
    let worker = Worker::start(pool.clone(), &amqp_url(), topology.clone()).await?;
    // The runbook's "replay all failed events".
    let reset = sqlx::query(
        "UPDATE processed_events SET status = 'pending', retry_count = 0, error_message = NULL \
         WHERE status = 'error'",
    )
    .execute(&pool)
    .await?
    .rows_affected();
    let drained = wait_for("the replay to drain", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'pending'")
                .fetch_one(&pool)
                .await?;
        Ok(pending == 0)
    })
    .await;
    let stats = worker.stop().await?;
    let publisher = Publisher::connect(&amqp_url(), &topology.exchange).await?;
    publisher.delete_topology(&topology.queue).await?;
    publisher.close().await?;
    drained?;

    assert_eq!(reset, config.failed_events());
    assert_eq!(stats.processed + stats.failed, reset);
    let still_pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM contributions c WHERE c.status = 'pending' AND EXISTS ( \
             SELECT 1 FROM processed_events e \
             WHERE e.event_type IN ('contribution.approved', 'contribution.rejected') \
             AND e.payload->>'contribution_id' = c.id::text)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        still_pending, 0,
        "every decided contribution carries its decision"
    );
    Ok(())
}
