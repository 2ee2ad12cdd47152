//! `replay doctor`'s checks as an aligned table, each failure or warning followed by its fix.

use crate::engine::doctor::{Findings, Outcome};

pub fn text(findings: &Findings) -> String {
    let width = |f: &dyn Fn(&crate::engine::doctor::Check) -> usize| {
        findings.checks.iter().map(f).max().unwrap_or(0)
    };
    let outcome_width = width(&|c| c.outcome.as_str().len());
    let name_width = width(&|c| c.name.chars().count());
    let mut out = String::new();
    for check in &findings.checks {
        out.push_str(&format!(
            "{:<outcome_width$}  {:<name_width$}  {}\n",
            check.outcome.as_str(),
            check.name,
            check.detail
        ));
        if let (Some(fix), Outcome::Fail | Outcome::Warn) = (&check.fix, check.outcome) {
            out.push_str(&format!(
                "{:<outcome_width$}  {:<name_width$}  fix: {fix}\n",
                "", ""
            ));
        }
    }
    let failed = findings
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    out.push_str(&match failed {
        0 => format!("\nall {} checks passed\n", findings.checks.len()),
        n => format!("\n{n} of {} checks failed\n", findings.checks.len()),
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::engine::doctor::{Check, Findings};

    #[test]
    fn checks_are_aligned_and_failures_carry_their_fix() {
        let findings = Findings::new(vec![
            Check::pass("postgres", "connected"),
            Check::fail("exchange x", "does not exist", "declare it"),
        ]);
        let expected = format!(
            "pass  postgres    connected\nFAIL  exchange x  does not exist\n{}fix: declare it\n\n1 of 2 checks failed\n",
            " ".repeat(18)
        );
        assert_eq!(super::text(&findings), expected);
    }
}
