//! The JSON Schema of plans: generated from the types, and used to validate a document before serde reads it.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::Location as JsonLocation;
use jsonschema::{Keyword, ValidationError, Validator};
use serde_json::{Map, Value};

use super::diagnostic::Diagnostic;
use super::location::Location;
use super::model::RawPlan;
use super::yaml::Node;

/// The schema as `replay schema` prints it and `schemas/replay-plan.schema.json` holds it.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(RawPlan);
    schema.to_value()
}

/// The schema as pretty JSON with a trailing newline (the committed file's exact bytes).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema as a value, built once: the validator and the error translation both read it.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(json_schema)
}

fn validator() -> &'static Result<Validator, String> {
    static VALIDATOR: OnceLock<Result<Validator, String>> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::options()
            .with_keyword("format", integer_format)
            .build(schema())
            .map_err(|e| e.to_string())
    })
}

/// Each schema violation as a JSON pointer into the document, with the unknown keys when that
/// is what it is.
pub(crate) fn errors(document: &Value) -> Vec<(String, Vec<String>)> {
    let Ok(validator) = validator() else {
        return Vec::new();
    };
    validator
        .iter_errors(document)
        .map(|e| {
            let unexpected = match e.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => unexpected.clone(),
                _ => Vec::new(),
            };
            (e.instance_path().as_str().to_string(), unexpected)
        })
        .collect()
}

/// Every schema violation of the document, each pointed at its node.
pub fn check(document: &Value, root: &Node) -> Vec<Diagnostic> {
    let validator = match validator() {
        Ok(v) => v,
        Err(e) => {
            return vec![Diagnostic::error(
                "internal",
                Location::root(),
                format!("the built-in schema does not compile: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    for error in validator.iter_errors(document) {
        translate(&error, document, root, &mut out);
    }
    out.dedup();
    out
}

fn translate(
    error: &ValidationError<'_>,
    document: &Value,
    root: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let pointer = error.instance_path().as_str();
    let here = Location::from_pointer(pointer, root);
    let instance = document.pointer(pointer).unwrap_or(&Value::Null);
    let diagnostic = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(error);
            for key in unexpected {
                let mut d = Diagnostic::error(
                    "unknown-key",
                    here.key(key.clone()).at_key(),
                    format!("unknown key `{key}` in {}", describe(&here)),
                );
                if let Some(help) = suggest(key, &allowed) {
                    d = d.with_help(help);
                }
                out.push(d);
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            Diagnostic::error(
                "missing-key",
                here.clone(),
                format!("missing required key `{key}` in {}", describe(&here)),
            )
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            match Union::of(error) {
                Union::Tagged(kinds) => {
                    tagged_union(context, &kinds, instance, &here, document, root, out);
                }
                Union::Constants(values) => out.push(not_one_of(&values, instance, &here)),
                Union::Other(nulls) => {
                    for e in closest_branch(context, &nulls, pointer) {
                        translate(e, document, root, out);
                    }
                }
            }
            return;
        }
        ValidationErrorKind::Type { kind } => {
            let found = Diagnostic::error(
                "wrong-type",
                here.clone(),
                format!(
                    "expected {} at `{here}`, found {}",
                    type_names(kind),
                    json_type(instance)
                ),
            );
            // `timeout: 30`: a duration written as a bare number lacks only its unit.
            match (instance.as_u64(), is_duration_key(&here)) {
                (Some(n), true) => found.with_help(format!(
                    "a duration takes a unit: write `{n}s` (or `{n}m`, `{n}ms`, …)"
                )),
                _ => found,
            }
        }
        ValidationErrorKind::Enum { options } => not_one_of(
            options.as_array().map_or(&[], Vec::as_slice),
            instance,
            &here,
        ),
        ValidationErrorKind::Constant { expected_value } => Diagnostic::error(
            "not-allowed",
            here.clone(),
            format!(
                "`{}` is not allowed at `{here}`; expected `{}`",
                scalar_text(instance),
                scalar_text(expected_value)
            ),
        ),
        ValidationErrorKind::Pattern { pattern } => Diagnostic::error(
            "bad-format",
            here.clone(),
            format!(
                "`{}` is not a valid value for `{here}`",
                scalar_text(instance)
            ),
        )
        .with_help(format!("it must match the pattern `{pattern}`")),
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!(
                "`{here}` is {}; the minimum is {limit}",
                scalar_text(instance)
            ),
        ),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!(
                "`{here}` is {}; the maximum is {limit}",
                scalar_text(instance)
            ),
        ),
        ValidationErrorKind::MinLength { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` must be at least {limit} characters long"),
        ),
        ValidationErrorKind::MaxLength { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` must be at most {limit} characters long"),
        ),
        ValidationErrorKind::MinItems { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` needs at least {limit} item(s)"),
        ),
        ValidationErrorKind::MaxItems { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` takes at most {limit} item(s)"),
        ),
        ValidationErrorKind::Custom { keyword, message } if keyword == "format" => {
            let bounds = error
                .schema_path()
                .as_str()
                .strip_suffix("/format")
                .and_then(|parent| resolve_schema(schema(), parent))
                .and_then(Value::as_object)
                .and_then(IntegerBounds::of);
            match bounds.and_then(|b| b.problem(instance)) {
                Some(problem) => problem.diagnostic(instance, &here),
                None => Diagnostic::error("schema", here.clone(), message.clone()),
            }
        }
        _ => Diagnostic::error("schema", here.clone(), error.masked().to_string()),
    };
    out.push(diagnostic);
}

/// What a `oneOf` or `anyOf` of the schema stands for, read from its branches.
#[derive(Debug, PartialEq)]
enum Union {
    /// Steps and rollback actions: mappings told apart by a constant `kind`, one per branch.
    Tagged(Vec<String>),
    /// An enum with documented variants: each branch is one constant.
    Constants(Vec<Value>),
    /// Anything else, such as an `Option<Struct>` (`anyOf: [{$ref}, {type: null}]`): whether each
    /// branch is the `null` one (empty when the schema could not be read).
    Other(Vec<bool>),
}

impl Union {
    fn of(error: &ValidationError<'_>) -> Union {
        let schema = schema();
        let branches: Vec<&Value> = resolve_schema(schema, error.schema_path().as_str())
            .and_then(Value::as_array)
            .map(|items| items.iter().map(|b| follow_ref(schema, b)).collect())
            .unwrap_or_default();
        Union::from_branches(&branches)
    }

    fn from_branches(branches: &[&Value]) -> Union {
        if branches.is_empty() {
            return Union::Other(Vec::new());
        }
        let kinds: Option<Vec<String>> = branches
            .iter()
            .map(|b| {
                b.pointer("/properties/kind/const")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        if let Some(kinds) = kinds {
            return Union::Tagged(kinds);
        }
        let constants: Option<Vec<Value>> =
            branches.iter().map(|b| b.get("const").cloned()).collect();
        if let Some(constants) = constants {
            return Union::Constants(constants);
        }
        Union::Other(
            branches
                .iter()
                .map(|b| b.get("type").and_then(Value::as_str) == Some("null"))
                .collect(),
        )
    }
}

/// A step or rollback action: report the errors of the branch its `kind` names.
fn tagged_union(
    context: &[Vec<ValidationError<'static>>],
    kinds: &[String],
    instance: &Value,
    here: &Location,
    document: &Value,
    root: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let Some(map) = instance.as_object() else {
        out.push(Diagnostic::error(
            "wrong-type",
            here.clone(),
            format!(
                "expected a mapping at `{here}`, found {}",
                json_type(instance)
            ),
        ));
        return;
    };
    let kinds_help = format!("`kind` is one of: {}", kinds.join(", "));
    let Some(kind) = map.get("kind") else {
        out.push(
            Diagnostic::error(
                "missing-key",
                here.clone(),
                format!("missing required key `kind` in {}", describe(here)),
            )
            .with_help(kinds_help),
        );
        return;
    };
    let branch = kind
        .as_str()
        .and_then(|kind| kinds.iter().position(|k| k == kind))
        .and_then(|i| context.get(i));
    match branch {
        Some(errors) => {
            for e in errors {
                translate(e, document, root, out);
            }
        }
        None => out.push(
            Diagnostic::error(
                "unknown-kind",
                here.key("kind"),
                format!("unknown kind `{}` at `{here}`", scalar_text(kind)),
            )
            .with_help(match kind.as_str().and_then(|k| closest(k, kinds)) {
                Some(near) => format!("did you mean `{near}`? {kinds_help}"),
                None => kinds_help,
            }),
        ),
    }
}

/// A value outside an enum (`enum`, or a `oneOf` of documented constants).
fn not_one_of(options: &[Value], instance: &Value, here: &Location) -> Diagnostic {
    let help = format!(
        "use one of: {}",
        options
            .iter()
            .map(scalar_text)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if instance.is_object() || instance.is_array() {
        let mut types: Vec<String> = options.iter().map(|o| article(type_of(o))).collect();
        types.dedup();
        return Diagnostic::error(
            "wrong-type",
            here.clone(),
            format!(
                "expected {} at `{here}`, found {}",
                types.join(" or "),
                json_type(instance)
            ),
        )
        .with_help(help);
    }
    Diagnostic::error(
        "not-allowed",
        here.clone(),
        format!("`{}` is not allowed at `{here}`", scalar_text(instance)),
    )
    .with_help(help)
}

/// The errors of the branch the value was most likely meant for: not the `null` one of an optional
/// value, preferably one whose type it has, then the one with the fewest complaints.
fn closest_branch<'e>(
    context: &'e [Vec<ValidationError<'static>>],
    nulls: &[bool],
    pointer: &str,
) -> &'e [ValidationError<'static>] {
    let wrong_type_here = |errors: &[ValidationError<'_>]| {
        errors.iter().any(|e| {
            e.instance_path().as_str() == pointer
                && matches!(e.kind(), ValidationErrorKind::Type { .. })
        })
    };
    let only_null = |errors: &[ValidationError<'_>]| {
        matches!(errors, [e] if matches!(
            e.kind(),
            ValidationErrorKind::Type { kind: jsonschema::error::TypeKind::Single(t) } if t.to_string() == "null"
        ))
    };
    context
        .iter()
        .enumerate()
        .filter(|(i, errors)| !nulls.get(*i).copied().unwrap_or_else(|| only_null(errors)))
        .map(|(_, errors)| errors)
        .min_by_key(|errors| (wrong_type_here(errors), errors.len()))
        .or_else(|| context.first())
        .map_or(&[], Vec::as_slice)
}

/// The range of a `format: uint32`-like integer. serde reads such fields into fixed-size Rust
/// integers, which `type: integer` does not check: it accepts `1e20` and `5.0`, which serde then
/// rejects without saying where. The `format` keyword is overridden to check this before serde.
#[derive(Debug, Clone, Copy, PartialEq)]
struct IntegerBounds {
    /// The range of the Rust type the format names.
    min: i128,
    max: i128,
    /// `minimum` and `maximum` beside the format: values outside them are theirs to report.
    minimum: Option<f64>,
    maximum: Option<f64>,
}

/// Why serde would not read a number the standard keywords accept.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IntegerProblem {
    Above(i128),
    Below(i128),
    /// A whole number written with a decimal point or an exponent (`5.0`, `1e3`).
    NotPlain(i128),
}

impl IntegerBounds {
    /// The bounds of an integer `format` (`uint8` … `int64`, `uint`, `int`); none for other formats.
    fn of(schema: &Map<String, Value>) -> Option<IntegerBounds> {
        let format = schema.get("format")?.as_str()?;
        let (signed, bits) = match format.strip_prefix("uint") {
            Some(bits) => (false, bits),
            None => (true, format.strip_prefix("int")?),
        };
        let bits: u32 = match bits {
            "" => usize::BITS,
            bits => bits.parse().ok()?,
        };
        if !(8..=64).contains(&bits) {
            return None;
        }
        let (min, max) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        Some(IntegerBounds {
            min,
            max,
            minimum: schema.get("minimum").and_then(Value::as_f64),
            maximum: schema.get("maximum").and_then(Value::as_f64),
        })
    }

    fn problem(&self, value: &Value) -> Option<IntegerProblem> {
        let Value::Number(number) = value else {
            return None;
        };
        let as_float = number.as_f64()?;
        if self.maximum.is_some_and(|m| as_float > m) || self.minimum.is_some_and(|m| as_float < m)
        {
            return None;
        }
        let (whole, float) = match (number.as_i64(), number.as_u64()) {
            (Some(i), _) => (i128::from(i), false),
            (None, Some(u)) => (i128::from(u), false),
            // A fraction is `type: integer`'s to report.
            _ if as_float.fract() != 0.0 => return None,
            // Saturates; exact for the whole numbers below 2^127.
            _ => (as_float as i128, true),
        };
        // The YAML loader reads plain integers as `i64` (a larger one stays a string), so a float
        // is only fixable by writing a plain integer up to `i64::MAX`.
        let (min, max) = if float {
            (self.min.max(i64::MIN.into()), self.max.min(i64::MAX.into()))
        } else {
            (self.min, self.max)
        };
        if whole > max {
            Some(IntegerProblem::Above(max))
        } else if whole < min {
            Some(IntegerProblem::Below(min))
        } else if float {
            Some(IntegerProblem::NotPlain(whole))
        } else {
            None
        }
    }
}

impl IntegerProblem {
    fn message(&self, value: &Value) -> String {
        match self {
            IntegerProblem::Above(max) => format!("`{value}` is above {max}"),
            IntegerProblem::Below(min) => format!("`{value}` is below {min}"),
            IntegerProblem::NotPlain(_) => format!("`{value}` is not written as an integer"),
        }
    }

    fn diagnostic(&self, value: &Value, here: &Location) -> Diagnostic {
        let text = scalar_text(value);
        match self {
            IntegerProblem::Above(max) => Diagnostic::error(
                "out-of-range",
                here.clone(),
                format!("`{here}` is {text}; the maximum is {max}"),
            ),
            IntegerProblem::Below(min) => Diagnostic::error(
                "out-of-range",
                here.clone(),
                format!("`{here}` is {text}; the minimum is {min}"),
            ),
            IntegerProblem::NotPlain(whole) => Diagnostic::error(
                "wrong-type",
                here.clone(),
                format!(
                    "expected an integer at `{here}`, found {}",
                    json_type(value)
                ),
            )
            .with_help(format!(
                "write it as `{whole}`, without a decimal point or exponent"
            )),
        }
    }
}

/// The custom `format` keyword: checks integer formats, and leaves the others as annotations (as
/// the default validator does).
fn integer_format<'a>(
    parent: &'a Map<String, Value>,
    _value: &'a Value,
    _path: JsonLocation,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    Ok(Box::new(IntegerFormat(IntegerBounds::of(parent))))
}

struct IntegerFormat(Option<IntegerBounds>);

impl<'i> Keyword<'i> for IntegerFormat {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        match self.0.and_then(|b| b.problem(instance)) {
            Some(problem) => Err(ValidationError::custom(problem.message(instance))),
            None => Ok(()),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.0.and_then(|b| b.problem(instance)).is_none()
    }
}

/// The keys the schema allows where an unknown key was found, read from the error's schema location.
fn allowed_keys(error: &ValidationError<'_>) -> Vec<String> {
    let path = error.schema_path().as_str();
    let Some(parent) = path.strip_suffix("/additionalProperties") else {
        return Vec::new();
    };
    resolve_schema(schema(), parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Walks a schema pointer, following `$ref`s into `$defs`.
fn resolve_schema<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = follow_ref(schema, schema);
    for segment in pointer.split('/').skip(1) {
        // Every `$ref` is followed on arrival, so a `$ref` segment has nothing left to do.
        if segment == "$ref" {
            continue;
        }
        let segment = segment.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
        node = follow_ref(schema, node);
    }
    Some(node)
}

/// The definition a `{"$ref": "#/$defs/…"}` names, or the node itself.
fn follow_ref<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    // Bounded, in case of a cycle of bare references.
    for _ in 0..8 {
        match node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|target| schema.pointer(target))
        {
            Some(target) => node = target,
            None => break,
        }
    }
    node
}

/// Keys whose value is a duration (`30s`, `5m`).
fn is_duration_key(here: &Location) -> bool {
    const DURATIONS: &[&str] = &[
        "timeout",
        "poll_interval",
        "every",
        "max_pause",
        "pause",
        "processed_within",
        "processed_before",
        "max_age",
    ];
    matches!(
        here.segments.last(),
        Some(crate::plan::location::Segment::Key(k)) if DURATIONS.contains(&k.as_str())
    )
}

fn suggest(key: &str, allowed: &[String]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    Some(match closest(key, allowed) {
        Some(a) => format!("did you mean `{a}`?"),
        None => format!("allowed keys here: {}", allowed.join(", ")),
    })
}

/// The candidate nearest to `word` by edit distance, when it is near enough to be a typo
/// (or one of whose `_`-separated words it is: `type` for `event_type`).
pub(crate) fn closest<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c.as_ref()), c.as_ref()))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
        .or_else(|| {
            candidates.iter().map(AsRef::as_ref).find(|c| {
                word.len() >= 2
                    && c.split('_')
                        .any(|part| part == word || (word.len() >= 3 && part.starts_with(word)))
            })
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn describe(location: &Location) -> String {
    if location.segments.is_empty() {
        "the plan".into()
    } else {
        format!("`{location}`")
    }
}

fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => article(&t.to_string()),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

fn article(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        "null" => "nothing".into(),
        other => format!("a {other}"),
    }
}

fn json_type(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{n}`"),
        Value::String(s) => format!("a string `{}`", truncate(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => truncate(s),
        other => truncate(&other.to_string()),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::source::Source;

    const BASE: &str = "version: 1
name: replay-failed-events
reason: \"Reprocess events that failed after the handler fix\"
select:
  status: [error]
";

    const STEP: &str = "steps:
  - id: reset-status
    kind: reset
";

    /// A plan (`BASE` followed by `rest`) and its schema findings as `code path: message | help`.
    fn case(rest: &str, expected: &[&str]) -> (String, Vec<String>) {
        (
            format!("{BASE}{rest}"),
            expected.iter().map(|e| e.to_string()).collect(),
        )
    }

    fn findings(text: &str) -> Vec<String> {
        let source = Source::from_text("plan.yaml".into(), text.into()).expect("the plan loads");
        check(&source.root.to_json(), &source.root)
            .iter()
            .map(|d| {
                let mut line = format!("{} {}: {}", d.code, d.location, d.message);
                if let Some(help) = &d.help {
                    line.push_str(&format!(" | help: {help}"));
                }
                line
            })
            .collect()
    }

    #[test]
    fn unions_report_the_branch_that_was_meant() {
        let cases = [
            case(STEP, &[]),
            // An enum with documented variants (`oneOf` of constants).
            case(
                &format!("params:\n  since:\n    type: durationn\n{STEP}"),
                &[
                    "not-allowed params.since.type: `durationn` is not allowed at `params.since.type` | help: use one of: string, int, uuid, timestamp, duration, bool, list",
                ],
            ),
            case(
                &format!("params:\n  since:\n    type: {{duration: true}}\n{STEP}"),
                &[
                    "wrong-type params.since.type: expected a string at `params.since.type`, found a mapping | help: use one of: string, int, uuid, timestamp, duration, bool, list",
                ],
            ),
            // An optional enum: `anyOf` of the enum and `null`.
            case(
                &format!("safety:\n  force: true\n  acknowledge: yes\n{STEP}"),
                &[
                    "not-allowed safety.acknowledge: `yes` is not allowed at `safety.acknowledge` | help: use one of: duplicate-side-effects",
                ],
            ),
            // Optional structs: the errors inside them.
            case(
                &format!(
                    "safety:\n  window:\n    between: \"01:00-05:00\"\n    days: [mon, funday]\n{STEP}"
                ),
                &[
                    "not-allowed safety.window.days[1]: `funday` is not allowed at `safety.window.days[1]` | help: use one of: mon, tue, wed, thu, fri, sat, sun",
                ],
            ),
            case(
                &format!("backup:\n  tables: []\n{STEP}"),
                &["out-of-range backup.tables: `backup.tables` needs at least 1 item(s)"],
            ),
            case(
                &format!(
                    "backup:\n  tables:\n    - table: processed_events\n      wher: x\n{STEP}"
                ),
                &[
                    "unknown-key backup.tables[0].wher: unknown key `wher` in `backup.tables[0]` | help: did you mean `where`?",
                ],
            ),
            case(
                &format!("safety:\n  window: 5\n{STEP}"),
                &[
                    "wrong-type safety.window: expected a mapping at `safety.window`, found a number `5`",
                ],
            ),
            case(
                &format!("safety:\n  window:\n    days: [mon]\n{STEP}"),
                &["missing-key safety.window: missing required key `between` in `safety.window`"],
            ),
            // Steps: tagged by `kind`.
            case(
                "steps:\n  - id: reset-status\n",
                &[
                    "missing-key steps[0]: missing required key `kind` in `steps[0]` | help: `kind` is one of: reset, publish, sql, wait, purge_queue, http",
                ],
            ),
            case(
                "steps:\n  - id: reset-status\n    kind: replay\n",
                &[
                    "unknown-kind steps[0].kind: unknown kind `replay` at `steps[0]` | help: `kind` is one of: reset, publish, sql, wait, purge_queue, http",
                ],
            ),
            case(
                "steps:\n  - id: republish\n    kind: publish\n    each: batch\n",
                &[
                    "not-allowed steps[0].each: `batch` is not allowed at `steps[0].each` | help: use one of: event, once",
                ],
            ),
            case(
                "steps:\n  - reset\n",
                &["wrong-type steps[0]: expected a mapping at `steps[0]`, found a string `reset`"],
            ),
            case(
                &format!("{STEP}rollback:\n  - tables: [processed_events]\n"),
                &[
                    "missing-key rollback[0]: missing required key `kind` in `rollback[0]` | help: `kind` is one of: sql, restore_backup",
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(findings(&text), expected, "\n{text}");
        }
    }

    #[test]
    fn integers_serde_cannot_read_are_reported_where_they_are() {
        let cases = [
            case(
                &format!("rate_limit:\n  pause_when_queue_depth_above: 1e20\n  queue: q\n{STEP}"),
                &[
                    "out-of-range rate_limit.pause_when_queue_depth_above: `rate_limit.pause_when_queue_depth_above` is 1e+20; the maximum is 9223372036854775807",
                ],
            ),
            // Within `u64`, but a plan can only write integers up to `i64::MAX` plainly.
            case(
                &format!("rate_limit:\n  pause_when_queue_depth_above: 1e19\n  queue: q\n{STEP}"),
                &[
                    "out-of-range rate_limit.pause_when_queue_depth_above: `rate_limit.pause_when_queue_depth_above` is 1e+19; the maximum is 9223372036854775807",
                ],
            ),
            case(
                &format!(
                    "rate_limit:\n  pause_when_queue_depth_above: 9223372036854775807\n  queue: q\n{STEP}"
                ),
                &[],
            ),
            case(
                &format!("rate_limit:\n  batch_size: 5.0\n{STEP}"),
                &[
                    "wrong-type rate_limit.batch_size: expected an integer at `rate_limit.batch_size`, found a number `5.0` | help: write it as `5`, without a decimal point or exponent",
                ],
            ),
            // `maximum` already reports it: once is enough.
            case(
                &format!("rate_limit:\n  batch_size: 1e20\n{STEP}"),
                &[
                    "out-of-range rate_limit.batch_size: `rate_limit.batch_size` is 1e+20; the maximum is 10000",
                ],
            ),
            // A fraction is `type: integer`'s to report.
            case(
                &format!("rate_limit:\n  batch_size: 2.5\n{STEP}"),
                &[
                    "wrong-type rate_limit.batch_size: expected an integer at `rate_limit.batch_size`, found a number `2.5`",
                ],
            ),
            // Inside an optional struct of a step.
            case(
                "steps:\n  - id: fix\n    kind: sql\n    sql: UPDATE t SET a = 1 WHERE id = 1\n    expect_rows:\n      max: 1e3\n",
                &[
                    "wrong-type steps[0].expect_rows.max: expected an integer at `steps[0].expect_rows.max`, found a number `1000.0` | help: write it as `1000`, without a decimal point or exponent",
                ],
            ),
            // `format: double` is not checked.
            case(
                &format!(
                    "{STEP}verify:\n  - name: nothing left\n    sql: SELECT count(*) FROM t\n    expect:\n      at_most: 1e20\n"
                ),
                &[],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(findings(&text), expected, "\n{text}");
        }
    }

    #[test]
    fn integer_bounds_follow_the_format() {
        let bounds = |format: &str| {
            IntegerBounds::of(json!({ "format": format }).as_object().unwrap())
                .map(|b| (b.min, b.max))
        };
        assert_eq!(bounds("uint32"), Some((0, u32::MAX.into())));
        assert_eq!(bounds("uint64"), Some((0, u64::MAX.into())));
        assert_eq!(bounds("int8"), Some((-128, 127)));
        assert_eq!(bounds("int64"), Some((i64::MIN.into(), i64::MAX.into())));
        assert_eq!(bounds("uint"), Some((0, usize::MAX as i128)));
        for other in ["double", "float", "uint128", "date-time", "integer", "uuid"] {
            assert_eq!(bounds(other), None, "{other}");
        }
    }

    #[test]
    fn unions_are_told_apart_by_their_branches() {
        let tagged = [
            json!({"type": "object", "properties": {"kind": {"const": "reset"}}}),
            json!({"type": "object", "properties": {"kind": {"const": "sql"}}}),
        ];
        let constants = [json!({"const": "once"}), json!({"const": "batch"})];
        let optional = [json!({"type": "object"}), json!({"type": "null"})];
        let cases: [(Vec<&Value>, Union); 4] = [
            (
                tagged.iter().collect(),
                Union::Tagged(vec!["reset".into(), "sql".into()]),
            ),
            (
                constants.iter().collect(),
                Union::Constants(vec![json!("once"), json!("batch")]),
            ),
            (optional.iter().collect(), Union::Other(vec![false, true])),
            (Vec::new(), Union::Other(Vec::new())),
        ];
        for (branches, expected) in cases {
            assert_eq!(Union::from_branches(&branches), expected);
        }
    }
}
