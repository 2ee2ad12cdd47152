//! Each webhook names exactly one URL source, an http(s) URL, and a timeout in range.

use std::time::Duration;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for (i, hook) in plan.notify.iter().enumerate() {
        let at = Location::root().key("notify").index(i);
        match (&hook.url, &hook.url_env) {
            (Some(_), Some(_)) => out.push(Diagnostic::error(
                "notify-url",
                at.clone(),
                "give `url` or `url_env`, not both",
            )),
            (None, None) => out.push(
                Diagnostic::error(
                    "notify-url",
                    at.clone(),
                    "a webhook needs `url_env` or `url`",
                )
                .with_help("`url_env: SLACK_WEBHOOK_URL` keeps the secret out of the plan"),
            ),
            (Some(url), None) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                out.push(Diagnostic::error(
                    "notify-url",
                    at.key("url"),
                    format!("`{url}` is not an http:// or https:// URL"),
                ))
            }
            _ => {}
        }
        match crate::plan::duration::parse(&hook.timeout) {
            Err(reason) => out.push(Diagnostic::error("bad-value", at.key("timeout"), reason)),
            Ok(d) if d < Duration::from_millis(100) || d > Duration::from_secs(60) => {
                out.push(Diagnostic::error(
                    "out-of-range",
                    at.key("timeout"),
                    "a webhook's `timeout` must be between 100ms and 1m: a run never waits longer for it",
                ))
            }
            Ok(_) => {}
        }
    }
}
