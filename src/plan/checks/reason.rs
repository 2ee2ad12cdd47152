//! A `reason` still holding a placeholder (`TODO`, `FIXME`, `TBD`, `XXX`) was never written: the
//! skeleton `inspect --emit-plan` writes starts that way, and is refused until someone says why.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

/// Upper-case words that mark text still to be written.
const PLACEHOLDERS: [&str; 4] = ["TODO", "FIXME", "TBD", "XXX"];

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    if let Some(word) = placeholder(&plan.reason) {
        out.push(
            Diagnostic::error(
                "placeholder-reason",
                Location::root().key("reason"),
                format!("`reason` still holds the placeholder `{word}`"),
            )
            .with_help(
                "write the incident and the fix: the reason is recorded with every run and in the audit log",
            ),
        );
    }
}

/// The first placeholder that stands as a word of its own (`TODO:` counts; `TODOS`, `todo` and
/// `MAXXXL` do not).
fn placeholder(text: &str) -> Option<&'static str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|word| PLACEHOLDERS.into_iter().find(|p| *p == word))
}

#[cfg(test)]
mod tests {
    use super::placeholder;

    #[test]
    fn placeholders_are_whole_upper_case_words() {
        for text in [
            "TODO: describe the incident",
            "fix from PR 12, FIXME",
            "owner TBD; replays the failures",
            "(XXX) failures after the fix",
        ] {
            assert!(placeholder(text).is_some(), "{text}");
        }
        for text in [
            "the todo-list service failed after a deploy",
            "TODOS were lost by the handler",
            "size MAXXXL items failed to reserve",
            "Reprocess events that failed after the handler fix",
        ] {
            assert_eq!(placeholder(text), None, "{text}");
        }
    }
}
