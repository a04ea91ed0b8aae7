//! One small CSV reader shared by every loader, so that all of them report errors the same way:
//! file name, 1-based line number (the header is line 1) and a typed reason.
//!
//! Rows are deserialised with serde into structs whose fields are all `Option<String>`: serde only
//! gives each column a name, and the loaders then parse and check values themselves. That is
//! deliberate: serde's own messages ("invalid digit found in string") do not say which column or
//! which rule was broken, ours do.

use std::collections::HashSet;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use turnpike_wire::money::{Currency, Money};

use crate::error::{LoadError, LoadReason};
use crate::money;

/// A CSV file whose header has been read and checked.
pub(crate) struct CsvTable<'a> {
    file: &'a str,
    text: &'a str,
    headers: csv::StringRecord,
    reader: csv::Reader<&'a [u8]>,
}

impl<'a> CsvTable<'a> {
    /// Reads the header of `text` and checks that every `required` column is present. Column
    /// names are case-sensitive (as in GTFS); unknown columns are ignored (also as in GTFS), so a
    /// feed may carry extensions.
    pub(crate) fn open(file: &'a str, text: &'a str, required: &[&str]) -> Result<Self, LoadError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| csv_error(file, text, e))?
            .clone();
        if headers.iter().all(str::is_empty) {
            return Err(LoadError::whole(file, LoadReason::NoHeader));
        }
        let mut seen = HashSet::new();
        for name in headers.iter() {
            if !seen.insert(name) {
                return Err(LoadError::at(
                    file,
                    1,
                    LoadReason::DuplicateColumn(name.to_string()),
                ));
            }
        }
        for column in required {
            if !seen.contains(column) {
                return Err(LoadError::at(
                    file,
                    1,
                    LoadReason::MissingColumn((*column).to_string()),
                ));
            }
        }
        Ok(CsvTable {
            file,
            text,
            headers,
            reader,
        })
    }

    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }

    /// The header's columns that are not in `known`, in header order.
    pub(crate) fn other_columns(&self, known: &[&str]) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| !h.is_empty() && !known.contains(h))
            .map(str::to_string)
            .collect()
    }

    /// The data rows, each with the context needed to report an error on its line.
    pub(crate) fn rows<T: DeserializeOwned>(
        self,
    ) -> impl Iterator<Item = Result<(Row<'a>, T), LoadError>> {
        let CsvTable {
            file,
            text,
            headers,
            reader,
        } = self;
        // Line numbers are counted here from the record's byte offset: the csv crate's own count
        // is one too low after CRLF line endings. Counting forward from the previous record keeps
        // this linear in the file.
        let bytes = text.as_bytes();
        let (mut counted_to, mut line_at) = (0usize, 1u64);
        reader.into_records().map(move |record| {
            let record = record.map_err(|e| csv_error(file, text, e))?;
            let mut offset = record
                .position()
                .map_or(counted_to, |p| {
                    usize::try_from(p.byte()).unwrap_or(usize::MAX)
                })
                .clamp(counted_to, bytes.len());
            // After a CRLF the record's position is that of the `\n` (the `\r` ended the previous
            // record): the record's text starts after any line ends here.
            while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
                offset += 1;
            }
            line_at += bytes[counted_to..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = offset;
            let line = line_at;
            let row = Row { file, line };
            let value = record
                .deserialize::<T>(Some(&headers))
                .map_err(|e| row.err(LoadReason::Csv(e.to_string())))?;
            Ok((row, value))
        })
    }
}

fn csv_error(file: &str, text: &str, error: csv::Error) -> LoadError {
    // The line from the byte offset, not the csv crate's count (one too low after CRLF).
    let line = error.position().map(|p| {
        let end = usize::try_from(p.byte())
            .unwrap_or(usize::MAX)
            .min(text.len());
        1 + text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
    });
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => LoadReason::FieldCount {
            expected: *expected_len,
            found: *len,
        },
        csv::ErrorKind::Utf8 { .. } => LoadReason::Csv("not valid UTF-8".to_string()),
        _ => LoadReason::Csv(error.to_string()),
    };
    LoadError::new(file, line, reason)
}

/// Where a value came from, to build errors that name the file and line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row<'a> {
    pub(crate) file: &'a str,
    pub(crate) line: u64,
}

impl Row<'_> {
    pub(crate) fn err(&self, reason: LoadReason) -> LoadError {
        LoadError::at(self.file, self.line, reason)
    }

    pub(crate) fn invalid(&self, column: &str, value: &str, expected: &str) -> LoadError {
        self.err(LoadReason::InvalidValue {
            column: column.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        })
    }

    /// A value that must be present and non-empty.
    pub(crate) fn required<'v>(
        &self,
        column: &str,
        value: &'v Option<String>,
    ) -> Result<&'v str, LoadError> {
        optional(value).ok_or_else(|| {
            self.err(LoadReason::MissingValue {
                column: column.to_string(),
            })
        })
    }

    pub(crate) fn decimal(&self, column: &str, text: &str) -> Result<Decimal, LoadError> {
        // Only plain decimal notation, `-?[0-9]+(.[0-9]+)?`: exponents, `+`, thousands
        // separators are refused (a fare table is read by people too), and so are more than 28
        // digits, which rust_decimal would otherwise round silently.
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let plain = digits(int_part)
            && frac_part.is_none_or(digits)
            && text.bytes().filter(u8::is_ascii_digit).count() <= 28;
        match Decimal::from_str(text) {
            Ok(value) if plain => Ok(value),
            _ => Err(self.invalid(column, text, "expected a decimal number such as 2.50")),
        }
    }

    pub(crate) fn integer<T: FromStr>(
        &self,
        column: &str,
        text: &str,
        expected: &str,
    ) -> Result<T, LoadError> {
        text.parse::<T>()
            .map_err(|_| self.invalid(column, text, expected))
    }

    pub(crate) fn currency(&self, column: &str, text: &str) -> Result<Currency, LoadError> {
        money::parse_currency(text).ok_or_else(|| {
            self.invalid(column, text, "expected a supported ISO 4217 currency code")
        })
    }

    /// The row's currency (a required column), which must be the currency of the table's first
    /// row; `first` remembers that currency and its line.
    pub(crate) fn same_currency(
        &self,
        column: &str,
        value: &Option<String>,
        first: &mut Option<(Currency, u64)>,
    ) -> Result<Currency, LoadError> {
        let row_currency = self.currency(column, self.required(column, value)?)?;
        match *first {
            None => *first = Some((row_currency, self.line)),
            Some((expected, first_line)) if expected != row_currency => {
                return Err(self.err(LoadReason::CurrencyMismatch {
                    expected: money::code(expected),
                    found: money::code(row_currency),
                    first_line,
                }));
            }
            Some(_) => {}
        }
        Ok(row_currency)
    }

    /// An amount in `currency`, refusing more decimal places than the currency has (GTFS says an
    /// amount has exactly the currency's decimals; we accept fewer, like "2" for 2.00 CNY).
    pub(crate) fn amount(
        &self,
        column: &str,
        text: &str,
        currency: Currency,
    ) -> Result<Money, LoadError> {
        let value = self.decimal(column, text)?;
        money::exact(value, currency).map_err(|why| {
            let value = text.to_string();
            let currency = money::code(currency);
            self.err(match why {
                money::NotAnAmount::Precision => LoadReason::AmountPrecision { value, currency },
                money::NotAnAmount::Range => LoadReason::AmountRange { value, currency },
            })
        })
    }
}

/// The trimmed value, with an empty field read as absent (GTFS: an empty optional field is unset).
pub(crate) fn optional(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}
