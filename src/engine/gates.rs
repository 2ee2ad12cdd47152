//! Safety gates checked before any write (and shown by the dry-run).

use chrono::{Datelike, Timelike};

use crate::plan::Plan;
use crate::plan::model::Window;

/// A safety gate, as `--override` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Gate {
    /// More events selected than `safety.max_events`.
    MaxEvents,
    /// No event selected, without `safety.allow_empty`.
    Empty,
    /// `select.all: true`: no filter.
    Unfiltered,
    /// Outside `safety.window`.
    Window,
    /// `safety.require_backup` without a backup.
    Backup,
    /// `safety.recent_dump`: no young enough `pg_dump` file.
    RecentDump,
    /// `safety.force` without its acknowledgement.
    Force,
    /// `safety.rehearsal` without the staging proof.
    Rehearsal,
    /// The frozen selection shares events with an unfinished run on the same target.
    Overlap,
    /// A routing key the plan will publish reaches no queue (judged by the dry-run, from the
    /// bindings the RabbitMQ management API reports).
    Routing,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::MaxEvents => "max_events",
            Gate::Empty => "empty",
            Gate::Unfiltered => "unfiltered",
            Gate::Window => "window",
            Gate::Backup => "backup",
            Gate::RecentDump => "recent_dump",
            Gate::Force => "force",
            Gate::Rehearsal => "rehearsal",
            Gate::Overlap => "overlap",
            Gate::Routing => "routing",
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One gate's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub passed: bool,
    pub detail: String,
    /// The reason given with `--override`, when the gate failed and was overridden.
    pub overridden: Option<String>,
}

impl std::fmt::Display for GateResult {
    /// `gate window: REFUSED (now Fri 14:00 UTC; window 01:00-05:00)`, with any override reason.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "pass" } else { "REFUSED" };
        write!(f, "gate {}: {verdict} ({})", self.gate, self.detail)?;
        if let Some(because) = &self.overridden {
            write!(f, " (overridden: {because})")?;
        }
        Ok(())
    }
}

/// An operator's `--override GATE --because "…"`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub gates: Vec<Gate>,
    pub because: Option<String>,
}

impl Overrides {
    /// Marks failed gates that are overridden as passed, keeping the reason.
    pub fn apply(&self, results: &mut [GateResult]) {
        for g in results.iter_mut().filter(|g| !g.passed) {
            if self.gates.contains(&g.gate) {
                g.passed = true;
                g.overridden = self.because.clone();
            }
        }
    }
}

/// The first gate that refuses, as an error message.
pub fn refusal(results: &[GateResult]) -> Option<String> {
    results.iter().find(|g| !g.passed).map(|g| {
        format!(
            "safety gate `{}`: {} (override with `--override {} --because \"…\"`)",
            g.gate, g.detail, g.gate
        )
    })
}

/// The `overlap` gate: whether unfinished runs on the same target share selected events.
pub fn overlap(found: &[crate::engine::state::Overlap]) -> GateResult {
    let detail = match found {
        [] => "no unfinished run on this target shares its events".to_string(),
        [first, rest @ ..] => {
            let mut detail = format!(
                "{} selected event(s) are also in run `{}` of plan `{}` ({}), which is unfinished",
                first.shared, first.run_id, first.plan, first.status
            );
            if !rest.is_empty() {
                detail.push_str(&format!(", and in {} more unfinished run(s)", rest.len()));
            }
            detail
        }
    };
    GateResult {
        gate: Gate::Overlap,
        passed: found.is_empty(),
        detail,
        overridden: None,
    }
}

/// The `routing` gate: every routing key the plan will publish reaches a queue. Keys that
/// could not be judged (no management API, a template that reads more than the type) pass,
/// saying so.
pub fn routing(judged: Result<crate::engine::routing::Verdict, String>) -> GateResult {
    let (passed, detail) = match judged {
        Err(why) => (true, format!("not checked: {why}")),
        Ok(v) if !v.unroutable.is_empty() => {
            let keys: Vec<String> = v
                .unroutable
                .iter()
                .map(|(step, exchange, key)| {
                    format!("`{key}` on exchange `{exchange}` (step `{step}`)")
                })
                .collect();
            (
                false,
                format!(
                    "routing key(s) that reach no queue, so the run's publish would fail: {}",
                    keys.join(", ")
                ),
            )
        }
        Ok(v) if !v.not_checked.is_empty() => (
            true,
            format!(
                "{} key(s) reach a queue; not checked: {}",
                v.routed.len(),
                v.not_checked.join("; ")
            ),
        ),
        Ok(v) => (
            true,
            format!(
                "every routing key reaches a queue ({} checked)",
                v.routed.len()
            ),
        ),
    };
    GateResult {
        gate: Gate::Routing,
        passed,
        detail,
        overridden: None,
    }
}

/// The gates that depend on the selection size and the clock.
pub fn check(plan: &Plan, selected: u64, now: chrono::DateTime<chrono::Utc>) -> Vec<GateResult> {
    let safety = &plan.raw.safety;
    let gate = |gate, passed, detail: String| GateResult {
        gate,
        passed,
        detail,
        overridden: None,
    };
    let mut out = vec![gate(
        Gate::MaxEvents,
        selected <= safety.max_events,
        format!(
            "{selected} selected; the plan allows at most {}",
            safety.max_events
        ),
    )];
    if selected == 0 {
        out.push(gate(
            Gate::Empty,
            safety.allow_empty,
            match safety.allow_empty {
                true => "no event selected; the plan allows an empty selection".into(),
                false => "no event selected: an id with a typo or a filter that matches nothing? \
                          (`safety.allow_empty: true` accepts an empty selection)"
                    .into(),
            },
        ));
    }
    if plan.raw.select.all {
        out.push(gate(
            Gate::Unfiltered,
            false,
            "the selection has no filter (`all: true`): every event would be replayed".into(),
        ));
    }
    if let Some(window) = &safety.window {
        let (passed, detail) = window_open(window, now);
        out.push(gate(Gate::Window, passed, detail));
    }
    if safety.require_backup {
        let backed_up = plan
            .raw
            .backup
            .as_ref()
            .is_some_and(|b| !b.tables.is_empty() || b.pg_dump.is_some());
        out.push(gate(
            Gate::Backup,
            backed_up,
            if backed_up {
                "the run takes a backup before its first write".into()
            } else {
                "the plan requires a backup but `backup` takes none".into()
            },
        ));
    }
    if let Some(recent) = &safety.recent_dump {
        let takes_own = plan
            .raw
            .backup
            .as_ref()
            .is_some_and(|b| b.pg_dump.is_some());
        let (passed, detail) = if takes_own {
            (true, "the run writes its own pg_dump".to_string())
        } else {
            newest_dump(recent, now)
        };
        out.push(gate(Gate::RecentDump, passed, detail));
    }
    if safety.force {
        out.push(gate(
            Gate::Force,
            safety.acknowledge.is_some(),
            "WARNING: idempotency is bypassed; side effects (emails, payments) may repeat".into(),
        ));
    }
    out
}

fn window_open(window: &Window, now: chrono::DateTime<chrono::Utc>) -> (bool, String) {
    let Ok(tz) = window.timezone.parse::<chrono_tz::Tz>() else {
        return (false, format!("unknown time zone `{}`", window.timezone));
    };
    let local = now.with_timezone(&tz);
    (
        is_open(window, now).unwrap_or(false),
        format!(
            "now {} {}; window {} {}",
            local.format("%a %H:%M"),
            window.timezone,
            window.between,
            if window.days.is_empty() {
                String::new()
            } else {
                let days: Vec<&str> = window.days.iter().map(|d| d.name()).collect();
                days.join(", ")
            }
        ),
    )
}

/// Whether the window is open at `now`. A window that crosses midnight (`22:00-02:00`) belongs to
/// the day it starts: with `days: [fri]` it is open from Friday 22:00 to Saturday 02:00.
pub fn is_open(window: &Window, now: chrono::DateTime<chrono::Utc>) -> Result<bool, String> {
    let tz = window
        .timezone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown time zone `{}`", window.timezone))?;
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
    let started = if from <= to {
        (at >= from && at < to).then_some(local.weekday())
    } else if at >= from {
        Some(local.weekday())
    } else if at < to {
        // After midnight: the window opened the day before.
        Some(local.weekday().pred())
    } else {
        None
    };
    Ok(started
        .is_some_and(|day| window.days.is_empty() || window.days.iter().any(|d| d.chrono() == day)))
}

/// When the window next opens, at or after `now` (to the minute; within eight days).
pub fn next_open(
    window: &Window,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    (0..=8 * 24 * 60)
        .map(|m| start + chrono::Duration::minutes(m))
        .find(|t| *t >= now - chrono::Duration::minutes(1) && is_open(window, *t).unwrap_or(false))
        .map(|t| t.max(now))
}

/// Whether the newest `*.dump` in the directory is young enough, and what was found.
fn newest_dump(
    recent: &crate::plan::model::RecentDump,
    now: chrono::DateTime<chrono::Utc>,
) -> (bool, String) {
    let Ok(max_age) = crate::plan::duration::parse(&recent.max_age) else {
        return (false, format!("`{}` is not a duration", recent.max_age));
    };
    let newest = std::fs::read_dir(&recent.directory)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "dump"))
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .max()
        });
    match newest {
        None => (false, format!("no `*.dump` file in `{}`", recent.directory)),
        Some((modified, path)) => {
            let modified: chrono::DateTime<chrono::Utc> = modified.into();
            let age = (now - modified).to_std().unwrap_or_default();
            let detail = format!(
                "newest dump `{}` is {} old; the plan allows {}",
                path.display(),
                crate::plan::duration::format(std::time::Duration::from_secs(age.as_secs())),
                recent.max_age
            );
            (age <= max_age, detail)
        }
    }
}
