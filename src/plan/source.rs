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
        location.resolve(&self.root)
    }

    pub fn line(&self, number: usize) -> Option<&str> {
        self.text.lines().nth(number.checked_sub(1)?)
    }
}
