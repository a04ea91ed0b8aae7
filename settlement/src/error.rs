//! The crate's one error type, and the precise input error every reader reports.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with an input, for a UI to group and a test to assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputErrorKind {
    /// The file cannot be opened or read, or a line is longer than [`crate::formats::LINE_BYTES_MAX`].
    Unreadable,
    /// The version line is missing or names another format or version.
    BadVersion,
    /// The column header is not the format's column set, or a row has another number of cells.
    WrongColumns,
    /// The bytes are not in the file's (declared or detected) encoding.
    BadEncoding,
    /// An amount has more decimal places than the format allows (bills: 2; exports: none).
    BadPrecision,
    /// A cell does not hold what its column requires (empty id, unknown kind, bad time...).
    BadValue,
    /// The trailer or footer is missing, malformed, or disagrees with the rows (a truncated or
    /// edited file).
    BadTotals,
    /// The same file content was given twice.
    DuplicateFile,
}

/// One problem in one input file: which file, which line (1-based; `None` for the whole file),
/// and why. Readers never drop a row silently: every rejected row is one of these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub kind: InputErrorKind,
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// Why a reconciliation run failed. A failed run returns no partial result.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// At least one input is unreadable or malformed. Holds the first
    /// [`crate::formats::ERRORS_MAX_PER_FILE`] errors of each file; `total` counts all of them.
    #[error("{total} input error(s); first: {}", .errors.first().map(|e| e.to_string()).unwrap_or_default())]
    Input { errors: Vec<InputError>, total: u64 },
    /// A journal does not balance: a bug, never an input problem, so the run fails loudly.
    #[error("journal for operator {operator} on {day} ({currency}) does not balance: {detail}")]
    Unbalanced {
        day: String,
        operator: String,
        currency: String,
        detail: String,
    },
    /// The run's configuration is unusable (unknown time zone, bad cut-off...).
    #[error("configuration: {0}")]
    Config(String),
}

impl SettlementError {
    pub(crate) fn input(errors: Vec<InputError>, total: u64) -> SettlementError {
        SettlementError::Input { errors, total }
    }

    /// The input errors, if this is an input failure.
    pub fn input_errors(&self) -> &[InputError] {
        match self {
            SettlementError::Input { errors, .. } => errors,
            _ => &[],
        }
    }
}
