//! Where an http step's calls go: an endpoint over reqwest (rustls, the system's CAs plus the
//! step's `ca_file`), with retries, or (dry-run) a rehearsal that keeps a sample and sends
//! nothing. Secrets come from the environment when the run starts and never reach output.

use crate::engine::canary::plan_step_id;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::TryStreamExt;
use rand::Rng;
use serde::Serialize;

use crate::engine::error::RunError;
use crate::engine::redact::redact_url;
use crate::plan::Plan;
use crate::plan::model::{HttpStep, Step};

/// One call as it will be made.
#[derive(Debug, Clone, Serialize)]
pub struct OutgoingRequest {
    /// The event it is for (none for an `each: once` call); failures name it.
    #[serde(skip)]
    pub event: Option<String>,
    /// The step that makes it.
    pub step: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Why a call did not come back accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The endpoint answered a status the step does not accept, and not one worth retrying (429,
    /// 5xx): the plan's failure.
    Rejected { status: u16, body: String },
    /// Connection errors, timeouts, 429 or 5xx until the retries ran out: a passing fault.
    Unreachable { attempts: u32, last: String },
    /// The endpoint's TLS certificate is not vouched for: it stays so, not retried.
    Certificate { message: String },
    /// The rendered call cannot be made at all (a URL without a scheme, a header name or value
    /// that HTTP does not allow): the plan's failure, never retried.
    Invalid { message: String },
}

/// A call that failed, with the event it was for.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub event: Option<String>,
    pub error: CallError,
}

impl Failed {
    /// `event `evt_1`: the endpoint answered 400 Bad Request: {"error":"…"}`, with the step's
    /// secrets masked.
    pub fn describe(&self, secrets: &[String]) -> String {
        let what = match &self.error {
            CallError::Rejected { status, body } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                match body.is_empty() {
                    true => format!("the endpoint answered {status} {reason}"),
                    false => format!("the endpoint answered {status} {reason}: {body}"),
                }
            }
            CallError::Unreachable { attempts, last } => {
                format!("no accepted answer after {attempts} attempt(s): {last}")
            }
            CallError::Certificate { message } => {
                format!("the endpoint's TLS certificate is refused: {message}")
            }
            CallError::Invalid { message } => format!("the call cannot be made: {message}"),
        };
        let text = match &self.event {
            Some(event) => format!("event `{event}`: {what}"),
            None => what,
        };
        mask_secrets(&text, secrets)
    }
}

/// Where an http step's calls go.
pub trait Requests {
    /// The step's secrets by name, as its templates see them (`{{ secrets.NAME }}`).
    fn secrets(&self, step: &str) -> serde_json::Value;
    /// The values to mask wherever the step's text is shown.
    fn masked(&self, step: &str) -> Vec<String>;
    /// Makes every call, at most the step's `in_flight` at once, each retried as the step says;
    /// returns once every one was accepted, or with the first that failed for good (the others
    /// in flight are dropped).
    async fn send_all(&self, step: &HttpStep, calls: Vec<OutgoingRequest>) -> Result<(), Failed>;
}

/// One http step's client and secrets, resolved before the first write.
struct Resolved {
    client: reqwest::Client,
    secrets: BTreeMap<String, String>,
}

/// The plan's endpoints: one client per http step.
pub struct Endpoints {
    steps: BTreeMap<String, Resolved>,
}

impl Endpoints {
    /// Reads every http step's secrets from the environment and its CA file: a variable that is
    /// not set, or a CA file that cannot be read, is a refusal before the first write.
    pub fn for_plan(plan: &Plan) -> Result<Endpoints, RunError> {
        let mut steps = BTreeMap::new();
        for step in &plan.raw.steps {
            let Step::Http(h) = step else { continue };
            let secrets = read_secrets(h)?;
            let client = client(h).map_err(RunError::Refused)?;
            steps.insert(h.id.clone(), Resolved { client, secrets });
        }
        Ok(Endpoints { steps })
    }
}

fn read_secrets(h: &HttpStep) -> Result<BTreeMap<String, String>, RunError> {
    h.secrets_env
        .iter()
        .map(|(name, var)| match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok((name.clone(), value)),
            _ => Err(RunError::Refused(format!(
                "step `{}` needs the environment variable `{var}` (its secret `{name}`), which is not set",
                h.id
            ))),
        })
        .collect()
}

/// A client for one step: rustls with the system's CAs and the step's `ca_file`, a pool of
/// connections as large as the calls in flight.
fn client(h: &HttpStep) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("replay/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(h.in_flight as usize)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &h.ca_file {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("step `{}`: cannot read the CA file `{path}`: {e}", h.id))?;
        let certs = reqwest::Certificate::from_pem_bundle(&bytes)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("step `{}`: `{path}` holds no PEM certificate", h.id))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("step `{}`: cannot set up its HTTP client: {e}", h.id))
}

impl Requests for Endpoints {
    fn secrets(&self, step: &str) -> serde_json::Value {
        self.steps
            .get(plan_step_id(step))
            .map(|r| serde_json::json!(r.secrets))
            .unwrap_or_else(|| serde_json::json!({}))
    }

    fn masked(&self, step: &str) -> Vec<String> {
        self.steps
            .get(plan_step_id(step))
            .map(|r| r.secrets.values().cloned().collect())
            .unwrap_or_default()
    }

    async fn send_all(&self, step: &HttpStep, calls: Vec<OutgoingRequest>) -> Result<(), Failed> {
        let Some(resolved) = self.steps.get(plan_step_id(&step.id)) else {
            return Err(Failed {
                event: None,
                error: CallError::Certificate {
                    message: format!("step `{}` has no client (a bug in replay)", step.id),
                },
            });
        };
        let policy = Policy::of(step);
        futures_util::stream::iter(calls.into_iter().map(Ok))
            .try_for_each_concurrent(step.in_flight.max(1) as usize, |call| {
                let (client, policy) = (&resolved.client, &policy);
                async move {
                    let event = call.event.clone();
                    call_once(client, policy, call)
                        .await
                        .map_err(|error| Failed { event, error })
                }
            })
            .await
    }
}

/// How one step's calls are judged and retried.
#[derive(Debug, Clone)]
pub struct Policy {
    pub timeout: Duration,
    pub retries: u32,
    /// Accepted statuses; any 2xx when empty.
    pub expect: Vec<u16>,
}

impl Policy {
    pub fn of(step: &HttpStep) -> Policy {
        Policy {
            timeout: crate::plan::duration::parse(&step.timeout).unwrap_or(Duration::from_secs(10)),
            retries: step.retries,
            expect: step.expect_status.clone(),
        }
    }

    pub fn accepts(&self, status: u16) -> bool {
        match self.expect.is_empty() {
            true => (200..300).contains(&status),
            false => self.expect.contains(&status),
        }
    }
}

/// Whether a status that is not accepted is worth another attempt.
pub fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// The longest `Retry-After` honoured: an endpoint asking for more is asked again after this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// `Retry-After` as seconds or an HTTP date (RFC 9110), from `now`; a date in the past is 0.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = (at.with_timezone(&chrono::Utc) - now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(RETRY_AFTER_CAP))
}

/// The wait before attempt `attempt + 1` (`attempt` from 1): 200 ms doubling to 10 s, plus up to
/// half again of jitter, so that calls that failed together do not come back together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(200)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(10));
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// One call, retried on connection errors, timeouts, 429 and 5xx (`Retry-After` honoured).
async fn call_once(
    client: &reqwest::Client,
    policy: &Policy,
    call: OutgoingRequest,
) -> Result<(), CallError> {
    let method =
        reqwest::Method::from_bytes(call.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut request = client
            .request(method.clone(), &call.url)
            .timeout(policy.timeout);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        let (last, wait) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if policy.accepts(status) {
                    return Ok(());
                }
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, chrono::Utc::now()));
                if !retryable(status) {
                    let body = response.text().await.unwrap_or_default();
                    return Err(CallError::Rejected {
                        status,
                        body: snippet(&body),
                    });
                }
                (format!("the endpoint answered {status}"), wait)
            }
            Err(e) => {
                if e.is_builder() {
                    return Err(CallError::Invalid {
                        message: crate::engine::redact::http_error(e),
                    });
                }
                if certificate(&e) {
                    return Err(CallError::Certificate {
                        message: describe(e, &call.url),
                    });
                }
                (describe(e, &call.url), None)
            }
        };
        if attempt > policy.retries {
            return Err(CallError::Unreachable {
                attempts: attempt,
                last,
            });
        }
        let jitter = rand::rng().random_range(0.0..1.0);
        // `Retry-After` is honoured as a least wait: `0` or a date past never skips the backoff.
        let backoff = backoff(attempt, jitter);
        tokio::time::sleep(wait.map_or(backoff, |w| w.max(backoff))).await;
    }
}

/// A TLS failure (rustls reports a certificate it refuses as invalid data, which hyper's
/// connector wraps in another I/O error), where a refused or reset connection is a passing fault.
fn certificate(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        // An I/O error's `source` skips the error it wraps: look inside by hand.
        let mut io = cause.downcast_ref::<std::io::Error>();
        while let Some(error) = io {
            if error.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            io = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<std::io::Error>());
        }
        source = cause.source();
    }
    false
}

/// The error and its causes on one line, with the URL only as its host (its path or query may
/// hold a secret).
fn describe(e: reqwest::Error, url: &str) -> String {
    format!(
        "{} ({})",
        endpoint(url),
        crate::engine::redact::http_error(e)
    )
}

/// `https://api.example/…`: the scheme and host, never the path or the user info.
pub fn endpoint(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, _) = crate::engine::redact::split_authority(rest);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/…")
        }
        None => "…".into(),
    }
}

/// The start of a response body, on one line.
fn snippet(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// Replaces every secret value in `text` with `***`.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    // Longest first: a secret inside another never leaves the other's rest showing.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// Whether a header's value is a credential: `Authorization`, cookies, and any header whose name
/// holds `token`, `key`, `secret`, `password` or `auth` (but `Idempotency-Key`, which is the
/// event's id).
pub fn sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name == "idempotency-key" {
        return false;
    }
    name.contains("cookie")
        || ["token", "key", "secret", "password", "auth"]
            .iter()
            .any(|w| name.contains(w))
}

/// The call as a report may show it: credential headers `***`, the URL's password masked, and
/// every secret value masked wherever it stands.
pub fn masked(call: &OutgoingRequest, secrets: &[String]) -> OutgoingRequest {
    OutgoingRequest {
        event: call.event.clone(),
        step: call.step.clone(),
        method: call.method.clone(),
        url: mask_secrets(&redact_url(&call.url), secrets),
        headers: call
            .headers
            .iter()
            .map(|(k, v)| match sensitive_header(k) {
                true => (k.clone(), "***".to_string()),
                false => (k.clone(), mask_secrets(v, secrets)),
            })
            .collect(),
        body: call.body.as_deref().map(|b| mask_secrets(b, secrets)),
    }
}

/// The dry-run's endpoint: renders with every secret as `***`, keeps the first calls of each
/// step (masked), sends nothing.
pub struct Rehearsal {
    secrets: BTreeMap<String, Vec<String>>,
    per_step: usize,
    pub sample: RefCell<Vec<OutgoingRequest>>,
}

impl Rehearsal {
    /// Checks what a real run checks before its first write (secrets set, CA files readable), so
    /// the dry-run fails where the run would; keeps the secrets' names only.
    pub fn for_plan(plan: &Plan, per_step: usize) -> Result<Rehearsal, RunError> {
        Endpoints::for_plan(plan)?;
        let secrets = plan
            .raw
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Http(h) => Some((h.id.clone(), h.secrets_env.keys().cloned().collect())),
                _ => None,
            })
            .collect();
        Ok(Rehearsal {
            secrets,
            per_step,
            sample: RefCell::new(Vec::new()),
        })
    }
}

impl Requests for Rehearsal {
    fn secrets(&self, step: &str) -> serde_json::Value {
        let names = self
            .secrets
            .get(plan_step_id(step))
            .cloned()
            .unwrap_or_default();
        serde_json::Value::Object(
            names
                .into_iter()
                .map(|n| (n, serde_json::Value::String("***".into())))
                .collect(),
        )
    }

    fn masked(&self, _step: &str) -> Vec<String> {
        Vec::new()
    }

    async fn send_all(&self, step: &HttpStep, calls: Vec<OutgoingRequest>) -> Result<(), Failed> {
        let mut sample = self.sample.borrow_mut();
        let kept = sample.iter().filter(|c| c.step == step.id).count();
        sample.extend(
            calls
                .iter()
                .take(self.per_step.saturating_sub(kept))
                .map(|c| masked(c, &[])),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_inside_another_leaves_nothing_of_either() {
        let secrets = vec!["abc".to_string(), "abcdef".to_string()];
        assert_eq!(
            mask_secrets("token abcdef and abc", &secrets),
            "token *** and ***"
        );
    }

    fn case(value: &str, expected: Option<u64>) {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            retry_after(value, now),
            expected.map(Duration::from_secs),
            "{value}"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_capped_at_a_minute() {
        case("3", Some(3));
        case(" 0 ", Some(0));
        case("7200", Some(60));
        case("Wed, 21 Oct 2015 07:28:05 GMT", Some(5));
        case("Wed, 21 Oct 2015 07:27:00 GMT", Some(0));
        case("Wed, 21 Oct 2015 09:28:00 GMT", Some(60));
        case("soon", None);
        case("-1", None);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_with_at_most_half_again_of_jitter() {
        let ms = |attempt, jitter| backoff(attempt, jitter).as_millis();
        assert_eq!(ms(1, 0.0), 200);
        assert_eq!(ms(2, 0.0), 400);
        assert_eq!(ms(3, 0.0), 800);
        assert_eq!(ms(7, 0.0), 10_000);
        assert_eq!(ms(40, 0.0), 10_000);
        assert_eq!(ms(1, 1.0), 300);
        assert_eq!(ms(7, 0.999_999), 14_999);
    }

    #[test]
    fn which_statuses_are_accepted_and_which_retried() {
        let any_2xx = Policy {
            timeout: Duration::from_secs(1),
            retries: 0,
            expect: vec![],
        };
        assert!(any_2xx.accepts(200) && any_2xx.accepts(204) && !any_2xx.accepts(302));
        let listed = Policy {
            expect: vec![202, 409],
            ..any_2xx
        };
        assert!(listed.accepts(409) && !listed.accepts(200));
        for (status, retried) in [
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
            (409, false),
        ] {
            assert_eq!(retryable(status), retried, "{status}");
        }
    }

    #[test]
    fn credentials_never_reach_a_report() {
        let call = OutgoingRequest {
            event: Some("evt_1".into()),
            step: "api".into(),
            method: "POST".into(),
            url: "https://ops:pw@api.example/replay?token=s3cr3t".into(),
            headers: vec![
                ("Authorization".into(), "Bearer s3cr3t".into()),
                ("X-Api-Key".into(), "k".into()),
                ("X-Session-Token".into(), "t".into()),
                ("Idempotency-Key".into(), "evt_1".into()),
                ("X-Note".into(), "carries s3cr3t".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Some(r#"{"event_id":"evt_1","token":"s3cr3t"}"#.into()),
        };
        let shown = masked(&call, &["s3cr3t".into()]);
        assert_eq!(shown.url, "https://ops:***@api.example/replay?token=***");
        assert_eq!(
            shown.headers,
            [
                ("Authorization".to_string(), "***".to_string()),
                ("X-Api-Key".into(), "***".into()),
                ("X-Session-Token".into(), "***".into()),
                ("Idempotency-Key".into(), "evt_1".into()),
                ("X-Note".into(), "carries ***".into()),
                ("Content-Type".into(), "application/json".into()),
            ]
        );
        assert_eq!(
            shown.body.as_deref(),
            Some(r#"{"event_id":"evt_1","token":"***"}"#)
        );
        assert_eq!(
            endpoint("https://u:p@api.example:8443/a?b=c"),
            "https://api.example:8443/…"
        );
        let failed = Failed {
            event: Some("evt_1".into()),
            error: CallError::Rejected {
                status: 401,
                body: "bad token s3cr3t".into(),
            },
        };
        assert_eq!(
            failed.describe(&["s3cr3t".into()]),
            "event `evt_1`: the endpoint answered 401 Unauthorized: bad token ***"
        );
    }
}
