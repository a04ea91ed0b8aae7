//! The two error types of this crate: [`LoadError`] when fare data is read, [`FareError`] when a
//! price is asked for.
//!
//! They are kept apart because they reach different people: a `LoadError` goes back to whoever
//! uploaded the data (so it names the file, the line and the reason), a `FareError` goes to the
//! gateway deciding a journey (so it names the stop, plaza or leg).

use std::fmt;

/// Fare data could not be loaded: which file, which line (1-based, the header is line 1) and why.
///
/// Displayed as `fare_leg_rules.txt line 7: unknown area_id "a9" (not in areas.txt)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file name the caller gave with the text (this crate reads no files itself).
    pub file: String,
    /// 1-based line number; `None` when the problem is the file as a whole (missing, empty).
    pub line: Option<u64>,
    pub reason: LoadReason,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl LoadError {
    pub(crate) fn new(file: &str, line: Option<u64>, reason: LoadReason) -> Self {
        LoadError {
            file: file.to_string(),
            line,
            reason,
        }
    }

    pub(crate) fn at(file: &str, line: u64, reason: LoadReason) -> Self {
        Self::new(file, Some(line), reason)
    }

    pub(crate) fn whole(file: &str, reason: LoadReason) -> Self {
        Self::new(file, None, reason)
    }
}

/// Why a file was rejected. Each variant carries the column and value involved, so tests (and an
/// admin UI) can match on the reason rather than on the message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadReason {
    #[error("required file is missing")]
    MissingFile,
    #[error("malformed CSV: {0}")]
    Csv(String),
    #[error("file is empty (no header line)")]
    NoHeader,
    #[error("missing required column `{0}`")]
    MissingColumn(String),
    #[error("column `{0}` appears more than once in the header")]
    DuplicateColumn(String),
    #[error("expected {expected} fields as in the header, found {found}")]
    FieldCount { expected: u64, found: u64 },
    #[error("required value `{column}` is empty")]
    MissingValue { column: String },
    #[error("`{column}` is {value:?}: {expected}")]
    InvalidValue {
        column: String,
        value: String,
        expected: String,
    },
    #[error("amount {value:?} has more decimal places than {currency} allows")]
    AmountPrecision { value: String, currency: String },
    #[error("amount {value:?} is too large for a {currency} amount")]
    AmountRange { value: String, currency: String },
    #[error("duplicate {what} {id:?} (first on line {first_line})")]
    Duplicate {
        what: String,
        id: String,
        first_line: u64,
    },
    #[error("unknown {column} {id:?} (not in {defined_in})")]
    UnknownReference {
        column: String,
        id: String,
        defined_in: String,
    },
    #[error("currency {found} differs from {expected} used on line {first_line}; one table, one currency")]
    CurrencyMismatch {
        expected: String,
        found: String,
        first_line: u64,
    },
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A limit of [`crate::Limits`] was passed: `name` is the limit's field name.
    #[error("limit {name} is {limit}, found {found}")]
    Limit {
        name: String,
        limit: u64,
        found: u64,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Something in the fare data the loader did not use as written, and what it did instead. A
/// warning never changes a price silently: it says what is ignored or assumed, so whoever uploads
/// the feed can check it. Displayed as `fare_leg_rules.txt line 4 column transfer_only: ...`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadWarning {
    pub file: String,
    /// 1-based line (the header is line 1); `None` for the file as a whole.
    pub line: Option<u64>,
    /// The column concerned, if one.
    pub column: Option<String>,
    /// What is not supported and what happens instead.
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(column) = &self.column {
            write!(f, " column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A price could not be given for this journey or toll.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FareError {
    #[error("unknown stop {stop_id:?}")]
    UnknownStop { stop_id: String },
    #[error("no fare rule from {from_stop:?} to {to_stop:?}")]
    NoFareRule { from_stop: String, to_stop: String },
    #[error("unknown plaza {plaza_id:?}")]
    UnknownPlaza { plaza_id: String },
    #[error("the toll table has no rate for vehicle class {class}")]
    NoRateForClass { class: String },
    #[error("unknown rider_category_id {rider_category_id:?}")]
    UnknownRiderCategory { rider_category_id: String },
    #[error("unknown fare_media_id {fare_media_id:?}")]
    UnknownFareMedium { fare_media_id: String },
    #[error("a journey needs at least one leg")]
    EmptyJourney,
    #[error("leg {index}: {reason}")]
    InvalidLeg { index: usize, reason: String },
    #[error("amount out of range")]
    Overflow,
}
