//! Tests of the Habitat reference world.

use std::collections::BTreeMap;

use replay::habitat::{self, EventType, GeneratorConfig};
use sqlx::PgPool;

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
    Ok(())
}
