//! An http step calls an http(s) URL, with a timeout in range, statuses that are statuses, and
//! secrets named by environment variables.

use std::time::Duration;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::{RawPlan, Step};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for (i, step) in plan.steps.iter().enumerate() {
        let Step::Http(h) = step else { continue };
        let at = Location::root().key("steps").index(i);
        // A URL that starts with a template is judged when it is rendered.
        let url = h.url.trim_start();
        if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("{{")) {
            out.push(
                Diagnostic::error(
                    "http-url",
                    at.key("url"),
                    format!("`{}` is not an http:// or https:// URL", h.url),
                )
                .with_help("e.g. `{{ params.api }}/api/admin/replay-event` with a `string` parameter `api`"),
            );
        }
        match crate::plan::duration::parse(&h.timeout) {
            Err(reason) => out.push(Diagnostic::error("bad-value", at.key("timeout"), reason)),
            Ok(d) if d < Duration::from_millis(100) || d > Duration::from_secs(300) => {
                out.push(Diagnostic::error(
                    "out-of-range",
                    at.key("timeout"),
                    "an http step's `timeout` must be between 100ms and 5m",
                ))
            }
            Ok(_) => {}
        }
        for (j, status) in h.expect_status.iter().enumerate() {
            if !(100..=599).contains(status) {
                out.push(Diagnostic::error(
                    "out-of-range",
                    at.key("expect_status").index(j),
                    format!("`{status}` is not an HTTP status (100 to 599)"),
                ));
            }
        }
        for (name, var) in &h.secrets_env {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                out.push(
                    Diagnostic::error(
                        "bad-value",
                        at.key("secrets_env").key(name.clone()),
                        format!("`{var}` is not the name of an environment variable"),
                    )
                    .with_help("name the variable that holds the secret (`ADMIN_TOKEN`), never the secret itself"),
                );
            }
        }
    }
}
