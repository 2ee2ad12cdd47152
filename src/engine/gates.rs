//! Safety gates checked before any write (and shown by the dry-run).

use chrono::{Datelike, Timelike};

use crate::plan::Plan;
use crate::plan::model::{Weekday, Window};

/// One gate's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateResult {
    pub gate: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The gates that depend on the selection size and the clock.
pub fn check(plan: &Plan, selected: u64, now: chrono::DateTime<chrono::Utc>) -> Vec<GateResult> {
    let safety = &plan.raw.safety;
    let mut out = vec![GateResult {
        gate: "max_events",
        passed: selected <= safety.max_events,
        detail: format!(
            "{selected} selected; the plan allows at most {}",
            safety.max_events
        ),
    }];
    if let Some(window) = &safety.window {
        let (passed, detail) = window_open(window, now);
        out.push(GateResult {
            gate: "window",
            passed,
            detail,
        });
    }
    if safety.force {
        out.push(GateResult {
            gate: "force",
            passed: safety.acknowledge.is_some(),
            detail: "WARNING: idempotency is bypassed; side effects (emails, payments) may repeat"
                .into(),
        });
    }
    out
}

fn window_open(window: &Window, now: chrono::DateTime<chrono::Utc>) -> (bool, String) {
    let Ok(tz) = window.timezone.parse::<chrono_tz::Tz>() else {
        return (false, format!("unknown time zone `{}`", window.timezone));
    };
    let local = now.with_timezone(&tz);
    let minutes = |hhmm: &str| -> u32 {
        let (h, m) = hhmm.split_once(':').unwrap_or(("0", "0"));
        h.parse::<u32>().unwrap_or(0) * 60 + m.parse::<u32>().unwrap_or(0)
    };
    let (from, to) = window.between.split_once('-').unwrap_or(("00:00", "00:00"));
    let (from, to, at) = (
        minutes(from),
        minutes(to),
        local.hour() * 60 + local.minute(),
    );
    let in_time = if from <= to {
        at >= from && at < to
    } else {
        at >= from || at < to
    };
    let day = match local.weekday() {
        chrono::Weekday::Mon => Weekday::Mon,
        chrono::Weekday::Tue => Weekday::Tue,
        chrono::Weekday::Wed => Weekday::Wed,
        chrono::Weekday::Thu => Weekday::Thu,
        chrono::Weekday::Fri => Weekday::Fri,
        chrono::Weekday::Sat => Weekday::Sat,
        chrono::Weekday::Sun => Weekday::Sun,
    };
    let in_day = window.days.is_empty() || window.days.contains(&day);
    (
        in_time && in_day,
        format!(
            "now {} {}; window {} {}",
            local.format("%a %H:%M"),
            window.timezone,
            window.between,
            if window.days.is_empty() {
                String::new()
            } else {
                format!("{:?}", window.days)
            }
        ),
    )
}
