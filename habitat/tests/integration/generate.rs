//! `habitat generate`: the counts asked for, a populated database refused, `--replace`.

use sqlx::PgPool;

use super::support::{database_url, run, text};

async fn by_status(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, count(*) FROM processed_events GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?)
}

#[sqlx::test(migrations = false)]
async fn generate_makes_the_counts_asked_for_up_to_now(pool: PgPool) -> anyhow::Result<()> {
    let url = database_url(&pool).await?;
    let out = run(&[
        "generate",
        "--database-url",
        &url,
        "--events",
        "2000",
        "--failed-pct",
        "5",
        "--stuck-pct",
        "1.5",
        "--days",
        "1",
    ])?;
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert_eq!(
        by_status(&pool).await?,
        [
            ("error".to_owned(), 100),
            ("processed".to_owned(), 1870),
            ("processing".to_owned(), 30)
        ]
    );
    assert!(
        printed.contains("generated 2,000 events over the last day"),
        "{printed}"
    );
    assert!(printed.contains("processed  1,870"), "{printed}");
    assert!(printed.contains("error        100"), "{printed}");
    assert!(printed.contains("processing    30"), "{printed}");
    // The history ends now (the generator's clock is this run's), one day long.
    let (oldest_hours, newest_hours): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM now() - min(processed_at))::float8 / 3600, \
                extract(epoch FROM now() - max(processed_at))::float8 / 3600 \
         FROM processed_events",
    )
    .fetch_one(&pool)
    .await?;
    assert!(oldest_hours <= 24.5, "oldest event {oldest_hours} h ago");
    assert!(newest_hours < 12.0, "newest event {newest_hours} h ago");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_database_holding_events_is_refused_and_replace_empties_it_first(
    pool: PgPool,
) -> anyhow::Result<()> {
    let url = database_url(&pool).await?;
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool)
        .await?;
    let generate = |events: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--database-url",
            &url,
            "--events",
            events,
            "--failed-pct",
            "10",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let first = generate("1200", &[])?;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    let refused = generate("500", &[])?;
    let printed = text(&refused);
    assert_eq!(refused.status.code(), Some(4), "{printed}");
    assert!(
        printed.contains(&format!(
            "error: refused to generate into database `{db}` (postgres://"
        )),
        "{printed}"
    );
    assert!(
        printed.contains("it already holds 1,200 events"),
        "{printed}"
    );
    assert!(printed.contains("`--replace`"), "{printed}");
    assert_eq!(
        by_status(&pool).await?,
        [("error".to_owned(), 120), ("processed".to_owned(), 1080)],
        "the refusal changed nothing"
    );

    let replaced = generate("500", &["--replace", "--seed", "7"])?;
    let printed = text(&replaced);
    assert_eq!(replaced.status.code(), Some(0), "{printed}");
    assert!(printed.contains("replacing what it held"), "{printed}");
    assert_eq!(
        by_status(&pool).await?,
        [("error".to_owned(), 50), ("processed".to_owned(), 450)]
    );
    // Ids restart: the replaced world is the one a fresh database would get.
    let min_id: i64 = sqlx::query_scalar("SELECT min(id) FROM processed_events")
        .fetch_one(&pool)
        .await?;
    assert_eq!(min_id, 1);
    Ok(())
}

#[test]
fn percentages_outside_0_to_100_or_adding_up_past_100_are_usage_errors() -> anyhow::Result<()> {
    let url = "postgres://postgres@127.0.0.1:1/never";
    for (failed, stuck, expected) in [
        ("101", "0", "`101` is not a percentage from 0 to 100"),
        ("-1", "0", "`-1` is not a percentage from 0 to 100"),
        ("five", "0", "`five` is not a percentage from 0 to 100"),
        ("5", "100.5", "`100.5` is not a percentage from 0 to 100"),
        (
            "60",
            "50",
            "--failed-pct 60 and --stuck-pct 50 add up to more than 100",
        ),
    ] {
        let out = run(&[
            "generate",
            "--database-url",
            url,
            "--events",
            "10",
            &format!("--failed-pct={failed}"),
            &format!("--stuck-pct={stuck}"),
        ])?;
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(2), "{failed}/{stuck}: {printed}");
        assert!(printed.contains(expected), "{failed}/{stuck}: {printed}");
    }
    Ok(())
}

#[test]
fn an_unreachable_database_fails_naming_it_without_its_password() -> anyhow::Result<()> {
    let out = run(&[
        "generate",
        "--database-url",
        "postgres://postgres:hunter2-secret@127.0.0.1:1/mine",
        "--events",
        "10",
        "--failed-pct",
        "1",
    ])?;
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed
            .contains("error: connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/mine"),
        "{printed}"
    );
    assert!(printed.contains("Connection refused"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    Ok(())
}
