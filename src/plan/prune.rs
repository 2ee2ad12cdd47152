//! Semantic checks beside schema errors, so that one pass reports both: the parts of the document
//! the schema rejects are set aside (unknown keys dropped, a wrongly typed value or a list item
//! that cannot be read left out), the rest is read as a plan and checked, and each finding is
//! placed back where it stands in the file. Findings on or around what was set aside are not
//! reported: they would speak of a plan the author did not write.

use serde_json::Value;

use super::checks;
use super::diagnostic::Diagnostic;
use super::location::{Location, Segment};
use super::model::RawPlan;
use super::schema;
use super::validate::Options;

/// Stands in the document for a list item set aside, until the lists are closed up.
const SET_ASIDE: &str = "\u{0}set aside by replay";

/// Codes whose finding may come from a part set aside (a parameter used only there, a setting
/// only it made use of, a parameter whose declaration was set aside): not reported when
/// anything was set aside under the given prefix.
const CONTEXTUAL: &[(&str, &str)] = &[
    ("unused-param", ""),
    ("unused-setting", ""),
    ("restore-without-backup", ""),
    ("undeclared-param", "/params"),
];

/// The semantic findings of a document with schema errors (none when too little of it can be
/// read as a plan).
pub fn semantic_findings(document: &Value, options: Options) -> Vec<Diagnostic> {
    let mut doc = document.clone();
    // Each part set aside, and the scope its absence can mislead: a key's whole object (a
    // setting's siblings depend on it), a list item itself.
    let mut aside: Vec<(String, String)> = Vec::new();
    for _ in 0..32 {
        let errors = schema::errors(&doc);
        let mut changed = false;
        for (pointer, unexpected) in errors {
            if aside.iter().any(|(a, _)| within(&pointer, a)) {
                continue;
            }
            if !unexpected.is_empty() {
                if let Some(Value::Object(map)) = doc.pointer_mut(&pointer) {
                    for key in &unexpected {
                        changed |= map.remove(key).is_some();
                    }
                }
                continue;
            }
            if pointer.is_empty() {
                return Vec::new();
            }
            let (parent, last) = pointer.rsplit_once('/').unwrap_or_default();
            match doc.pointer_mut(parent) {
                Some(Value::Array(items)) => {
                    if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                        *item = Value::String(SET_ASIDE.into());
                    }
                    aside.push((pointer.clone(), pointer));
                }
                Some(Value::Object(map)) => {
                    map.remove(&last.replace("~1", "/").replace("~0", "~"));
                    aside.push((pointer.clone(), parent.to_string()));
                }
                _ => return Vec::new(),
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let mut removed = Vec::new();
    close_up(&mut doc, String::new(), &mut removed);
    let Ok(plan) = serde_json::from_value::<RawPlan>(doc) else {
        return Vec::new();
    };
    let scopes: Vec<Location> = aside
        .iter()
        .map(|(_, scope)| pointer_location(scope))
        .collect();
    checks::run(&plan, options)
        .into_iter()
        .filter_map(|mut d| {
            d.location = placed(&d.location, &removed)?;
            let near = scopes
                .iter()
                .any(|a| starts_with(&d.location, a) || starts_with(a, &d.location));
            let contextual = CONTEXTUAL.iter().any(|(code, prefix)| {
                *code == d.code
                    && aside
                        .iter()
                        .any(|(p, _)| within(p, prefix) || prefix.is_empty())
            });
            (!near && !contextual).then_some(d)
        })
        .collect()
}

/// Takes the set-aside items out of every list, noting for each list (by its pointer in the
/// document as written) which of its indices went.
fn close_up(value: &mut Value, pointer: String, removed: &mut Vec<(String, Vec<usize>)>) {
    match value {
        Value::Array(items) => {
            let gone: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, v)| v.as_str() == Some(SET_ASIDE))
                .map(|(i, _)| i)
                .collect();
            for (i, item) in items.iter_mut().enumerate() {
                close_up(item, format!("{pointer}/{i}"), removed);
            }
            items.retain(|v| v.as_str() != Some(SET_ASIDE));
            if !gone.is_empty() {
                removed.push((pointer, gone));
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                close_up(item, format!("{pointer}/{escaped}"), removed);
            }
        }
        _ => {}
    }
}

/// A finding's place in the closed-up plan, put back where it stands in the document as written.
fn placed(location: &Location, removed: &[(String, Vec<usize>)]) -> Option<Location> {
    let mut out = Location {
        segments: Vec::new(),
        at_key: location.at_key,
        inner: location.inner,
    };
    let mut pointer = String::new();
    for segment in &location.segments {
        let segment = match segment {
            Segment::Index(i) => {
                let gone = removed
                    .iter()
                    .find(|(p, _)| *p == pointer)
                    .map(|(_, g)| g.as_slice())
                    .unwrap_or_default();
                // The i-th index that was kept.
                let original = (0..).filter(|n| !gone.contains(n)).nth(*i)?;
                Segment::Index(original)
            }
            key => key.clone(),
        };
        pointer.push('/');
        pointer.push_str(&match &segment {
            Segment::Index(i) => i.to_string(),
            Segment::Key(k) => k.replace('~', "~0").replace('/', "~1"),
        });
        out.segments.push(segment);
    }
    Some(out)
}

fn pointer_location(pointer: &str) -> Location {
    Location {
        segments: pointer
            .split('/')
            .skip(1)
            .map(|raw| {
                let raw = raw.replace("~1", "/").replace("~0", "~");
                match raw.parse::<usize>() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Key(raw),
                }
            })
            .collect(),
        at_key: false,
        inner: None,
    }
}

/// Whether `inner` is `outer` or lies within it (as segments).
fn starts_with(inner: &Location, outer: &Location) -> bool {
    inner.segments.len() >= outer.segments.len()
        && inner
            .segments
            .iter()
            .zip(&outer.segments)
            .all(|(a, b)| match (a, b) {
                (Segment::Index(x), Segment::Index(y)) => x == y,
                (Segment::Key(x), Segment::Key(y)) => x == y,
                // A key that reads as a number ("0") in a pointer.
                (Segment::Key(k), Segment::Index(i)) | (Segment::Index(i), Segment::Key(k)) => {
                    *k == i.to_string()
                }
            })
}

/// Whether the JSON pointer `inner` is `outer` or lies within it.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer || inner.starts_with(&format!("{outer}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pointer: &str) -> Location {
        pointer_location(pointer)
    }

    #[test]
    fn a_finding_after_a_set_aside_item_is_placed_back_where_it_stands() {
        let removed = vec![("/steps".to_string(), vec![0, 2])];
        // Closed up, step 1 was written as step 3 (0 and 2 went).
        assert_eq!(
            placed(&at("/steps/1/sql"), &removed),
            Some(at("/steps/3/sql"))
        );
        assert_eq!(placed(&at("/steps/0"), &removed), Some(at("/steps/1")));
        assert_eq!(placed(&at("/verify/0"), &removed), Some(at("/verify/0")));
    }

    #[test]
    fn within_and_around() {
        assert!(within("/steps/1/timeout", "/steps/1"));
        assert!(!within("/steps/10", "/steps/1"));
        assert!(starts_with(&at("/select/status"), &at("/select")));
        assert!(!starts_with(&at("/select"), &at("/select/status")));
    }
}
