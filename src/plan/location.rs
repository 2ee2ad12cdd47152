//! Symbolic places in a plan (`steps[2].sql`), turned into line and column only when printed.

use std::fmt;

use super::yaml::{Node, NodeValue, Pos};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A route from the document root to a node; `at_key` points at the key rather than its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    pub segments: Vec<Segment>,
    pub at_key: bool,
    /// A place inside the scalar the route ends at: line and column (1-based) within its value,
    /// e.g. where a SQL text fails to parse.
    pub inner: Option<(usize, usize)>,
}

impl Location {
    pub fn root() -> Location {
        Location::default()
    }

    pub fn key(&self, key: impl Into<String>) -> Location {
        let mut next = self.clone();
        next.segments.push(Segment::Key(key.into()));
        next.at_key = false;
        next
    }

    pub fn index(&self, index: usize) -> Location {
        let mut next = self.clone();
        next.segments.push(Segment::Index(index));
        next.at_key = false;
        next
    }

    /// Points at the last key itself (for unknown or duplicate keys).
    pub fn at_key(mut self) -> Location {
        self.at_key = true;
        self
    }

    /// Reads a JSON pointer such as `/steps/0/kind`; numeric segments under sequences are indexes.
    pub fn from_pointer(pointer: &str, root: &Node) -> Location {
        let mut location = Location::root();
        let mut node = Some(root);
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            let is_seq = matches!(node.map(|n| &n.value), Some(NodeValue::Seq(_)));
            match (is_seq, segment.parse::<usize>()) {
                (true, Ok(i)) => {
                    node = match node.map(|n| &n.value) {
                        Some(NodeValue::Seq(items)) => items.get(i),
                        _ => None,
                    };
                    location = location.index(i);
                }
                _ => {
                    node = node.and_then(|n| n.get(&segment)).map(|e| &e.value);
                    location = location.key(segment);
                }
            }
        }
        location
    }

    /// The source position: the deepest node of the route that exists.
    pub fn resolve(&self, root: &Node) -> Pos {
        let mut node = root;
        let mut pos = root.pos;
        let last = self.segments.len();
        for (i, segment) in self.segments.iter().enumerate() {
            match (segment, &node.value) {
                (Segment::Key(key), NodeValue::Map(_)) => match node.get(key) {
                    Some(entry) => {
                        pos = if i + 1 == last && self.at_key {
                            entry.key_pos
                        } else {
                            entry.value.pos
                        };
                        node = &entry.value;
                    }
                    None => return pos,
                },
                (Segment::Index(index), NodeValue::Seq(items)) => match items.get(*index) {
                    Some(item) => {
                        pos = item.pos;
                        node = item;
                    }
                    None => return pos,
                },
                _ => return pos,
            }
        }
        pos
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::yaml;

    #[test]
    fn routes_resolve_to_keys_and_values() {
        let root = yaml::parse("steps:\n  - id: a\n    sqll: x\n").unwrap();
        let step = Location::root().key("steps").index(0);
        assert_eq!(step.to_string(), "steps[0]");
        assert_eq!(
            step.key("sqll").at_key().resolve(&root),
            Pos { line: 3, col: 5 }
        );
        assert_eq!(step.key("sqll").resolve(&root), Pos { line: 3, col: 11 });
        assert_eq!(step.key("missing").resolve(&root), Pos { line: 2, col: 5 });
        assert_eq!(Location::from_pointer("/steps/0/id", &root), step.key("id"));
    }
}
