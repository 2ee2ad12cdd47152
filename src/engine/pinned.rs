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
    /// The plan file as given to the dry-run, for `replay apply PINNED.json`.
    pub plan_path: String,
    pub plan_hash: String,
    pub params: serde_json::Value,
    pub params_hash: String,
    /// `host:port/database` the dry-run or run saw (never a password).
    pub target: String,
    /// The named target (`--target NAME`), when it had one.
    #[serde(default)]
    pub target_name: Option<String>,
    pub selected: u64,
    pub selection_digest: String,
    /// `dry-run` or `apply`.
    pub mode: crate::engine::status::Mode,
    /// `would_run`, `succeeded`, …
    pub outcome: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl PinnedPlan {
    pub fn from_report(plan: &Plan, plan_path: &str, report: &Report) -> PinnedPlan {
        PinnedPlan {
            kind: KIND.into(),
            version: 1,
            plan: plan.raw.name.clone(),
            plan_path: plan_path.to_string(),
            plan_hash: plan.hash.clone(),
            params: plan.params_json(),
            params_hash: plan.params_hash.clone(),
            target: report.target.clone(),
            target_name: report.target_name.clone(),
            selected: report.selected,
            selection_digest: report.selection_digest.clone(),
            mode: report.mode,
            outcome: report.status.clone(),
            created_at: chrono::Utc::now(),
        }
    }

    pub fn read(path: &std::path::Path) -> Result<PinnedPlan, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let pinned: PinnedPlan = serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not a pinned plan: {e}", path.display()))?;
        if pinned.kind != KIND || pinned.version != 1 {
            return Err(format!(
                "`{}` is not a version 1 pinned plan",
                path.display()
            ));
        }
        Ok(pinned)
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
    /// On the pinned target, the frozen selection must be what was reviewed.
    pub fn check_selection(&self, target: &str, selected: u64, digest: &str) -> Result<(), String> {
        let Some(p) = self.pinned.as_ref().filter(|p| p.target == target) else {
            // A pin of another target was refused before the run began.
            return Ok(());
        };
        let drift = p.selected.abs_diff(selected);
        if drift > self.tolerance || (self.tolerance == 0 && p.selection_digest != digest) {
            return Err(format!(
                "the selection drifted since the plan was pinned: {} event(s) then, {selected} now{}; \
                 review a new dry-run, or allow a drift with `--tolerance N`",
                p.selected,
                if drift == 0 {
                    " (same size, different events)"
                } else {
                    ""
                }
            ));
        }
        Ok(())
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
