//! A plan file as read from disk: its path, text and node tree, with the limits on what is read.

use std::path::Path;

use super::location::Location;
use super::yaml::{self, Node, Pos};

/// Largest plan file read; real plans are a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A loaded plan file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the user gave it (kept relative so output is stable).
    pub path: String,
    pub text: String,
    pub root: Node,
}

/// Why a file could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read the file")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is {size} bytes; plans are limited to {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String, size: u64 },
    #[error("{path}:{line}:{col}: file is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        path: String,
        offset: usize,
        line: usize,
        col: usize,
    },
    #[error("{path}:{}:{}: {}", .error.pos.line, .error.pos.col, .error.message)]
    Yaml {
        path: String,
        error: yaml::YamlError,
    },
}

impl LoadError {
    pub fn path(&self) -> &str {
        match self {
            LoadError::Read { path, .. }
            | LoadError::TooLarge { path, .. }
            | LoadError::NotUtf8 { path, .. }
            | LoadError::Yaml { path, .. } => path,
        }
    }
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, LoadError> {
        use std::io::Read;
        let display = path.display().to_string();
        let read_err = |source| LoadError::Read {
            path: display.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        if size > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge {
                path: display,
                size,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge {
                path: display,
                size: bytes.len() as u64,
            });
        }
        Source::from_bytes(display, bytes)
    }

    pub fn from_bytes(path: String, bytes: Vec<u8>) -> Result<Source, LoadError> {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                let before = &err.as_bytes()[..offset];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let line_start = before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                let col = String::from_utf8_lossy(&before[line_start..])
                    .chars()
                    .count()
                    + 1;
                return Err(LoadError::NotUtf8 {
                    path,
                    offset,
                    line,
                    col,
                });
            }
        };
        Source::from_text(path, text)
    }

    pub fn from_text(path: String, text: String) -> Result<Source, LoadError> {
        let root = yaml::parse(&text).map_err(|error| LoadError::Yaml {
            path: path.clone(),
            error,
        })?;
        Ok(Source { path, text, root })
    }

    pub fn position(&self, location: &Location) -> Pos {
        let start = location.resolve(&self.root);
        match location.inner {
            Some(inner) => self.inside(start, inner).unwrap_or(start),
            None => start,
        }
    }

    /// Where line `l`, column `c` of a scalar's value stands in the file, the scalar starting at
    /// `start`: a literal block (`|`) keeps its lines; a folded block, a plain or a quoted scalar
    /// joins its lines with a space (a blank line is a line break).
    fn inside(&self, start: Pos, (l, c): (usize, usize)) -> Option<Pos> {
        let lines: Vec<&str> = self.text.lines().collect();
        let first = lines.get(start.line.checked_sub(1)?)?;
        let before: String = first.chars().take(start.col.saturating_sub(1)).collect();
        let opening = first.chars().nth(start.col.saturating_sub(1))?;
        // A block scalar's value starts on the line after its indicator, at its indentation.
        let block = before.trim().is_empty()
            && start.line >= 2
            && lines
                .get(start.line - 2)
                .map(|p| p.trim_end().trim_end_matches(['-', '+']))
                .is_some_and(|p| p.ends_with('|') || p.ends_with('>'));
        let literal = block
            && lines
                .get(start.line - 2)
                .is_some_and(|p| p.trim_end().trim_end_matches(['-', '+']).ends_with('|'));
        if literal {
            return Some(Pos {
                line: start.line + l - 1,
                col: start.col + c - 1,
            });
        }
        let quoted = !block && (opening == '"' || opening == '\'');
        // Walk the file's lines as the value folds them.
        let (mut line, mut col) = (1, 1);
        for (i, text) in lines.iter().enumerate().skip(start.line - 1) {
            let from = match i + 1 == start.line {
                true => start.col - 1 + usize::from(quoted),
                false => text.len() - text.trim_start().len(),
            };
            let content: Vec<char> = text.chars().skip(from).collect();
            if i + 1 > start.line && content.iter().all(|ch| ch.is_whitespace()) {
                line += 1;
                col = 1;
                continue;
            }
            if line == l && c < col + content.len() + 1 && c >= col {
                return Some(Pos {
                    line: i + 1,
                    col: from + 1 + (c - col),
                });
            }
            col += content.len() + 1;
            if line > l {
                return None;
            }
        }
        None
    }

    pub fn line(&self, number: usize) -> Option<&str> {
        self.text.lines().nth(number.checked_sub(1)?)
    }
}
