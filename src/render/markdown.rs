//! The report as a pull-request comment: GitHub Markdown that always fits in one comment.

use crate::render::numbers::thousands;
use std::fmt::Write as _;

use crate::engine::report::Report;

/// GitHub refuses comments longer than this many characters.
pub const GITHUB_LIMIT: usize = 65_535;

/// Bytes the rendered comment may take. Bytes never undercount characters (nor UTF-16 units), and
/// the headroom leaves room for a marker or heading a CI bot adds around the report.
const BUDGET: usize = 65_000;

const TRUNCATED: &str = "… truncated to fit GitHub's comment limit";

/// Why a table or a section is shorter than the report.
const TO_FIT: &str = "to fit GitHub's comment limit";

/// How much of the report goes into the comment; the levels below shrink step by step.
#[derive(Debug, Clone, Copy)]
struct Detail {
    /// Rows of each table or list (types, days, steps, gates, …).
    rows: usize,
    /// Sample events and messages shown; 0 drops the sample sections.
    samples: usize,
    /// Characters of a sample body.
    body: usize,
    /// Characters of one value (a name, an id, a parameter).
    value: usize,
}

/// From everything to a summary: shorter bodies, shorter tables, fewer and then no samples.
const LEVELS: [Detail; 8] = [
    Detail {
        rows: usize::MAX,
        samples: usize::MAX,
        body: 2_000,
        value: 500,
    },
    Detail {
        rows: usize::MAX,
        samples: usize::MAX,
        body: 500,
        value: 500,
    },
    Detail {
        rows: 200,
        samples: usize::MAX,
        body: 500,
        value: 300,
    },
    Detail {
        rows: 200,
        samples: 3,
        body: 200,
        value: 200,
    },
    Detail {
        rows: 100,
        samples: 0,
        body: 0,
        value: 200,
    },
    Detail {
        rows: 30,
        samples: 0,
        body: 0,
        value: 100,
    },
    Detail {
        rows: 10,
        samples: 0,
        body: 0,
        value: 60,
    },
    Detail {
        rows: 5,
        samples: 0,
        body: 0,
        value: 40,
    },
];

/// Renders the report as a GitHub comment of at most [`GITHUB_LIMIT`] characters.
pub fn render(report: &Report) -> String {
    for (level, detail) in LEVELS.iter().enumerate() {
        let out = Page {
            report,
            detail: *detail,
            truncated: level > 0,
        }
        .render();
        if out.len() <= BUDGET {
            return out;
        }
    }
    // Unreachable with the last level's caps; kept so that the limit holds whatever changes.
    let mut out = Page {
        report,
        detail: LEVELS[LEVELS.len() - 1],
        truncated: true,
    }
    .render();
    let keep = BUDGET - TRUNCATED.len() - 2;
    let cut = (0..=keep)
        .rev()
        .find(|&i| out.is_char_boundary(i))
        .unwrap_or(0);
    out.truncate(cut);
    out.push_str("\n\n");
    out.push_str(TRUNCATED);
    out
}

struct Page<'a> {
    report: &'a Report,
    detail: Detail,
    truncated: bool,
}

impl Page<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.heading(&mut out);
        self.summary(&mut out);
        self.error(&mut out);
        self.breakdown(&mut out);
        self.samples(&mut out);
        self.messages(&mut out);
        self.requests(&mut out);
        self.schema_changes(&mut out);
        self.gates(&mut out);
        self.guards(&mut out);
        self.canary(&mut out);
        self.backups(&mut out);
        self.steps(&mut out);
        self.verifications(&mut out);
        self.rollback(&mut out);
        self.next(&mut out);
        let end = out.trim_end().len();
        out.truncate(end);
        out.push('\n');
        out
    }

    fn dry(&self) -> bool {
        self.report.mode == crate::engine::status::Mode::DryRun
    }

    /// A value from data as inline code, cut to the level's length.
    fn code(&self, s: &str) -> String {
        code(&clip(s, self.detail.value), false)
    }

    /// A value from data as inline code inside a table cell.
    fn cell(&self, s: &str) -> String {
        code(&clip(s, self.detail.value), true)
    }

    /// A value from data as running text (also safe in a table cell).
    fn text(&self, s: &str) -> String {
        text(&clip(s, self.detail.value))
    }

    fn heading(&self, out: &mut String) {
        let r = self.report;
        let (icon, outcome) = outcome(&r.status, r.error.is_some(), self.dry());
        let _ = writeln!(
            out,
            "## {icon} {} of {}: {outcome}\n",
            if self.dry() { "Dry-run" } else { "Run" },
            self.code(&r.plan)
        );
        if self.truncated {
            let _ = writeln!(
                out,
                "> [!NOTE]\n> {TRUNCATED}: samples and long tables are shortened. \
                 `--format json` prints the whole report.\n"
            );
        }
    }

    fn summary(&self, out: &mut String) {
        let r = self.report;
        out.push_str("| | |\n|---|---|\n");
        let _ = writeln!(out, "| **Plan** | {} |", self.cell(&r.plan));
        if !r.plan_hash.is_empty() {
            let _ = writeln!(out, "| **Plan hash** | {} |", self.cell(&r.plan_hash));
        }
        if !r.reason.is_empty() {
            let _ = writeln!(out, "| **Reason** | {} |", self.text(&r.reason));
        }
        let _ = writeln!(out, "| **Parameters** | {} |", self.params());
        let target = match &r.target_name {
            Some(name) => format!("{name} ({})", r.target),
            None => r.target.clone(),
        };
        let _ = writeln!(out, "| **Target** | {} |", self.cell(&target));
        if let Some(connections) = r.connections.summary() {
            let _ = writeln!(out, "| **Connections** | {connections} |");
        }
        if let Some(id) = &r.run_id {
            let _ = writeln!(
                out,
                "| **Run** | {}{} |",
                self.cell(id),
                if r.resumed { " (resumed)" } else { "" }
            );
        }
        let _ = writeln!(
            out,
            "| **Selected events** | **{}** |",
            thousands(i128::from(r.selected))
        );
        if let Some(secs) = r.estimated_secs {
            let _ = writeln!(
                out,
                "| **Estimated duration** | {} at the plan's rate limit (waits not included) |",
                duration(secs)
            );
        }
        out.push('\n');
    }

    fn params(&self) -> String {
        let Some(params) = self.report.params.as_object().filter(|p| !p.is_empty()) else {
            return "none".into();
        };
        let mut parts: Vec<String> = params
            .iter()
            .take(self.detail.rows)
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.cell(&format!("{k}={v}"))
            })
            .collect();
        if params.len() > parts.len() {
            parts.push(format!("… {} more", params.len() - parts.len()));
        }
        parts.join("<br>")
    }

    fn error(&self, out: &mut String) {
        let Some(error) = &self.report.error else {
            return;
        };
        out.push_str("### Error\n\n");
        let (shown, cut) = clip_counted(error, self.detail.value * 8);
        fenced(out, "text", &shown);
        if cut > 0 {
            let _ = writeln!(out, "_({} more characters)_", thousands(cut as i128));
        }
        out.push('\n');
    }

    fn breakdown(&self, out: &mut String) {
        let b = &self.report.breakdown;
        let by_type = ("by type", "", "event type");
        self.counts_table(out, by_type, ("type", "types"), &b.by_type, |t| {
            self.cell(t)
        });
        let by_day = ("by day", ", newest first", "day");
        self.counts_table(out, by_day, ("day", "days"), &b.by_day, |d| self.text(d));
    }

    /// A folded table of selected events counted by `column`, with each count's share.
    fn counts_table(
        &self,
        out: &mut String,
        (by, order, column): (&str, &str, &str),
        (one, many): (&str, &str),
        counts: &[(String, i64)],
        show: impl Fn(&str) -> String,
    ) {
        if counts.is_empty() {
            return;
        }
        let total = self.report.selected.max(1) as f64;
        let share = |n: i64| match n as f64 * 100.0 / total {
            p if n > 0 && p < 0.05 => "&lt;0.1 %".to_string(),
            p => format!("{p:.1} %"),
        };
        let _ = writeln!(
            out,
            "<details><summary>Selected events {by} ({}{order})</summary>\n\n\
             | {column} | events | share |\n|---|--:|--:|",
            plural(counts.len(), one, many)
        );
        for (key, n) in counts.iter().take(self.detail.rows) {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                show(key),
                thousands(i128::from(*n)),
                share(*n)
            );
        }
        self.more(out, counts.len(), many);
        out.push_str("\n</details>\n\n");
    }

    fn more(&self, out: &mut String, total: usize, what: &str) {
        if total > self.detail.rows {
            let _ = writeln!(
                out,
                "\n_… and {} more {what}, left out {TO_FIT}_",
                thousands((total - self.detail.rows) as i128)
            );
        }
    }

    fn samples(&self, out: &mut String) {
        let sample = &self.report.breakdown.sample;
        if sample.is_empty() {
            return;
        }
        if self.detail.samples == 0 {
            let _ = writeln!(out, "_Sample events left out {TO_FIT}._\n");
            return;
        }
        let shown = sample.len().min(self.detail.samples);
        let _ = writeln!(
            out,
            "<details><summary>Sample of the selection, oldest first ({})</summary>\n",
            shown_of(shown, sample.len(), "event", "events")
        );
        // The selection keeps payloads only for plans that publish them.
        if sample.iter().take(shown).all(|(_, _, p)| p.is_empty()) {
            out.push_str("| event id | event type |\n|---|---|\n");
            for (id, event_type, _) in sample.iter().take(shown) {
                let _ = writeln!(out, "| {} | {} |", self.cell(id), self.cell(event_type));
            }
            out.push('\n');
        } else {
            for (id, event_type, payload) in sample.iter().take(shown) {
                let _ = writeln!(out, "{} · {}\n", self.code(id), self.code(event_type));
                if !payload.is_empty() {
                    self.body(out, payload);
                }
            }
        }
        out.push_str("</details>\n\n");
    }

    fn messages(&self, out: &mut String) {
        let messages = &self.report.messages;
        if messages.is_empty() {
            return;
        }
        if self.detail.samples == 0 {
            let _ = writeln!(out, "_Sample messages left out {TO_FIT}._\n");
            return;
        }
        let shown = messages.len().min(self.detail.samples);
        let _ = writeln!(
            out,
            "<details><summary>Sample messages ({}{})</summary>\n",
            shown_of(shown, messages.len(), "message", "messages"),
            if self.dry() {
                ", rendered, not sent"
            } else {
                ""
            }
        );
        for m in messages.iter().take(shown) {
            let _ = writeln!(
                out,
                "{} to exchange {} with routing key {}",
                self.code(&m.message_id),
                self.code(&m.exchange),
                self.code(&m.routing_key)
            );
            if !m.headers.is_empty() {
                let headers: Vec<String> = m
                    .headers
                    .iter()
                    .take(self.detail.rows)
                    .map(|(k, v)| self.code(&format!("{k}: {v}")))
                    .collect();
                let more = m.headers.len() - headers.len();
                let _ = write!(out, "headers: {}", headers.join(", "));
                if more > 0 {
                    let _ = write!(out, " … {more} more");
                }
                out.push('\n');
            }
            out.push('\n');
            self.body(out, &m.body);
        }
        out.push_str("</details>\n\n");
    }

    fn requests(&self, out: &mut String) {
        let requests = &self.report.requests;
        if requests.is_empty() {
            return;
        }
        if self.detail.samples == 0 {
            let _ = writeln!(out, "_Sample calls left out {TO_FIT}._\n");
            return;
        }
        let shown = requests.len().min(self.detail.samples);
        let _ = writeln!(
            out,
            "<details><summary>Sample calls ({}{}, credentials masked)</summary>\n",
            shown_of(shown, requests.len(), "call", "calls"),
            if self.dry() {
                ", rendered, not sent"
            } else {
                ""
            }
        );
        for r in requests.iter().take(shown) {
            let _ = writeln!(
                out,
                "{} {} (step {})",
                self.code(&r.method),
                self.code(&r.url),
                self.code(&r.step)
            );
            if !r.headers.is_empty() {
                let headers: Vec<String> = r
                    .headers
                    .iter()
                    .take(self.detail.rows)
                    .map(|(k, v)| self.code(&format!("{k}: {v}")))
                    .collect();
                let _ = writeln!(out, "headers: {}", headers.join(", "));
            }
            out.push('\n');
            if let Some(body) = &r.body {
                self.body(out, body);
            }
        }
        out.push_str("</details>\n\n");
    }

    /// A sample body: pretty JSON when it parses, cut to the level's length.
    fn body(&self, out: &mut String, body: &str) {
        let (info, pretty) = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) => (
                "json",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| body.to_string()),
            ),
            Err(_) => ("text", body.to_string()),
        };
        let (shown, cut) = clip_counted(&pretty, self.detail.body);
        fenced(out, info, &shown);
        if cut > 0 {
            let _ = writeln!(
                out,
                "_… {} more characters not shown_",
                thousands(cut as i128)
            );
        }
        out.push('\n');
    }

    /// Loud: a replay that changes the schema is rare and must not slip through review.
    fn schema_changes(&self, out: &mut String) {
        let changes = &self.report.schema_changes;
        if changes.is_empty() {
            return;
        }
        out.push_str(
            "> [!CAUTION]\n> **This plan changes the schema or privileges** (`allow_ddl: true`):\n",
        );
        for change in changes.iter().take(self.detail.rows) {
            let _ = writeln!(out, "> - {}", self.text(change));
        }
        out.push('\n');
    }

    fn gates(&self, out: &mut String) {
        let gates = &self.report.gates;
        if gates.is_empty() {
            return;
        }
        out.push_str("### Safety checks\n\n");
        for g in gates.iter().take(self.detail.rows) {
            let _ = writeln!(
                out,
                "- {} {} — {}",
                if g.passed { "✅" } else { "❌" },
                self.code(g.gate.as_str()),
                self.text(&g.detail)
            );
        }
        self.more(out, gates.len(), "checks");
        out.push('\n');
    }

    fn guards(&self, out: &mut String) {
        let r = self.report;
        if r.guards.is_empty() && r.guard_trips.is_empty() {
            return;
        }
        out.push_str(
            "### Guards

",
        );
        if !r.guards.is_empty() {
            out.push_str(
                "Read while the run runs, before its batches; beyond its bound a guard stops the run \
                 (resumable) or holds it.\n\n\
                 | guard | reads | bound | action | every | value now |\n|---|---|---|---|---|--:|\n",
            );
            for g in r.guards.iter().take(self.detail.rows) {
                let action = match &g.max_pause {
                    Some(max) => format!("pause (at most {})", self.text(max)),
                    None => self.text(g.action),
                };
                let value = match (&g.value, &g.error) {
                    (_, Some(e)) => format!("❌ {}", self.text(&clip(e, 120))),
                    (Some(v), None) if g.beyond => format!("❌ {}", self.cell(&number(v))),
                    (Some(v), None) => self.cell(&number(v)),
                    (None, None) => "—".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {action} | {} | {value} |",
                    self.cell(&g.name),
                    self.text(&g.reads),
                    self.text(&g.bound),
                    self.text(&g.every),
                );
            }
            self.more(out, r.guards.len(), "guards");
            out.push('\n');
        }
        for t in r.guard_trips.iter().take(self.detail.rows) {
            let _ = writeln!(out, "- ⚠️ {}", self.text(&t.message));
        }
        if !r.guard_trips.is_empty() {
            out.push('\n');
        }
    }

    fn canary(&self, out: &mut String) {
        let Some(c) = &self.report.canary else { return };
        out.push_str(
            "### Canary

",
        );
        let verdict = match c.passed {
            Some(true) => "✅ passed: the rest of the selection ran after it",
            Some(false) => {
                "❌ failed: it was rolled back as the plan says, and no other event was touched"
            }
            None => {
                "every step and verification runs on these events first; the rest runs only if they pass"
            }
        };
        let pause = match c.pause_secs > 0.0 {
            true => format!(", judged {} after its steps", duration(c.pause_secs)),
            false => String::new(),
        };
        let _ = writeln!(
            out,
            "The first {}{pause}: {verdict}.\n",
            plural_n(i128::from(c.events), "event", "events")
        );
        if !c.event_ids.is_empty() {
            let ids: Vec<String> = c.event_ids.iter().map(|id| self.code(id)).collect();
            let more = c.events.saturating_sub(c.event_ids.len() as u64);
            let _ = write!(out, "Events: {}", ids.join(", "));
            if more > 0 {
                let _ = write!(out, " and {} more", thousands(i128::from(more)));
            }
            out.push_str("\n\n");
        }
        if !c.steps.is_empty() {
            out.push_str("| canary step | kind | touched |\n|---|---|--:|\n");
            for s in c.steps.iter().take(self.detail.rows) {
                let touched = match s.kind.as_str() {
                    "wait" => "—".to_string(),
                    "publish" | "purge_queue" => {
                        plural_n(i128::from(s.touched), "message", "messages")
                    }
                    _ => plural_n(i128::from(s.touched), "row", "rows"),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {touched} |",
                    self.cell(crate::engine::canary::plan_step_id(&s.id)),
                    self.text(&s.kind)
                );
            }
            out.push('\n');
        }
        if !c.verifications.is_empty() {
            out.push_str("| | canary verification | actual | expects |\n|---|---|--:|---|\n");
            for v in c.verifications.iter().take(self.detail.rows) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    if v.passed { "✅" } else { "❌" },
                    self.text(&v.name),
                    self.cell(&v.actual.to_string()),
                    self.expectation(&v.expected)
                );
            }
            out.push('\n');
        }
    }

    fn backups(&self, out: &mut String) {
        let r = self.report;
        if r.backups.is_empty() && r.dump_file.is_none() {
            return;
        }
        out.push_str("### Backups\n\n");
        for b in r.backups.iter().take(self.detail.rows) {
            let rows = plural_n(i128::from(b.rows), "row", "rows");
            if self.dry() {
                let _ = writeln!(
                    out,
                    "- {}: {rows} would be snapshotted",
                    self.code(&b.table)
                );
            } else if b.checksum.is_empty() {
                let _ = writeln!(out, "- {}: {rows}", self.code(&b.table));
            } else {
                let _ = writeln!(
                    out,
                    "- {}: {rows}, checksum {}",
                    self.code(&b.table),
                    self.code(&b.checksum)
                );
            }
        }
        self.more(out, r.backups.len(), "tables");
        if let Some(file) = &r.dump_file {
            let _ = writeln!(out, "- `pg_dump`: {}", self.code(file));
        }
        out.push('\n');
    }

    fn steps(&self, out: &mut String) {
        let steps = &self.report.steps;
        if steps.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "### Steps\n\n| # | step | kind | {} |\n|--:|---|---|--:|",
            if self.dry() { "would touch" } else { "touched" }
        );
        for (i, s) in steps.iter().enumerate().take(self.detail.rows) {
            let touched = i128::from(s.touched);
            let touched = match s.kind.as_str() {
                "wait" => "—".to_string(),
                "publish" | "purge_queue" => plural_n(touched, "message", "messages"),
                "http" => plural_n(touched, "call", "calls"),
                _ => plural_n(touched, "row", "rows"),
            };
            let resumed = match (s.resumed_from, s.rehearsed) {
                (Some(c), _) => format!(" (resumed at {})", thousands(i128::from(c))),
                (None, Some(n)) => format!(" in the first {} events", thousands(i128::from(n))),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {touched}{resumed} |",
                i + 1,
                self.cell(&s.id),
                self.text(&s.kind)
            );
        }
        self.more(out, steps.len(), "steps");
        out.push('\n');
    }

    fn verifications(&self, out: &mut String) {
        let verifications = &self.report.verifications;
        if verifications.is_empty() {
            return;
        }
        if self.dry() {
            out.push_str(
                "### Verifications\n\nChecked at the end of the run; read here before anything is rehearsed \
                 or processed:\n\n\
                 | verification | value | expects |\n|---|--:|---|\n",
            );
        } else {
            out.push_str(
                "### Verifications\n\n| | verification | actual | expects |\n|---|---|--:|---|\n",
            );
        }
        for v in verifications.iter().take(self.detail.rows) {
            let actual = self.cell(&v.actual.to_string());
            let expected = self.expectation(&v.expected);
            if self.dry() {
                let _ = writeln!(out, "| {} | {actual} | {expected} |", self.text(&v.name));
            } else {
                let _ = writeln!(
                    out,
                    "| {} | {} | {actual} | {expected} |",
                    if v.passed { "✅" } else { "❌" },
                    self.text(&v.name)
                );
            }
        }
        self.more(out, verifications.len(), "verifications");
        out.push('\n');
    }

    /// `{"equals": 0}` as ``equals `0` ``, and so on; anything else as its JSON.
    fn expectation(&self, expected: &serde_json::Value) -> String {
        let Some(fields) = expected.as_object().filter(|f| !f.is_empty()) else {
            return self.cell(&expected.to_string());
        };
        fields
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("equals", v) => format!("equals {}", self.cell(&number(v))),
                ("equals_before", serde_json::Value::Bool(true)) => {
                    "equals its value before the run".to_string()
                }
                ("at_most", v) => format!("at most {}", self.cell(&number(v))),
                ("at_least", v) => format!("at least {}", self.cell(&number(v))),
                (k, v) => format!("{} {}", self.text(k), self.cell(&v.to_string())),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn rollback(&self, out: &mut String) {
        let r = self.report;
        if r.rollback.is_empty() && !r.rolled_back {
            return;
        }
        out.push_str("### Rollback\n\n");
        if r.rollback.is_empty() {
            out.push_str("The rollback ran.\n");
        }
        for (action, rows) in r.rollback.iter().take(self.detail.rows) {
            let _ = writeln!(
                out,
                "- {}: {}",
                self.code(action),
                plural_n(i128::from(*rows), "row", "rows")
            );
        }
        self.more(out, r.rollback.len(), "actions");
        out.push('\n');
    }

    /// `apply with: replay apply …` as a label and a command to copy.
    fn next(&self, out: &mut String) {
        let next = &self.report.next;
        if next.is_empty() {
            return;
        }
        out.push_str("### Next\n\n");
        for n in next.iter().take(self.detail.rows) {
            let (label, command) = match n.split_once(": ") {
                Some((label, command)) if label.ends_with(" with") => (Some(label), command),
                _ => (None, n.as_str()),
            };
            if let Some(label) = label {
                let mut chars = label.chars();
                let label: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                let _ = writeln!(out, "{}:\n", self.text(&label));
            }
            fenced(out, "sh", &clip(command, self.detail.value * 4));
            out.push('\n');
        }
        self.more(out, next.len(), "commands");
    }
}

/// The heading's icon and words for a report status.
fn outcome(status: &str, failed: bool, dry: bool) -> (&'static str, String) {
    let (icon, words) = match status {
        "would_run" => ("✅", "would run"),
        "would_be_refused" => ("⛔", "would be refused"),
        "would_fail" => ("❌", "would fail"),
        "succeeded" => ("✅", "succeeded"),
        "rolled_back" => ("↩️", "rolled back"),
        "refused" => ("⛔", "refused"),
        "interrupted" => ("⏸️", "interrupted"),
        "stopped" => ("⏹️", "stopped"),
        "failed" => ("❌", "failed"),
        "" if failed && dry => ("❌", "would fail"),
        "" if failed => ("❌", "failed"),
        "" => ("❔", "unfinished"),
        other => return ("❔", text(&clip(other, 60))),
    };
    (icon, words.to_string())
}

/// Markdown punctuation escaped and HTML neutralised, on one line: safe in text and table cells.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '|' | '*' | '_' | '[' | ']' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Inline code that no content can break out of: a fence longer than any backtick run inside,
/// on one line, with `|` escaped inside table cells (GFM splits cells before code spans).
fn code(s: &str, in_cell: bool) -> String {
    if s.is_empty() {
        return "_(empty)_".into();
    }
    let mut inner: String = s
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if in_cell {
        inner = inner.replace('|', "\\|");
    }
    let fence = "`".repeat(longest_run(&inner, '`') + 1);
    let pad = inner.starts_with('`')
        || inner.ends_with('`')
        || (inner.starts_with(' ') && inner.ends_with(' ') && !inner.trim().is_empty());
    let pad = if pad { " " } else { "" };
    format!("{fence}{pad}{inner}{pad}{fence}")
}

/// A fenced block that its body cannot close.
fn fenced(out: &mut String, info: &str, body: &str) {
    let fence = "`".repeat(longest_run(body, '`').max(2) + 1);
    let _ = writeln!(
        out,
        "{fence}{info}\n{}\n{fence}",
        body.trim_end_matches('\n')
    );
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in s.chars() {
        run = if ch == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// At most `max` characters, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    let (shown, cut) = clip_counted(s, max);
    if cut > 0 {
        format!("{shown}…")
    } else {
        shown
    }
}

/// At most `max` characters, and how many were left out.
fn clip_counted(s: &str, max: usize) -> (String, usize) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (s[..at].to_string(), s[at..].chars().count()),
        None => (s.to_string(), 0),
    }
}

/// A JSON number without a needless `.0`.
fn number(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 && !v.is_i64() && !v.is_u64() => {
            format!("{f:.0}")
        }
        _ => v.to_string(),
    }
}

fn plural_n(n: i128, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    plural_n(n as i128, one, many)
}

fn shown_of(shown: usize, total: usize, one: &str, many: &str) -> String {
    if shown == total {
        plural(total, one, many)
    } else {
        format!(
            "{} of {}",
            thousands(shown as i128),
            plural(total, one, many)
        )
    }
}

/// `about 42 s`, `about 33 min 20 s`, `about 2 h 5 min`.
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "an unknown time".into();
    }
    if secs < 1.0 {
        return "under 1 s".into();
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let length = match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    };
    format!("about {length}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backup::Snapshot;
    use crate::engine::broker::OutgoingMessage;
    use crate::engine::gates::GateResult;
    use crate::engine::report::{StepReport, VerificationReport};

    fn case(input: &str, in_cell: bool, expected: &str) {
        assert_eq!(code(input, in_cell), expected, "code({input:?}, {in_cell})");
    }

    #[test]
    fn code_spans_cannot_be_broken_out_of() {
        case("contribution.created", false, "`contribution.created`");
        case("a`b", false, "``a`b``");
        case("a``b`", false, "``` a``b` ```");
        case("`", false, "`` ` ``");
        case("a|b", true, "`a\\|b`");
        case("a|b", false, "`a|b`");
        case("<script>", false, "`<script>`");
        case("two\nlines", true, "`two lines`");
        case(" padded ", false, "`  padded  `");
        case("", false, "_(empty)_");
    }

    #[test]
    fn text_escapes_markdown_and_html() {
        for (input, expected) in [
            ("plain words", "plain words"),
            ("a|b", "a\\|b"),
            ("`x`", "\\`x\\`"),
            ("<img src=x>", "&lt;img src=x&gt;"),
            ("</details>", "&lt;/details&gt;"),
            ("**bold** _it_", "\\*\\*bold\\*\\* \\_it\\_"),
            ("[link](x)", "\\[link\\](x)"),
            ("a\\|b", "a\\\\\\|b"),
            ("one\ntwo", "one two"),
            ("AT&T", "AT&amp;T"),
        ] {
            assert_eq!(text(input), expected, "text({input:?})");
        }
    }

    #[test]
    fn fences_are_longer_than_any_backtick_run_in_the_body() {
        let mut out = String::new();
        fenced(&mut out, "json", "```\n````x");
        assert_eq!(out, "`````json\n```\n````x\n`````\n");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        for (n, expected) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_000_000, "1,000,000"),
            (-12_345, "-12,345"),
        ] {
            assert_eq!(thousands(n), expected);
        }
        for (secs, expected) in [
            (0.2, "under 1 s"),
            (20.4, "about 20 s"),
            (120.0, "about 2 min"),
            (2_000.0, "about 33 min 20 s"),
            (7_500.0, "about 2 h 5 min"),
            (f64::NAN, "an unknown time"),
        ] {
            assert_eq!(duration(secs), expected);
        }
        assert_eq!(number(&serde_json::json!(5.0)), "5");
        assert_eq!(number(&serde_json::json!(0)), "0");
        assert_eq!(number(&serde_json::json!(2.5)), "2.5");
    }

    fn small() -> Report {
        let mut r = Report {
            version: 1,
            mode: crate::engine::status::Mode::DryRun,
            plan: "replay|<b>`x`".into(),
            plan_hash: "ab".repeat(32),
            params: serde_json::json!({"since": "24h"}),
            target: "127.0.0.1:5432/habitat".into(),
            status: "would_run".into(),
            selected: 3,
            gates: vec![GateResult {
                gate: crate::engine::gates::Gate::MaxEvents,
                passed: true,
                detail: "3 selected; the plan allows at most 10".into(),
                overridden: None,
            }],
            steps: vec![StepReport {
                id: "reset-status".into(),
                kind: "reset".into(),
                touched: 3,
                resumed_from: None,
                rehearsed: None,
            }],
            estimated_secs: Some(0.006),
            next: vec!["apply with: replay apply plans/x.yaml --param since=24h".into()],
            ..Report::default()
        };
        r.breakdown.by_type = vec![("contribution.created".into(), 3)];
        r.breakdown.by_day = vec![("2025-05-31".into(), 3)];
        r.breakdown.sample = vec![("e1".into(), "a|b".into(), r#"{"note":"```"}"#.into())];
        r
    }

    #[test]
    fn data_from_the_report_is_escaped() {
        let out = render(&small());
        assert!(
            out.starts_with("## ✅ Dry-run of `` replay|<b>`x` ``: would run\n"),
            "{out}"
        );
        assert!(
            out.contains("| **Plan** | `` replay\\|<b>`x` `` |"),
            "{out}"
        );
        assert!(out.contains("`e1` · `a|b`"), "{out}");
        assert!(
            out.contains("````json\n{\n  \"note\": \"```\"\n}\n````"),
            "{out}"
        );
        assert!(out.contains("```sh\nreplay apply plans/x.yaml --param since=24h\n```"));
        assert!(!out.contains(TRUNCATED));
    }

    /// A report far beyond the limit in every section the data controls.
    fn huge() -> Report {
        let mut r = small();
        r.selected = 1_000_000;
        r.breakdown.by_type = (0..1_000)
            .map(|i| (format!("type.{i}.{}", "x".repeat(40)), 1_000))
            .collect();
        r.breakdown.by_day = (0..10_000).map(|i| (format!("day {i:05}"), 100)).collect();
        let body = serde_json::json!({ "blob": "<`|>".repeat(50_000) }).to_string();
        r.breakdown.sample = (0..100)
            .map(|i| (format!("event-{i}"), "big.type".into(), body.clone()))
            .collect();
        r.messages = (0..100)
            .map(|i| OutgoingMessage {
                seq: i,
                exchange: "habitat-events".into(),
                routing_key: "big.type".into(),
                message_id: format!("event-{i}"),
                headers: vec![("x-reason".into(), "y".repeat(10_000))],
                body: body.clone(),
            })
            .collect();
        r.backups = (0..1_000)
            .map(|i| Snapshot {
                table: format!("table_{i}"),
                rows: 1,
                checksum: String::new(),
            })
            .collect();
        r.verifications = (0..1_000)
            .map(|i| VerificationReport {
                name: format!("check {i} {}", "v".repeat(1_000)),
                passed: true,
                actual: serde_json::json!(i),
                expected: serde_json::json!({"equals": 0}),
            })
            .collect();
        r.error = Some("e".repeat(1_000_000));
        r
    }

    #[test]
    fn schema_changes_are_shown_loudly() {
        let quiet = render(&small());
        assert!(!quiet.contains("[!CAUTION]"));
        let mut r = small();
        r.schema_changes = vec!["steps[1].sql: DROP".into()];
        let out = render(&r);
        assert!(
            out.contains("> [!CAUTION]\n> **This plan changes the schema or privileges**")
                && out.contains("> - steps\\[1\\].sql: DROP"),
            "{out}"
        );
    }

    #[test]
    fn a_huge_report_fits_in_one_comment() {
        let out = render(&huge());
        assert!(out.len() <= BUDGET, "{} bytes", out.len());
        assert!(out.chars().count() < GITHUB_LIMIT);
        assert!(out.contains(TRUNCATED));
        // Still a whole report: the summary, the checks and the command survive.
        assert!(out.contains("| **Selected events** | **1,000,000** |"));
        assert!(out.contains("### Safety checks"));
        assert!(out.contains("```sh\nreplay apply plans/x.yaml"));
        assert_eq!(
            out.matches("<details>").count(),
            out.matches("</details>").count()
        );
    }

    #[test]
    fn samples_shrink_before_they_are_dropped() {
        let mut r = small();
        let body = serde_json::json!({ "blob": "z".repeat(5_000) }).to_string();
        r.messages = (0..100)
            .map(|i| OutgoingMessage {
                seq: i,
                exchange: "habitat-events".into(),
                routing_key: "k".into(),
                message_id: format!("m-{i}"),
                headers: Vec::new(),
                body: body.clone(),
            })
            .collect();
        let out = render(&r);
        assert!(out.len() <= BUDGET);
        assert!(out.contains(TRUNCATED));
        // 100 messages of 500 characters fit: shortened, none dropped.
        assert!(out.contains("Sample messages (100 messages, rendered, not sent)"));
        assert!(out.contains("more characters not shown"));

        r.messages.truncate(1);
        let out = render(&r);
        assert!(
            !out.contains(TRUNCATED),
            "one long body is cut, not truncated"
        );
        assert!(out.contains("_… 3,016 more characters not shown_"), "{out}");
    }

    #[test]
    fn huge_type_and_day_tables_are_cut_with_a_count() {
        let mut r = small();
        r.selected = 1_000_000;
        r.breakdown.by_type = (0..1_000).map(|i| (format!("t{i}"), 1)).collect();
        r.breakdown.by_day = (0..10_000).map(|i| (format!("d{i}"), 1)).collect();
        let out = render(&r);
        assert!(out.len() <= BUDGET);
        assert!(out.contains("Selected events by type (1,000 types)"));
        assert!(
            out.contains("| `t0` | 1 | &lt;0.1 % |"),
            "a share too small to round"
        );
        assert!(out.contains("Selected events by day (10,000 days, newest first)"));
        assert!(out.contains("_… and 9,800 more days, left out to fit GitHub's comment limit_"));
    }

    #[test]
    fn a_run_shows_verifications_passed_or_failed() {
        let mut r = small();
        r.mode = crate::engine::status::Mode::Apply;
        r.status = "rolled_back".into();
        r.run_id = Some("0b7c".into());
        r.resumed = true;
        r.error = Some("verification `none failing` failed".into());
        r.verifications = vec![
            VerificationReport {
                name: "none failing".into(),
                passed: false,
                actual: serde_json::json!(3),
                expected: serde_json::json!({"equals": 0}),
            },
            VerificationReport {
                name: "totals kept".into(),
                passed: true,
                actual: serde_json::json!(10.0),
                expected: serde_json::json!({"equals_before": true, "at_least": 1.0}),
            },
        ];
        r.rolled_back = true;
        r.rollback = vec![("restore_backup processed_events".into(), 3)];
        r.next = vec!["inspect with: replay status 0b7c".into()];
        let out = render(&r);
        assert!(out.starts_with("## ↩️ Run of "), "{out}");
        assert!(out.contains("| **Run** | `0b7c` (resumed) |"));
        assert!(
            out.contains("| ❌ | none failing | `3` | equals `0` |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| ✅ | totals kept | `10.0` | equals its value before the run, at least `1` |"
            ),
            "{out}"
        );
        assert!(out.contains("### Error\n\n```text\nverification `none failing` failed\n```"));
        assert!(out.contains("- `restore_backup processed_events`: 3 rows"));
        assert!(out.contains("Inspect with:\n\n```sh\nreplay status 0b7c\n```"));
        assert!(out.contains("| # | step | kind | touched |"));
    }

    #[test]
    fn a_sample_without_payloads_is_a_table() {
        let mut r = small();
        r.breakdown.sample = vec![
            ("e1".into(), "a|b".into(), String::new()),
            ("e2".into(), "c".into(), String::new()),
        ];
        let out = render(&r);
        assert!(
            out.contains(
                "| event id | event type |\n|---|---|\n| `e1` | `a\\|b` |\n| `e2` | `c` |\n"
            ),
            "{out}"
        );
        assert!(!out.contains("```json"));
    }

    #[test]
    fn outcomes_name_what_happened() {
        for (status, failed, dry, expected) in [
            ("would_run", false, true, "would run"),
            ("would_be_refused", true, true, "would be refused"),
            ("would_fail", true, true, "would fail"),
            ("stopped", true, false, "stopped"),
            ("", true, true, "would fail"),
            ("succeeded", false, false, "succeeded"),
            ("rolled_back", true, false, "rolled back"),
            ("odd|status", false, false, "odd\\|status"),
        ] {
            assert_eq!(outcome(status, failed, dry).1, expected, "{status}");
        }
    }
}
