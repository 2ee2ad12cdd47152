//! The report of a run or dry-run as text for people.

use std::fmt::Write as _;

use crate::engine::report::Report;

/// The report as text for people.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let dry = report.mode == crate::engine::status::Mode::DryRun;
    let _ = writeln!(
        out,
        "{} plan `{}` ({}) on {}",
        if dry { "DRY-RUN of" } else { "Run of" },
        report.plan,
        &report.plan_hash[..report.plan_hash.len().min(12)],
        report.target
    );
    if let Some(name) = &report.target_name {
        let _ = writeln!(out, "  target: {name}");
    }
    if let Some(connections) = report.connections.summary() {
        let _ = writeln!(out, "  connections: {connections}");
    }
    if let Some(id) = &report.run_id {
        let _ = writeln!(
            out,
            "  run id: {id}{}",
            if report.resumed { " (resumed)" } else { "" }
        );
    }
    let _ = writeln!(out, "  selected events: {}", report.selected);
    for (t, n) in &report.breakdown.by_type {
        let _ = writeln!(out, "    {t}: {n}");
    }
    if !report.breakdown.by_day.is_empty() {
        let days: Vec<String> = report
            .breakdown
            .by_day
            .iter()
            .take(10)
            .map(|(d, n)| format!("{d}: {n}"))
            .collect();
        let more = report.breakdown.by_day.len().saturating_sub(10);
        let _ = writeln!(
            out,
            "    by day: {}{}",
            days.join(", "),
            if more > 0 {
                format!(" (+{more} more days)")
            } else {
                String::new()
            }
        );
    }
    for (id, t, payload) in &report.breakdown.sample {
        let _ = writeln!(out, "    sample: {id} {t} {}", truncate(payload, 100));
    }
    for g in &report.gates {
        let _ = writeln!(out, "  {g}");
    }
    for g in &report.guards {
        let value = match (&g.value, &g.error) {
            (_, Some(e)) => format!("cannot be read: {}", truncate(e, 120)),
            (Some(v), None) if g.beyond => format!("{v} now, BEYOND its bound"),
            (Some(v), None) => format!("{v} now"),
            (None, None) => "no value now".into(),
        };
        let action = match &g.max_pause {
            Some(max) => format!("pause (at most {max})"),
            None => g.action.to_string(),
        };
        let _ = writeln!(
            out,
            "  guard `{}` ({}, {}; every {}, then {action}): {value}",
            g.name, g.reads, g.bound, g.every
        );
    }
    for t in &report.guard_trips {
        let _ = writeln!(out, "  GUARD: {}", t.message);
    }
    if let Some(c) = &report.canary {
        let verdict = match c.passed {
            Some(true) => "passed",
            Some(false) => "FAILED",
            None => "runs first",
        };
        let more = c.events.saturating_sub(c.event_ids.len() as u64);
        let _ = writeln!(
            out,
            "  canary: the first {} event(s) {verdict}: {}{}",
            c.events,
            c.event_ids.join(", "),
            if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            }
        );
        for s in &c.steps {
            let _ = writeln!(
                out,
                "    canary step {} [{}]: {} touched",
                crate::engine::canary::plan_step_id(&s.id),
                s.kind,
                s.touched
            );
        }
        for v in &c.verifications {
            let _ = writeln!(
                out,
                "    canary verify `{}`: {} (actual {}, expected {})",
                v.name,
                if v.passed { "PASS" } else { "FAIL" },
                v.actual,
                v.expected
            );
        }
    }
    for b in &report.backups {
        let _ = writeln!(
            out,
            "  backup {}: {} row(s){}",
            b.table,
            b.rows,
            match (dry, b.checksum.is_empty()) {
                (true, _) => " would be snapshotted".to_string(),
                (false, true) => String::new(),
                (false, false) => format!(", checksum {}", b.checksum),
            }
        );
    }
    if let Some(file) = &report.dump_file {
        let _ = writeln!(out, "  pg_dump: {file}");
    }
    for s in &report.steps {
        let verb = match (dry, s.kind.as_str()) {
            (true, "publish") => "message(s) would be published",
            (true, "http") => "call(s) would be made",
            (false, "http") => "call(s) made and accepted",
            (true, _) => "row(s) would be touched",
            (false, "publish") => "message(s) published and confirmed",
            (false, _) => "row(s) touched",
        };
        let resumed = match (s.resumed_from, s.rehearsed) {
            (Some(c), _) => format!(" (resumed at {c})"),
            (None, Some(n)) => format!(
                " (rehearsed on the first {n} of {} events; the rest counted)",
                report.selected
            ),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "  step {} [{}]: {} {verb}{resumed}",
            s.id, s.kind, s.touched
        );
    }
    for change in &report.schema_changes {
        let _ = writeln!(out, "  SCHEMA CHANGE (allow_ddl): {change}");
    }
    for m in &report.messages {
        let _ = writeln!(
            out,
            "    message to {} key `{}` id `{}`: {}",
            m.exchange,
            m.routing_key,
            m.message_id,
            truncate(&m.body, 120)
        );
    }
    for r in &report.requests {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            out,
            "    call {} {} [{}]{}",
            r.method,
            r.url,
            headers.join(", "),
            r.body
                .as_deref()
                .map(|b| format!(": {}", truncate(b, 120)))
                .unwrap_or_default()
        );
    }
    for v in &report.verifications {
        if dry {
            let _ = writeln!(
                out,
                "  verify `{}`: currently {} (expects {})",
                v.name, v.actual, v.expected
            );
        } else {
            let _ = writeln!(
                out,
                "  verify `{}`: {} (actual {}, expected {})",
                v.name,
                if v.passed { "PASS" } else { "FAIL" },
                v.actual,
                v.expected
            );
        }
    }
    for (action, rows) in &report.rollback {
        let _ = writeln!(out, "  rollback {action}: {rows} row(s)");
    }
    for kept in &report.kept {
        let _ = writeln!(out, "  {kept}");
    }
    if let Some(failing) = &report.failing {
        let _ = writeln!(
            out,
            "  still failing: {} selected event(s){}",
            failing.total,
            if failing.total > failing.first.len() as u64 {
                format!(" (the first {} below)", failing.first.len())
            } else {
                String::new()
            }
        );
        for (id, message) in &failing.first {
            let _ = writeln!(out, "    {id}: {message}");
        }
        if !failing.groups.is_empty() {
            let _ = writeln!(
                out,
                "  failed again in {} group(s) of error message:",
                failing.groups.len()
            );
            for g in &failing.groups {
                let _ = writeln!(
                    out,
                    "    #{} {} event(s) [{}]: {}",
                    g.key,
                    g.count,
                    g.event_types.join(", "),
                    g.fingerprint
                );
            }
        }
    }
    for d in &report.notifications {
        let _ = writeln!(
            out,
            "  notified {} to {}: {}",
            d.moment,
            d.receiver,
            match (&d.delivered, &d.error) {
                (true, _) => format!("delivered ({} attempt(s))", d.attempts),
                (false, Some(e)) => format!("NOT delivered after {} attempt(s): {e}", d.attempts),
                (false, None) => "NOT delivered".into(),
            }
        );
    }
    if report.paused_secs > 0.0 {
        let _ = writeln!(
            out,
            "  paused outside the window for {}",
            crate::plan::duration::format(std::time::Duration::from_secs(
                report.paused_secs as u64
            ))
        );
    }
    if let Some(joined) = &report.joined {
        let _ = writeln!(
            out,
            "  joined the run in progress: {} batch(es), {} event(s) done by this executor",
            joined.batches, joined.events
        );
    }
    if report.executors > 1 {
        let _ = writeln!(out, "  executors: {} took part", report.executors);
    }
    if report.retries > 0 {
        let _ = writeln!(
            out,
            "  retried {} passing fault(s) from the checkpoint",
            report.retries
        );
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    if let Some(secs) = report.estimated_secs {
        let _ = writeln!(
            out,
            "  estimated duration at the rate limit: {secs:.1}s (waits not included)"
        );
    }
    let _ = writeln!(out, "  outcome: {}", report.status);
    if let Some(e) = &report.error {
        let _ = writeln!(out, "  error: {e}");
    }
    for n in &report.next {
        let _ = writeln!(out, "  next: {n}");
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_string()
    }
}
