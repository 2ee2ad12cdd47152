//! `kind: http` against endpoints started here (Habitat's minimal HTTP server): every event gets
//! exactly one accepted call, 503s and 429s are retried, a SIGKILL and resume loses no call and
//! repeats calls of one batch at most, a rejected call fails the step naming its event, an
//! endpoint that stays down is a passing fault, a dry-run sends nothing and shows no secret; and
//! the shipped `replay-via-api.yaml` against Habitat's own admin API.

use super::process::*;
use super::support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use habitat::http::{Request, Response, Server, serve};
use sqlx::PgPool;

const TOKEN: &str = "s3cr3t-admin-token-for-tests";

/// One call the endpoint received, and what it answered.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    status: u16,
    authorization: Option<String>,
    body: String,
}

/// An endpoint whose answer to the n-th attempt (from 1) carrying an `Idempotency-Key` is
/// `answer(key, n)`, after `delay`; every call is kept.
struct Endpoint {
    server: Server,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Endpoint {
    async fn start(
        delay: Duration,
        answer: impl Fn(&str, usize) -> u16 + Send + Sync + 'static,
    ) -> anyhow::Result<Endpoint> {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::new(Mutex::new(Vec::new()));
        let kept = calls.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = serve(listener, move |request: Request| {
            let key = request.header("idempotency-key").unwrap_or("").to_string();
            let status = {
                let mut calls = kept.lock().expect("endpoint lock");
                let attempt = calls.iter().filter(|c| c.key == key).count() + 1;
                let status = answer(&key, attempt);
                calls.push(Call {
                    key,
                    status,
                    authorization: request.header("authorization").map(str::to_string),
                    body: String::from_utf8_lossy(&request.body).into_owned(),
                });
                status
            };
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Response::new(status).with_header("retry-after", "0")
            }
        })?;
        Ok(Endpoint { server, calls })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("endpoint lock").clone()
    }

    /// Accepted (2xx) calls per key.
    fn accepted(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self
            .calls()
            .iter()
            .filter(|c| (200..300).contains(&c.status))
        {
            *out.entry(c.key.clone()).or_default() += 1;
        }
        out
    }
}

fn plan(dir: &tempfile::TempDir, name: &str, batch: u32, step: &str) -> String {
    plan_file(
        dir,
        name,
        &format!(
            "params:\n  api: {{ type: string }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 100000, batch_size: {batch} }}\nsteps:\n  - id: call\n    kind: http\n    url: \"{{{{ params.api }}}}/api/admin/replay-event\"\n    secrets_env: {{ token: REPLAY_TEST_TOKEN }}\n    headers: {{ Authorization: \"Bearer {{{{ secrets.token }}}}\", Content-Type: application/json }}\n    body: '{{\"event_id\": {{{{ json event.event_id }}}}, \"force\": false}}'\n{step}"
        ),
    )
    .to_string_lossy()
    .into_owned()
}

/// `replay` with the token in its environment, without blocking the test's runtime (on which
/// the endpoint answers).
async fn apply(args: &[&str], url: &str) -> Output {
    let mut command = tokio::process::Command::from(replay(args, url));
    command
        .env("REPLAY_TEST_TOKEN", TOKEN)
        .output()
        .await
        .expect("run replay")
}

fn start_apply(args: &[&str], url: &str) -> Running {
    let mut command = replay(args, url);
    command
        .env("REPLAY_TEST_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Running(Some(command.spawn().expect("spawn replay")))
}

async fn selected_ids(pool: &PgPool) -> anyhow::Result<BTreeSet<String>> {
    Ok(sqlx::query_scalar("SELECT event_id FROM replay.selection")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect())
}

#[sqlx::test(migrations = false)]
async fn every_event_gets_exactly_one_accepted_call_and_503s_and_429s_are_retried(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 300).await?;
    let url = database_url(&pool).await?;
    // Each event's first attempt gets a 503, its second a 429, its third is accepted.
    let endpoint = Endpoint::start(Duration::ZERO, |_, attempt| match attempt {
        1 => 503,
        2 => 429,
        _ => 200,
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(
        &dir,
        "http-retried",
        40,
        "    retries: 3\n    in_flight: 8\n",
    );
    let api = format!("api={}", endpoint.server.url());
    let out = apply(&["apply", &plan, "--param", &api], &url).await;
    assert_success(&out);
    assert_one_run(&pool, "succeeded", "the calls were all accepted").await?;
    let selected = selected_ids(&pool).await?;
    assert_eq!(selected.len() as i64, total);
    let accepted = endpoint.accepted();
    assert_eq!(
        accepted.keys().cloned().collect::<BTreeSet<_>>(),
        selected,
        "every selected event was called, with its id as Idempotency-Key"
    );
    assert!(
        accepted.values().all(|n| *n == 1),
        "exactly one accepted call per event"
    );
    let calls = endpoint.calls();
    assert_eq!(
        calls.len() as i64,
        3 * total,
        "a 503 and a 429 retried each"
    );
    for c in &calls {
        assert_eq!(
            c.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let body: serde_json::Value = serde_json::from_str(&c.body)?;
        assert_eq!(body["event_id"], c.key.as_str());
        assert_eq!(body["force"], false);
    }
    let text = output_text(&out);
    assert!(!text.contains(TOKEN), "the token is never printed:\n{text}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_killed_http_step_resumes_losing_no_call_and_repeats_calls_of_one_batch_at_most(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 600).await?;
    let url = database_url(&pool).await?;
    let endpoint = Endpoint::start(Duration::from_millis(5), |_, _| 200).await?;
    let dir = tempfile::tempdir()?;
    let batch = 20;
    let plan = plan(&dir, "http-killed", batch, "    in_flight: 4\n");
    let api = format!("api={}", endpoint.server.url());
    let mut child = start_apply(&["apply", &plan, "--param", &api], &url);
    checkpoint_midway(&pool, "call", total).await?;
    child.kill()?;
    let out = apply(&["apply", &plan, "--param", &api], &url).await;
    assert_success(&out);
    assert_one_run(&pool, "succeeded", "the resume finished the run").await?;
    let selected = selected_ids(&pool).await?;
    let accepted = endpoint.accepted();
    assert_eq!(
        accepted.keys().cloned().collect::<BTreeSet<_>>(),
        selected,
        "no call lost"
    );
    // The calls made twice are those of the batch the kill interrupted: one batch at most.
    let twice: Vec<String> = accepted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(accepted.values().all(|n| *n <= 2), "{accepted:?}");
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM replay.selection WHERE event_id = ANY($1) ORDER BY seq",
    )
    .bind(&twice)
    .fetch_all(&pool)
    .await?;
    let batches: BTreeSet<i64> = seqs.iter().map(|s| (s - 1) / i64::from(batch)).collect();
    assert!(
        batches.len() <= 1,
        "the calls made again lie in one batch of {batch}: seqs {seqs:?}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_rejected_call_fails_the_step_naming_its_event_and_never_the_token(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let poison: String = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE status = 'error' ORDER BY id LIMIT 1 OFFSET 30",
    )
    .fetch_one(&pool)
    .await?;
    let refused = poison.clone();
    let endpoint = Endpoint::start(Duration::ZERO, move |key, _| match key == refused {
        true => 400,
        false => 200,
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-rejected", 10, "    retries: 3\n");
    let api = format!("api={}", endpoint.server.url());
    let out = apply(&["apply", &plan, "--param", &api], &url).await;
    // No rollback actions: the run is failed, resumable once the cause is fixed.
    assert_exit(&out, 1);
    assert_one_run(&pool, "failed", "a rejected call is the plan's failure").await?;
    let text = output_text(&out);
    assert!(
        text.contains(&format!(
            "event `{poison}`: the endpoint answered 400 Bad Request"
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    let poisoned = endpoint.calls().iter().filter(|c| c.key == poison).count();
    assert_eq!(poisoned, 1, "a 400 is not retried");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn an_endpoint_that_stays_down_is_a_passing_fault_and_the_run_resumes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    let endpoint = Endpoint::start(Duration::ZERO, move |_, _| {
        match flag.load(Ordering::SeqCst) {
            true => 503,
            false => 200,
        }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-down", 25, "    retries: 1\n");
    let api = format!("api={}", endpoint.server.url());
    let out = apply(&["apply", &plan, "--param", &api, "--retries", "1"], &url).await;
    assert_exit(&out, 75);
    assert_one_run(&pool, "interrupted", "a passing fault outlasted the budget").await?;
    assert!(endpoint.accepted().is_empty());
    down.store(false, Ordering::SeqCst);
    let out = apply(&["apply", &plan, "--param", &api], &url).await;
    assert_success(&out);
    assert_one_run(&pool, "succeeded", "resumed once the endpoint came back").await?;
    let accepted = endpoint.accepted();
    assert_eq!(accepted.len() as i64, total);
    assert!(accepted.values().all(|n| *n == 1));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_dry_run_renders_the_calls_masks_the_token_and_sends_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let endpoint = Endpoint::start(Duration::ZERO, |_, _| 200).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-dry", 10, "");
    let api = format!("api={}", endpoint.server.url());
    let before = fingerprint(&pool).await?;
    let out = apply(
        &[
            "apply",
            &plan,
            "--dry-run",
            "--param",
            &api,
            "--format",
            "json",
        ],
        &url,
    )
    .await;
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let requests = report["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 3, "a sample of the calls: {report:#}");
    let first = &requests[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(
        first["url"],
        format!("{}/api/admin/replay-event", endpoint.server.url())
    );
    let headers: BTreeMap<String, String> = first["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
        .collect();
    assert_eq!(headers["Authorization"], "***");
    assert!(!headers["Idempotency-Key"].is_empty());
    assert!(
        first["body"]
            .as_str()
            .unwrap_or_default()
            .contains("\"force\": false")
    );
    for format in ["text", "markdown"] {
        let out = apply(
            &[
                "apply",
                &plan,
                "--dry-run",
                "--param",
                &api,
                "--format",
                format,
            ],
            &url,
        )
        .await;
        assert_success(&out);
        let text = output_text(&out);
        assert!(text.contains("/api/admin/replay-event"), "{format}: {text}");
        assert!(!text.contains(TOKEN), "{format}: {text}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
    assert!(endpoint.calls().is_empty(), "a dry-run sends nothing");
    assert_eq!(fingerprint(&pool).await?, before, "and changes nothing");
    // Without its secret, the dry-run says what the run would say: refused, naming the variable.
    let out = tokio::process::Command::from(replay(
        &["apply", &plan, "--dry-run", "--param", &api],
        &url,
    ))
    .env_remove("REPLAY_TEST_TOKEN")
    .output()
    .await?;
    assert_exit(&out, 4);
    assert!(
        output_text(&out).contains("`REPLAY_TEST_TOKEN`"),
        "{}",
        output_text(&out)
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn the_shipped_api_plan_replays_through_habitats_admin_api(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 400).await?;
    // The story of the demo: the contribution handlers had the bug; other failures are not ours.
    sqlx::query(
        "UPDATE processed_events SET status = 'processed', error_message = NULL \
         WHERE status = 'error' AND event_type NOT LIKE 'contribution.%'",
    )
    .execute(&pool)
    .await?;
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    assert!(failed > 0);
    let url = database_url(&pool).await?;
    let config = habitat::admin::AdminConfig {
        token: TOKEN.into(),
        failing: habitat::FailureMode::None,
    };
    let server = habitat::admin::start(pool.clone(), "127.0.0.1:0".parse()?, config).await?;
    let api = format!("api={}", server.url());
    let shipped = "plans/replay-via-api.yaml";
    let run_it = |dry: bool| {
        let mut args = vec![
            "apply",
            shipped,
            "--param",
            api.as_str(),
            "--param",
            "since=3d",
        ];
        if dry {
            args.push("--dry-run");
        }
        let mut command = tokio::process::Command::from(replay(&args, &url));
        command.env("ADMIN_TOKEN", TOKEN);
        command
    };
    let out = run_it(true).output().await?;
    assert_success(&out);
    // A wrong token is refused by the API: the step fails on its first call.
    let out = run_it(false)
        .env("ADMIN_TOKEN", "wrong-token-4711")
        .output()
        .await?;
    assert_exit(&out, 1);
    assert!(
        output_text(&out).contains("401 Unauthorized"),
        "{}",
        output_text(&out)
    );
    assert!(!output_text(&out).contains("wrong-token-4711"));
    // Fixed, the same run resumes and every selected event is processed through the API.
    let out = run_it(false).output().await?;
    assert_success(&out);
    assert_one_run(&pool, "succeeded", "the API replayed every event").await?;
    let still: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE event_id IN (SELECT event_id FROM replay.selection) AND status <> 'processed'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(still, 0, "every selected event processed");
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM replay.selection")
        .fetch_one(&pool)
        .await?;
    assert_eq!(calls, failed);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn https_trusts_the_steps_ca_file_and_refuses_an_unknown_ca(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let endpoint = Endpoint::start(Duration::ZERO, |_, _| 200).await?;
    let certs = tempfile::tempdir()?;
    let (ca, bundle) = super::tls::certificates(certs.path(), "http")?;
    let tls = super::tls::TlsEndpoint::in_front_of(&bundle, endpoint.server.addr.port()).await?;
    let api = format!("api=https://localhost:{}", tls.port);
    let dir = tempfile::tempdir()?;
    // A CA file that cannot be read is a refusal before the first write, naming it.
    let missing = plan(
        &dir,
        "https-missing-ca",
        25,
        "    ca_file: /nonexistent/ca.pem\n",
    );
    let out = apply(&["apply", &missing, "--param", &api], &url).await;
    assert_exit(&out, 4);
    assert!(
        output_text(&out).contains("/nonexistent/ca.pem"),
        "{}",
        output_text(&out)
    );
    // Without the CA: the certificate is refused, not retried, and nothing is called.
    let untrusted = plan(&dir, "https-untrusted", 25, "    retries: 5\n");
    let out = apply(&["apply", &untrusted, "--param", &api], &url).await;
    assert_exit(&out, 1);
    let text = output_text(&out);
    assert!(text.contains("TLS certificate is refused"), "{text}");
    assert!(!text.contains("Retrying"), "not retried: {text}");
    assert!(endpoint.calls().is_empty());
    // With it, every call is made over TLS and accepted (the failed run above holds the same
    // events, so the overlap gate is overridden).
    let trusted = plan(
        &dir,
        "https-trusted",
        25,
        &format!("    ca_file: {}\n", ca.display()),
    );
    let out = apply(
        &[
            "apply",
            &trusted,
            "--param",
            &api,
            "--override",
            "overlap",
            "--because",
            "the untrusted run made no call",
        ],
        &url,
    )
    .await;
    assert_success(&out);
    let accepted = endpoint.accepted();
    assert_eq!(accepted.len() as i64, total);
    assert!(accepted.values().all(|n| *n == 1));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn two_executors_share_an_http_step_and_call_each_event_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 600).await?;
    let url = database_url(&pool).await?;
    // Slow enough (about a second of calls) for the second executor to join in time.
    let endpoint = Endpoint::start(Duration::from_millis(10), |_, _| 200).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-shared", 10, "    in_flight: 4\n");
    let api = format!("api={}", endpoint.server.url());
    let args = ["apply", plan.as_str(), "--param", api.as_str(), "--join"];
    // Awaited, not waited for: the endpoint answers on this test's runtime.
    let (first, second) = tokio::join!(apply(&args, &url), apply(&args, &url));
    assert_success(&first);
    assert_success(&second);
    assert_one_run(&pool, "succeeded", "two executors finished one run").await?;
    let accepted = endpoint.accepted();
    assert_eq!(accepted.len() as i64, total, "every event called");
    assert!(
        accepted.values().all(|n| *n == 1),
        "each event called once, by one executor or the other"
    );
    let executors: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT claimed_by) FROM replay.batches WHERE step_id = 'call'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(executors, 2, "both executors made calls");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_call_that_cannot_be_made_fails_the_step_and_is_not_retried(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-no-scheme", 10, "");
    // An API parameter without its scheme: no request can be built from it.
    let out = apply(
        &["apply", &plan, "--param", "api=habitat.example.com"],
        &url,
    )
    .await;
    assert_exit(&out, 1);
    assert_one_run(
        &pool,
        "failed",
        "a call that cannot be made is the plan's failure",
    )
    .await?;
    let text = output_text(&out);
    assert!(text.contains("the call cannot be made"), "{text}");
    assert!(!text.contains("attempt"), "not retried: {text}");
    assert!(!text.contains(TOKEN), "{text}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_stop_makes_no_more_calls_of_the_batch_under_way_and_the_resume_makes_them(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    // A slow endpoint and one call at a time: a batch of 40 takes about 4 s.
    let endpoint = Endpoint::start(Duration::from_millis(100), |_, _| 200).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "http-stopped", 40, "    in_flight: 1\n");
    let api = format!("api={}", endpoint.server.url());
    let child = start_apply(&["apply", &plan, "--param", &api], &url);
    super::faults::until("the first calls of the batch", || async {
        endpoint.calls().len() >= 3
    })
    .await?;
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_success(&run(&["stop", &run_id.to_string(), "--no-wait"], &url));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    assert_exit(&out, 130);
    // The batch under way was left: not all its calls were made, and it is not recorded.
    let made = endpoint.calls().len();
    assert!(
        made < 40,
        "{made} calls: the stop waited for the whole batch"
    );
    let done: i64 =
        sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = 'call'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(done, 0);
    // The resume makes every call, those of the abandoned batch again (with their keys).
    let out = apply(&["apply", &plan, "--param", &api], &url).await;
    assert_success(&out);
    let selected = selected_ids(&pool).await?;
    let accepted = endpoint.accepted();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), selected);
    assert!(accepted.values().all(|n| *n <= 2), "{accepted:?}");
    Ok(())
}
