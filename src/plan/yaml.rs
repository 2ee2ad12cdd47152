//! Reads YAML into a tree of nodes that keep their source spans, with hard limits against hostile input.
//!
//! `serde_yaml` is archived upstream and reports only the first error with a position, so plans
//! are parsed with `saphyr-parser`'s event stream instead: every node keeps its line and column,
//! duplicate keys are caught, and alias expansion is budgeted so a "billion laughs" document fails
//! fast in bounded memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; a plan needs fewer than ten levels.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to (aliases included).
pub const MAX_NODES: usize = 100_000;

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// One YAML node with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; keys are strings with their own positions.
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// Why a text is not acceptable YAML for a plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub pos: Pos,
}

impl YamlError {
    fn at(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            message: message.into(),
            pos,
        }
    }
}

impl Node {
    /// Converts to JSON, the form the schema validator and serde read.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    fn count(&self) -> usize {
        match &self.value {
            NodeValue::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            NodeValue::Map(entries) => {
                1 + entries.iter().map(|e| 1 + e.value.count()).sum::<usize>()
            }
            _ => 1,
        }
    }
}

enum Frame {
    Seq {
        anchor: usize,
        pos: Pos,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        pos: Pos,
        entries: Vec<Entry>,
        pending_key: Option<(String, Pos)>,
    },
}

/// Parses exactly one YAML document into a node tree.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            YamlError::at(
                Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let pos = Pos::from_span(&span);
        let finished = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::at(
                        pos,
                        "a plan file holds one YAML document; found a second `---`",
                    ));
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).ok_or_else(|| {
                    YamlError::at(pos, "alias refers to an anchor that is not defined")
                })?;
                nodes += node.count();
                if nodes > MAX_NODES {
                    return Err(too_many_nodes(pos));
                }
                Some((0, node.clone()))
            }
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many_nodes(pos));
                }
                let forced_str = match &tag {
                    Some(tag) if tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str" => true,
                    Some(tag) => {
                        return Err(YamlError::at(
                            pos,
                            format!(
                                "YAML tag `{}{}` is not supported in plans",
                                tag.handle, tag.suffix
                            ),
                        ));
                    }
                    None => false,
                };
                let value = if forced_str || style != ScalarStyle::Plain {
                    NodeValue::Str(value.into_owned())
                } else {
                    resolve_plain(&value)
                };
                Some((anchor, Node { value, pos }))
            }
            Event::SequenceStart(anchor, tag) => {
                reject_tag(tag.as_deref(), pos)?;
                push(
                    &mut stack,
                    Frame::Seq {
                        anchor,
                        pos,
                        items: Vec::new(),
                    },
                    pos,
                )?;
                None
            }
            Event::MappingStart(anchor, tag) => {
                reject_tag(tag.as_deref(), pos)?;
                push(
                    &mut stack,
                    Frame::Map {
                        anchor,
                        pos,
                        entries: Vec::new(),
                        pending_key: None,
                    },
                    pos,
                )?;
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { anchor, pos, items }) => Some((
                    anchor,
                    Node {
                        value: NodeValue::Seq(items),
                        pos,
                    },
                )),
                _ => return Err(YamlError::at(pos, "unbalanced sequence end")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    anchor,
                    pos,
                    entries,
                    ..
                }) => Some((
                    anchor,
                    Node {
                        value: NodeValue::Map(entries),
                        pos,
                    },
                )),
                _ => return Err(YamlError::at(pos, "unbalanced mapping end")),
            },
        };
        let Some((anchor, node)) = finished else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match node.value {
                        NodeValue::Str(s) => s,
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Null => {
                            return Err(YamlError::at(node.pos, "mapping key is empty (null)"));
                        }
                        _ => {
                            return Err(YamlError::at(
                                node.pos,
                                "mapping keys must be plain strings, not collections",
                            ));
                        }
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        return Err(YamlError::at(
                            node.pos,
                            format!(
                                "duplicate key `{key}` (first defined at line {})",
                                first.key_pos.line
                            ),
                        ));
                    }
                    *pending_key = Some((key, node.pos));
                }
                Some((key, key_pos)) => entries.push(Entry {
                    key,
                    key_pos,
                    value: node,
                }),
            },
        }
    }
    root.ok_or_else(|| YamlError::at(Pos { line: 1, col: 1 }, "the file is empty"))
}

fn push(stack: &mut Vec<Frame>, frame: Frame, pos: Pos) -> Result<(), YamlError> {
    if stack.len() >= MAX_DEPTH {
        return Err(YamlError::at(
            pos,
            format!("document is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    stack.push(frame);
    Ok(())
}

fn too_many_nodes(pos: Pos) -> YamlError {
    YamlError::at(
        pos,
        format!(
            "document expands to more than {MAX_NODES} nodes (an alias bomb?); plans are far smaller"
        ),
    )
}

fn reject_tag(tag: Option<&saphyr_parser::Tag>, pos: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(tag) => Err(YamlError::at(
            pos,
            format!(
                "YAML tag `{}{}` is not supported in plans",
                tag.handle, tag.suffix
            ),
        )),
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema (no `yes`/`no` booleans, no octal surprises).
fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return NodeValue::Int(i);
    }
    let looks_float = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.contains(['.', 'e', 'E']);
    if looks_float
        && let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> Result<serde_json::Value, String> {
        parse(text)
            .map(|n| n.to_json())
            .map_err(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let v = case("a: 1\nb: yes\nc: 1.5\nd: ~\ne: '1'\nf: true\ng: 01:00-05:00\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "b": "yes", "c": 1.5, "d": null, "e": "1", "f": true, "g": "01:00-05:00"})
        );
    }

    #[test]
    fn positions_are_one_based() {
        let node = parse("name: x\nsteps:\n  - id: a\n").unwrap();
        let steps = node.get("steps").unwrap();
        assert_eq!(steps.key_pos, Pos { line: 2, col: 1 });
        let NodeValue::Seq(items) = &steps.value.value else {
            panic!("not a sequence")
        };
        assert_eq!(items[0].get("id").unwrap().key_pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn hostile_documents_fail_with_positions() {
        let cases = [
            ("", "1:1: the file is empty"),
            (
                "a: 1\na: 2\n",
                "2:1: duplicate key `a` (first defined at line 1)",
            ),
            ("a: [1, 2\n", ""),
            (
                "a: 1\n---\nb: 2\n",
                "2:1: a plan file holds one YAML document; found a second `---`",
            ),
            (
                "a: !custom 1\n",
                "1:4: YAML tag `!custom` is not supported in plans",
            ),
            ("a: *nothing\n", ""),
        ];
        for (text, expected) in cases {
            let err = case(text).expect_err(text);
            if !expected.is_empty() {
                assert_eq!(err, expected, "for {text:?}");
            }
        }
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = case(&doc).unwrap_err();
        assert!(err.contains("alias bomb"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(case(&block).unwrap_err().contains("nested deeper than 64"));
        let flow = "[".repeat(10_000);
        assert!(
            case(&flow)
                .unwrap_err()
                .contains("recursion limit exceeded")
        );
    }
}
