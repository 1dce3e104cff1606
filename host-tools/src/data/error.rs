//! [`InputError`]: an input problem with its position, `file:line:column: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// An input problem with the position where it was found: `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line, when the problem is at a line.
    pub line: Option<u64>,
    /// 1-based column (field index), when the problem is at a field.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    pub(crate) fn new(
        path: &Path,
        line: Option<u64>,
        column: Option<usize>,
        message: String,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}
