//! Pinned plans: what a dry-run (or a run) showed, saved with `--out`, so that `apply --pinned`
//! runs exactly that, on that same target, or refuses, like Terraform's saved plan. A file made
//! on another target (staging) is only evidence: `apply --rehearsal FILE` takes it as the proof
//! of a rehearsal there, and pins nothing.

use serde::{Deserialize, Serialize};

use crate::engine::report::Report;
use crate::plan::Plan;

pub const KIND: &str = "replay-pinned-plan";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PinnedPlan {
    pub kind: String,
    pub version: u32,
    pub plan: String,
    /// The plan file as given to the dry-run (for people: the pin runs `plan_text`).
    pub plan_path: String,
    /// The plan's text as reviewed: `replay apply PINNED` runs exactly this, wherever it is.
    pub plan_text: String,
    pub plan_hash: String,
    pub params: serde_json::Value,
    pub params_hash: String,
    /// `host:port/database` the dry-run or run saw (never a password).
    pub target: String,
    /// The named target (`--target NAME`), when it had one.
    #[serde(default)]
    pub target_name: Option<String>,
    /// The server's `system_identifier` (`pg_control_system()`): the same name on another
    /// server (a restored copy, a failover, a tunnel to elsewhere) is another target.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// The instant relative windows (`processed_within: 24h`) counted back from: the apply
    /// counts back from it too, so it selects the events the dry-run selected.
    pub now: chrono::DateTime<chrono::Utc>,
    pub selected: u64,
    pub selection_digest: String,
    /// The selected event ids in order (none past `freeze::KEPT_KEYS`): which events a drifted
    /// selection gained or lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_keys: Option<Vec<String>>,
    /// `dry-run` or `apply`.
    pub mode: crate::engine::status::Mode,
    /// `would_run`, `succeeded`, …
    pub outcome: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The version of the pinned-plan format this build writes and reads.
pub const VERSION: u32 = 2;

impl PinnedPlan {
    pub fn from_report(
        plan: &Plan,
        plan_path: &str,
        plan_text: &str,
        system_identifier: Option<String>,
        report: &Report,
    ) -> PinnedPlan {
        let created_at = chrono::Utc::now();
        PinnedPlan {
            kind: KIND.into(),
            version: VERSION,
            plan: plan.raw.name.clone(),
            plan_path: plan_path.to_string(),
            plan_text: plan_text.to_string(),
            plan_hash: plan.hash.clone(),
            params: plan.params_json(),
            params_hash: plan.params_hash.clone(),
            target: report.target.clone(),
            target_name: report.target_name.clone(),
            system_identifier,
            now: plan.now.unwrap_or(created_at),
            selected: report.selected,
            selection_digest: report.selection_digest.clone(),
            selection_keys: report.selection_keys.clone(),
            mode: report.mode,
            outcome: report.status.clone(),
            created_at,
        }
    }

    /// The pinned plan in `path`, recognised by its content (`"kind": "replay-pinned-plan"`),
    /// whatever the file is called; `None` for any other file (a plan).
    pub fn recognise(path: &std::path::Path) -> Option<Result<PinnedPlan, String>> {
        let text = std::fs::read_to_string(path).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        (value.get("kind").and_then(|k| k.as_str()) == Some(KIND)).then(|| Self::parse(path, value))
    }

    pub fn read(path: &std::path::Path) -> Result<PinnedPlan, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not a pinned plan: {e}", path.display()))?;
        Self::parse(path, value)
    }

    fn parse(path: &std::path::Path, value: serde_json::Value) -> Result<PinnedPlan, String> {
        let version = value.get("version").and_then(|v| v.as_u64());
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(format!("`{}` is not a pinned plan", path.display()));
        }
        if version != Some(u64::from(VERSION)) {
            return Err(format!(
                "`{}` is a version {} pinned plan; this replay reads version {VERSION}: make it again with `replay apply PLAN --dry-run --out FILE`",
                path.display(),
                version.map_or_else(|| "unknown".to_string(), |v| v.to_string())
            ));
        }
        serde_json::from_value(value)
            .map_err(|e| format!("`{}` is not a pinned plan: {e}", path.display()))
    }

    /// Why the plan file given beside the pin is not the one reviewed: its lines that differ.
    pub fn text_differences(&self, text: &str) -> Vec<String> {
        if text == self.plan_text {
            return Vec::new();
        }
        let (then, now): (Vec<&str>, Vec<&str>) =
            (self.plan_text.lines().collect(), text.lines().collect());
        let mut out = vec![format!(
            "the plan file is not the text that was pinned (lines: - pinned, + given):"
        )];
        for i in 0..then.len().max(now.len()) {
            match (then.get(i), now.get(i)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => {
                    if let Some(a) = a {
                        out.push(format!("  {:>4} - {a}", i + 1));
                    }
                    if let Some(b) = b {
                        out.push(format!("  {:>4} + {b}", i + 1));
                    }
                }
            }
            if out.len() > 21 {
                out.push("  … (more lines differ)".into());
                break;
            }
        }
        out
    }

    /// Why this server is not the pinned one, though its address is: another
    /// `system_identifier` (or none could be read to prove it is the same).
    pub fn other_server(&self, system_identifier: Option<&str>) -> Option<String> {
        let pinned = self.system_identifier.as_deref()?;
        match system_identifier {
            Some(now) if now == pinned => None,
            Some(now) => Some(format!(
                "target {} is another PostgreSQL server than the one the plan was pinned on \
                 (system identifier {pinned} then, {now} now): a pin holds a run only on its own server",
                self.target_label()
            )),
            None => Some(format!(
                "cannot read the system identifier of target {} to prove it is the server the plan was pinned on ({pinned})",
                self.target_label()
            )),
        }
    }

    /// Why this plan, with these parameters, is not what was pinned (empty when it is).
    pub fn differences(&self, plan: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        if self.plan_hash != plan.hash {
            out.push(format!(
                "the plan changed since it was pinned (hash {} then, {} now)",
                self.plan_hash.get(..12).unwrap_or(&self.plan_hash),
                plan.short_hash()
            ));
        }
        if self.params_hash != plan.params_hash {
            out.push(format!(
                "the parameters differ: pinned {}, given {}",
                self.params,
                plan.params_json()
            ));
        }
        out
    }

    /// `staging (127.0.0.1:5432/stage)`, or the address alone.
    pub fn target_label(&self) -> String {
        label(self.target_name.as_deref(), &self.target)
    }

    /// Why this pin cannot hold a run on this target (none when it was made here).
    pub fn other_target(&self, name: Option<&str>, target: &str) -> Option<String> {
        let other_name = matches!((&self.target_name, name), (Some(a), Some(b)) if a != b);
        (other_name || self.target != target).then(|| {
            format!(
                "the plan was pinned on target {}, and this is target {}: a pin holds a run only on its own target \
                 (to use it as the proof of a rehearsal there, give it with `--rehearsal FILE`)",
                self.target_label(),
                label(name, target)
            )
        })
    }

    /// Whether it proves a rehearsal of `required` mode on another target.
    pub fn proves_rehearsal(
        &self,
        required: crate::plan::model::Rehearsal,
        name: Option<&str>,
        target: &str,
    ) -> Result<(), String> {
        use crate::engine::status::Mode;
        use crate::plan::model::Rehearsal;
        let (mode, outcome) = match required {
            Rehearsal::DryRun => (Mode::DryRun, "would_run"),
            Rehearsal::Apply => (Mode::Apply, "succeeded"),
        };
        let accepted = self.mode == mode && self.outcome == outcome
            || (required == Rehearsal::DryRun
                && self.mode == Mode::Apply
                && self.outcome == "succeeded");
        if !accepted {
            return Err(format!(
                "the pinned file records a {} with outcome `{}`; the plan requires a {mode} that ended `{outcome}`",
                self.mode, self.outcome
            ));
        }
        if self.target == target || (name.is_some() && self.target_name.as_deref() == name) {
            return Err(format!(
                "the rehearsal ran on this same target ({}), not on staging",
                label(name, target)
            ));
        }
        Ok(())
    }
}

fn label(name: Option<&str>, target: &str) -> String {
    match name {
        Some(name) => format!("`{name}` ({target})"),
        None => format!("`{target}`"),
    }
}

/// The pinned-plan and rehearsal conditions an apply must meet.
#[derive(Debug, Clone, Default)]
pub struct Pin {
    /// The pinned plan of this target (`--pinned`), checked to be this target's before the run.
    pub pinned: Option<PinnedPlan>,
    /// The proof of a rehearsal on another target (`--rehearsal`).
    pub rehearsal: Option<PinnedPlan>,
    /// How many events the selection may differ by (size) before the pin is stale.
    pub tolerance: u64,
    /// The named target, and whether it is production (a rehearsal is required there).
    pub target_name: Option<String>,
    pub production: bool,
}

impl Pin {
    /// On the pinned target, the frozen selection must be what was reviewed: the events it
    /// gained and lost since (with `keys`, the selection's ids now, when the pin kept them), or
    /// else its size and digest. `--tolerance N` lets up to N events of difference through,
    /// reported; returns that report.
    pub fn check_selection(
        &self,
        target: &str,
        selected: u64,
        digest: &str,
        keys: Option<&[String]>,
    ) -> Result<Option<String>, String> {
        let Some(p) = self.pinned.as_ref().filter(|p| p.target == target) else {
            // A pin of another target was refused before the run began.
            return Ok(None);
        };
        let drift = match (&p.selection_keys, keys) {
            (Some(then), Some(now)) => Drift::between(then, now),
            _ => Drift::by_size(p.selected, selected, p.selection_digest != digest),
        };
        if drift.is_none() {
            return Ok(None);
        }
        let said = format!(
            "the selection drifted since the plan was pinned: {} event(s) then, {selected} now ({})",
            p.selected,
            drift.describe()
        );
        match drift.size() <= self.tolerance {
            true => Ok(Some(format!(
                "{said}; within `--tolerance {}`",
                self.tolerance
            ))),
            false => Err(format!(
                "{said}; review a new dry-run, or allow a difference with `--tolerance N`"
            )),
        }
    }

    /// The gates the target adds: the rehearsal proof, and on production a declared window.
    pub fn gates(
        &self,
        plan: &Plan,
        target: &str,
        dry_run: bool,
    ) -> Vec<crate::engine::gates::GateResult> {
        let mut gates: Vec<_> = self
            .rehearsal_gate(plan, target, dry_run)
            .into_iter()
            .collect();
        if self.production && plan.raw.safety.window.is_none() {
            gates.push(crate::engine::gates::GateResult {
                gate: crate::engine::gates::Gate::Window,
                passed: false,
                detail: "production target: the plan names no `safety.window`; production runs only inside a declared low-traffic window".into(),
                overridden: None,
            });
        }
        gates
    }

    /// The `rehearsal` gate: the plan's required staging proof.
    fn rehearsal_gate(
        &self,
        plan: &Plan,
        target: &str,
        dry_run: bool,
    ) -> Option<crate::engine::gates::GateResult> {
        // A production target needs at least a rehearsed dry-run, whatever the plan says.
        let required = plan.raw.safety.rehearsal.or(self
            .production
            .then_some(crate::plan::model::Rehearsal::DryRun))?;
        let whose = match self.production {
            true => "production target: ",
            false => "",
        };
        let (passed, detail) = match (&self.rehearsal, dry_run) {
            (Some(p), _) => match p.proves_rehearsal(required, self.target_name.as_deref(), target)
            {
                Ok(()) => (
                    true,
                    format!(
                        "rehearsed on {} ({} ended `{}`)",
                        p.target_label(),
                        p.mode,
                        p.outcome
                    ),
                ),
                Err(why) => (false, format!("{whose}{why}")),
            },
            (None, true) => (
                true,
                format!("{whose}apply will need `--rehearsal FILE` from a rehearsal on staging"),
            ),
            (None, false) => (
                false,
                format!(
                    "{whose}no staging rehearsal: run the plan on staging with `--out FILE` and apply with `--rehearsal FILE`"
                ),
            ),
        };
        Some(crate::engine::gates::GateResult {
            gate: crate::engine::gates::Gate::Rehearsal,
            passed,
            detail,
            overridden: None,
        })
    }
}

/// How a frozen selection differs from the pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Drift {
    /// Known event by event: those it gained and those it lost.
    Events {
        gained: Vec<String>,
        lost: Vec<String>,
    },
    /// Known by size (and digest) only.
    Size {
        then: u64,
        now: u64,
        other_events: bool,
    },
}

impl Drift {
    fn between(then: &[String], now: &[String]) -> Drift {
        let (a, b): (
            std::collections::HashSet<&String>,
            std::collections::HashSet<&String>,
        ) = (then.iter().collect(), now.iter().collect());
        Drift::Events {
            gained: now.iter().filter(|k| !a.contains(k)).cloned().collect(),
            lost: then.iter().filter(|k| !b.contains(k)).cloned().collect(),
        }
    }

    fn by_size(then: u64, now: u64, other_digest: bool) -> Drift {
        Drift::Size {
            then,
            now,
            other_events: other_digest,
        }
    }

    fn is_none(&self) -> bool {
        match self {
            Drift::Events { gained, lost } => gained.is_empty() && lost.is_empty(),
            Drift::Size {
                then,
                now,
                other_events,
            } => then == now && !other_events,
        }
    }

    /// Events of symmetric difference (by size alone: the size difference, at least 1 when
    /// only the digest differs).
    fn size(&self) -> u64 {
        match self {
            Drift::Events { gained, lost } => (gained.len() + lost.len()) as u64,
            Drift::Size {
                then,
                now,
                other_events,
            } => then.abs_diff(*now).max(u64::from(*other_events)),
        }
    }

    fn describe(&self) -> String {
        let sample = |keys: &[String]| {
            let shown: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
            let more = match keys.len() > 5 {
                true => ", …",
                false => "",
            };
            format!("{}{more}", shown.join(", "))
        };
        match self {
            Drift::Events { gained, lost } => {
                let mut parts = vec![format!("+{}/−{} events", gained.len(), lost.len())];
                if !gained.is_empty() {
                    parts.push(format!("gained: {}", sample(gained)));
                }
                if !lost.is_empty() {
                    parts.push(format!("lost: {}", sample(lost)));
                }
                parts.join("; ")
            }
            Drift::Size { then, now, .. } if then == now => "same size, different events".into(),
            Drift::Size { then, now, .. } => format!("{:+} events", *now as i128 - *then as i128),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Drift;

    fn keys(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_drift_counts_the_events_gained_and_lost() {
        let drift = Drift::between(&keys(&["a", "b", "c"]), &keys(&["b", "c", "d", "e"]));
        assert_eq!(drift.size(), 3);
        assert_eq!(drift.describe(), "+2/−1 events; gained: d, e; lost: a");
        assert!(Drift::between(&keys(&["a"]), &keys(&["a"])).is_none());
        // The same size with other events is a drift of at least one.
        assert_eq!(Drift::by_size(5, 5, true).size(), 1);
        assert_eq!(Drift::by_size(5, 7, false).describe(), "+2 events");
    }
}
