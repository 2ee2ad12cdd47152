//! Webhook notifications of a run's moments (`notify:`): a Slack-compatible JSON body, sent in
//! the background with retries, never blocking or failing the run; each delivery is recorded.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde_json::json;

use crate::engine::events::{Reporter, RunEvent};
use crate::engine::report::Report;
use crate::plan::Plan;
use crate::plan::model::NotifyOn;

/// One webhook, resolved.
#[derive(Debug, Clone)]
struct Hook {
    url: String,
    on: Vec<NotifyOn>,
    timeout: Duration,
    retries: u32,
}

/// How one notification went (recorded in the run log and the report).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivery {
    pub moment: &'static str,
    /// The receiver's scheme and host only: webhook paths hold secrets.
    pub receiver: String,
    pub delivered: bool,
    pub attempts: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// What a notification says.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub moment: &'static str,
    pub plan: String,
    pub target: String,
    pub target_name: Option<String>,
    pub run_id: Option<String>,
    pub outcome: String,
    pub selected: u64,
    /// `(step, rows or messages)` so far.
    pub steps: Vec<(String, u64)>,
    pub duration_secs: f64,
    /// The command that shows the run.
    pub inspect: Option<String>,
}

impl Message {
    pub fn of(moment: NotifyOn, report: &Report, duration: Duration) -> Message {
        Message {
            moment: moment.as_str(),
            plan: report.plan.clone(),
            target: report.target.clone(),
            target_name: report.target_name.clone(),
            run_id: report.run_id.clone(),
            outcome: match moment {
                NotifyOn::Start => "started".into(),
                _ => report.status.clone(),
            },
            selected: report.selected,
            steps: report
                .steps
                .iter()
                .map(|s| (s.id.clone(), s.touched))
                .collect(),
            duration_secs: duration.as_secs_f64(),
            inspect: report
                .run_id
                .as_ref()
                .map(|id| format!("replay status {id}")),
        }
    }

    /// `{"text": …, "replay": {…}}`: Slack shows the text; other receivers read the fields.
    fn body(&self) -> serde_json::Value {
        let target = match &self.target_name {
            Some(name) => format!("{name} ({})", self.target),
            None => self.target.clone(),
        };
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(id, n)| format!("{id} {n}"))
            .collect();
        let mut text = format!(
            "replay: plan `{}` on {target}: {} ({} selected event(s)",
            self.plan, self.outcome, self.selected
        );
        if !steps.is_empty() {
            text.push_str(&format!("; {}", steps.join(", ")));
        }
        text.push_str(&format!(", {:.1} s)", self.duration_secs));
        if let Some(inspect) = &self.inspect {
            text.push_str(&format!(". Inspect: `{inspect}`"));
        }
        json!({ "text": text, "replay": self })
    }
}

/// The plan's webhooks and the deliveries under way.
pub struct Notifier {
    hooks: Vec<Hook>,
    client: Option<reqwest::Client>,
    pending: Vec<(NotifyOn, String, tokio::task::JoinHandle<Delivery>)>,
    done: Vec<Delivery>,
    started: bool,
    /// Webhooks that could not be set up (an unset variable): said, never fatal.
    pub warnings: Vec<String>,
}

impl Notifier {
    /// The plan's webhooks; a URL variable that is not set is a warning, not a refusal.
    pub fn new(plan: &Plan) -> Notifier {
        let mut warnings = Vec::new();
        let hooks: Vec<Hook> = plan
            .raw
            .notify
            .iter()
            .filter_map(|n| {
                let url = match (&n.url, &n.url_env) {
                    (Some(url), _) => url.clone(),
                    (None, Some(var)) => match std::env::var(var) {
                        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
                        _ => {
                            warnings.push(format!(
                                "notifications not sent: the environment variable `{var}` is not set"
                            ));
                            return None;
                        }
                    },
                    (None, None) => return None,
                };
                Some(Hook {
                    url,
                    on: match n.on.is_empty() {
                        true => vec![
                            NotifyOn::Start,
                            NotifyOn::Finish,
                            NotifyOn::Failure,
                            NotifyOn::Stop,
                            NotifyOn::Guard,
                        ],
                        false => n.on.clone(),
                    },
                    timeout: crate::plan::duration::parse(&n.timeout)
                        .unwrap_or(Duration::from_secs(5)),
                    retries: n.retries,
                })
            })
            .collect();
        let client = match hooks.is_empty() {
            true => None,
            false => reqwest::Client::builder()
                .user_agent(concat!("replay/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| warnings.push(format!("notifications not sent: {e}")))
                .ok(),
        };
        Notifier {
            hooks,
            client,
            pending: Vec::new(),
            done: Vec::new(),
            started: false,
            warnings,
        }
    }

    /// Sends `message` to every webhook that asked for its moment, in the background.
    pub fn send(&mut self, moment: NotifyOn, message: &Message) {
        let Some(client) = &self.client else { return };
        if moment == NotifyOn::Start {
            if self.started {
                return;
            }
            self.started = true;
        }
        for hook in self.hooks.iter().filter(|h| h.on.contains(&moment)) {
            let (client, hook, body) = (client.clone(), hook.clone(), message.body());
            let to = receiver(&hook.url);
            self.pending.push((
                moment,
                to,
                tokio::spawn(async move { deliver(&client, &hook, moment, &body).await }),
            ));
        }
    }

    /// Waits for the deliveries under way, at most the longest webhook timeout (so a dead
    /// receiver costs the run its timeout once); what is still under way then is given up.
    pub async fn finish(mut self) -> Vec<Delivery> {
        let limit = self
            .hooks
            .iter()
            .map(|h| h.timeout)
            .max()
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + limit;
        for (moment, to, handle) in std::mem::take(&mut self.pending) {
            let abort = handle.abort_handle();
            match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(delivery)) => self.done.push(delivery),
                Ok(Err(_)) => {}
                Err(_) => {
                    abort.abort();
                    self.done.push(Delivery {
                        moment: moment.as_str(),
                        receiver: to,
                        delivered: false,
                        attempts: 0,
                        status: None,
                        error: Some(format!(
                            "still under way when the run ended; given up after {}",
                            crate::plan::duration::format(limit)
                        )),
                    });
                }
            }
        }
        self.done
    }
}

/// What the end of a run sent, to put in its report.
pub struct Told {
    deliveries: Vec<Delivery>,
    warnings: Vec<String>,
}

impl Told {
    pub fn apply_to(self, report: &mut Report) {
        report.notifications.extend(self.deliveries);
        report.warnings.extend(self.warnings);
    }
}

/// Sends the outcome of the run when this process drove it (started it or took it over; an
/// executor that only shared another's batches leaves that to the run's leader), waits for the deliveries as `finish` does, and records each
/// in the run log.
pub async fn tell_outcome(
    mut notifier: Notifier,
    report: &Report,
    started_at: std::time::Instant,
    connection: &crate::engine::Connection,
) -> Told {
    if report.led
        && let Some(moment) = moment_of(&report.status)
    {
        notifier.send(moment, &Message::of(moment, report, started_at.elapsed()));
    }
    let warnings = std::mem::take(&mut notifier.warnings);
    let deliveries = notifier.finish().await;
    if let (false, Some(run_id)) = (
        deliveries.is_empty(),
        report.run_id.as_deref().and_then(|id| id.parse().ok()),
    ) && let Ok(pool) = crate::engine::state::connect(&connection.database_url).await
    {
        for d in &deliveries {
            crate::engine::state::log(&pool, run_id, "notify", None, json!(d)).await;
        }
        pool.close().await;
    }
    Told {
        deliveries,
        warnings,
    }
}

/// Tells the notifier of the run's start, and passes every event on.
pub struct Notifying<'a> {
    pub inner: &'a mut dyn Reporter,
    pub notifier: &'a mut Notifier,
    pub report: Report,
    pub started_at: std::time::Instant,
}

impl Reporter for Notifying<'_> {
    fn event(&mut self, event: &RunEvent) {
        if let RunEvent::RunStarted {
            run_id, selected, ..
        } = event
        {
            self.report.run_id = Some(run_id.clone());
            self.report.selected = *selected;
            let message = Message::of(NotifyOn::Start, &self.report, self.started_at.elapsed());
            self.notifier.send(NotifyOn::Start, &message);
        }
        self.inner.event(event);
    }
}

/// The moment a finished attempt's status is: none for a dry-run's statuses.
pub fn moment_of(status: &str) -> Option<NotifyOn> {
    match status {
        "succeeded" => Some(NotifyOn::Finish),
        "failed" | "rolled_back" | "refused" | "abandoned" => Some(NotifyOn::Failure),
        "stopped" | "interrupted" => Some(NotifyOn::Stop),
        _ => None,
    }
}

/// Posts with retries on connection errors, 429 and 5xx (honouring `Retry-After`), each attempt
/// bounded by the webhook's timeout.
async fn deliver(
    client: &reqwest::Client,
    hook: &Hook,
    moment: NotifyOn,
    body: &serde_json::Value,
) -> Delivery {
    let receiver = receiver(&hook.url);
    let mut delivery = Delivery {
        moment: moment.as_str(),
        receiver,
        delivered: false,
        attempts: 0,
        status: None,
        error: None,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        delivery.attempts += 1;
        let sent = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .json(body)
            .send()
            .await;
        let retry_after = match sent {
            Ok(response) => {
                let status = response.status();
                delivery.status = Some(status.as_u16());
                if status.is_success() {
                    delivery.delivered = true;
                    delivery.error = None;
                    return delivery;
                }
                delivery.error = Some(format!("the receiver answered {status}"));
                if !(status.as_u16() == 429 || status.is_server_error()) {
                    return delivery;
                }
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            Err(e) => {
                // The error's URL would show the webhook's secret path; its causes say what
                // happened (refused, timed out, a certificate).
                let text = crate::engine::redact::http_error(e);
                delivery.error = Some(crate::engine::redact::scrub(&text, &hook.url));
                None
            }
        };
        if delivery.attempts > hook.retries {
            return delivery;
        }
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        let wait = retry_after
            .unwrap_or(backoff + Duration::from_millis(jitter))
            .min(hook.timeout);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `https://hooks.slack.com/…`: the scheme and host, never the path that holds the secret.
fn receiver(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}/…")
        }
        None => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_is_shown_without_its_secret_path() {
        assert_eq!(
            receiver("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            receiver("http://u:pw@127.0.0.1:9/x?token=s"),
            "http://127.0.0.1:9/…"
        );
    }

    #[test]
    fn the_body_is_slack_text_with_the_fields_beside_it() {
        let message = Message {
            moment: "finish",
            plan: "replay-failed".into(),
            target: "db:5432/habitat".into(),
            target_name: Some("production".into()),
            run_id: Some("5c1d".into()),
            outcome: "succeeded".into(),
            selected: 120,
            steps: vec![("reset".into(), 120)],
            duration_secs: 3.24,
            inspect: Some("replay status 5c1d".into()),
        };
        let body = message.body();
        assert_eq!(
            body["text"],
            "replay: plan `replay-failed` on production (db:5432/habitat): succeeded (120 selected event(s); reset 120, 3.2 s). Inspect: `replay status 5c1d`"
        );
        assert_eq!(body["replay"]["moment"], "finish");
        assert_eq!(body["replay"]["run_id"], "5c1d");
        assert_eq!(moment_of("rolled_back"), Some(NotifyOn::Failure));
        assert_eq!(moment_of("would_run"), None);
    }
}
