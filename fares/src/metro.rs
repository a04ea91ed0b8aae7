//! [`MetroFares`]: the priced station-to-station table of one metro network, and its loader from
//! a plain fare matrix (stops CSV + matrix CSV).
//!
//! Whatever the source (a matrix, or GTFS Fares v2 through [`crate::GtfsFeed::metro_fares`]), the
//! table is held as a dense stop × stop array: a gate's exit tap is priced with two hash look-ups
//! and an index, and the minimum and maximum fares are known once, at load.
//!
//! # Matrix format
//! `stops.csv` (any file name): `stop_id,stop_name`; other columns are ignored.
//!
//! `fare_matrix.csv`: `from_stop_id,to_stop_id,amount,currency[,symmetric]`.
//! - `amount` is a plain decimal with at most the currency's decimal places (`3`, `3.00`).
//! - `symmetric` is optional: `1` means the row also prices `to → from`; `0` or empty means this
//!   direction only. A pair priced twice (twice the same direction, or once by a symmetric row and
//!   once explicitly the other way) is an error, so no row is silently overridden.
//! - Entry and exit at the same stop are priced only if the matrix has a row for that stop with
//!   itself; otherwise [`MetroFares::price`] answers [`FareError::NoFareRule`].
//! - All rows share one currency.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use turnpike_wire::money::{Currency, Money};

use crate::error::{FareError, LoadError, LoadReason};
use crate::table::{self, CsvTable};

/// A stop (station) of the network, as gates are registered against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub id: String,
    pub name: String,
}

/// The loaded fare table of one metro network.
#[derive(Debug, Clone)]
pub struct MetroFares {
    currency: Currency,
    stops: Vec<Stop>,
    index: HashMap<String, usize>,
    /// Row-major `stops.len()²` array: `fares[from * n + to]`.
    fares: Vec<Option<Money>>,
    min_fare: Money,
    max_fare: Money,
}

impl MetroFares {
    /// The fare from `from_stop` to `to_stop`.
    pub fn price(&self, from_stop: &str, to_stop: &str) -> Result<Money, FareError> {
        let from = self.stop_index(from_stop)?;
        let to = self.stop_index(to_stop)?;
        self.fares[from * self.stops.len() + to].ok_or_else(|| FareError::NoFareRule {
            from_stop: from_stop.to_string(),
            to_stop: to_stop.to_string(),
        })
    }

    /// The cheapest fare in the table.
    pub fn min_fare(&self) -> Money {
        self.min_fare
    }

    /// The dearest fare in the table: what a journey closed without an exit tap is charged.
    pub fn max_fare(&self) -> Money {
        self.max_fare
    }

    /// The stops of the network, in the order of the source file. For a table built from GTFS,
    /// only the stops that have at least one fare on the network.
    pub fn stops(&self) -> &[Stop] {
        &self.stops
    }

    /// The stop with this id, if the network has it.
    pub fn stop(&self, stop_id: &str) -> Option<&Stop> {
        self.index.get(stop_id).map(|&i| &self.stops[i])
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    fn stop_index(&self, stop_id: &str) -> Result<usize, FareError> {
        self.index
            .get(stop_id)
            .copied()
            .ok_or_else(|| FareError::UnknownStop {
                stop_id: stop_id.to_string(),
            })
    }

    /// Builds the table from a dense `stops.len()²` array. `None` when no pair has a fare.
    pub(crate) fn from_dense(
        currency: Currency,
        stops: Vec<Stop>,
        fares: Vec<Option<Money>>,
    ) -> Option<MetroFares> {
        debug_assert_eq!(fares.len(), stops.len() * stops.len());
        // One currency per table (the loaders check it), so comparing minor units is sound.
        let mut priced = fares.iter().flatten().copied();
        let first = priced.next()?;
        let (min_fare, max_fare) = priced.fold((first, first), |(lo, hi), fare| {
            let lo = if fare.to_minor() < lo.to_minor() {
                fare
            } else {
                lo
            };
            let hi = if fare.to_minor() > hi.to_minor() {
                fare
            } else {
                hi
            };
            (lo, hi)
        });
        let index = stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Some(MetroFares {
            currency,
            stops,
            index,
            fares,
            min_fare,
            max_fare,
        })
    }

    /// Loads a fare matrix from in-memory text, each given as `(file name, contents)`; the name is
    /// used only in errors.
    pub fn from_matrix_csv(stops: (&str, &str), matrix: (&str, &str)) -> Result<Self, LoadError> {
        let (stops_file, stops_text) = stops;
        let (matrix_file, matrix_text) = matrix;
        let stops = read_stops(stops_file, stops_text)?;
        let n = stops.len();
        let index: HashMap<&str, usize> = stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();

        let mut fares: Vec<Option<Money>> = vec![None; n * n];
        // Which line priced each cell, to point at the first one when a pair comes twice.
        let mut priced_on: HashMap<(usize, usize), u64> = HashMap::new();
        let mut currency: Option<(Currency, u64)> = None;

        let matrix = CsvTable::open(
            matrix_file,
            matrix_text,
            &["from_stop_id", "to_stop_id", "amount", "currency"],
        )?;
        for item in matrix.rows::<MatrixRow>() {
            let (row, record) = item?;
            let stop = |column: &str, value: &Option<String>| -> Result<usize, LoadError> {
                let id = row.required(column, value)?;
                index.get(id).copied().ok_or_else(|| {
                    row.err(LoadReason::UnknownReference {
                        column: column.to_string(),
                        id: id.to_string(),
                        defined_in: stops_file.to_string(),
                    })
                })
            };
            let from = stop("from_stop_id", &record.from_stop_id)?;
            let to = stop("to_stop_id", &record.to_stop_id)?;
            let row_currency = row.same_currency("currency", &record.currency, &mut currency)?;
            let amount_text = row.required("amount", &record.amount)?;
            let amount = row.amount("amount", amount_text, row_currency)?;
            if amount.amount() < Decimal::ZERO {
                return Err(row.invalid("amount", amount_text, "a fare cannot be negative"));
            }
            let symmetric = match table::optional(&record.symmetric) {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(row.invalid("symmetric", other, "expected 1, 0 or empty"));
                }
            };
            let mut cells = vec![(from, to)];
            if symmetric && from != to {
                cells.push((to, from));
            }
            for (a, b) in cells {
                if let Some(&first_line) = priced_on.get(&(a, b)) {
                    return Err(row.err(LoadReason::Duplicate {
                        what: "fare for".to_string(),
                        id: format!("{} -> {}", stops[a].id, stops[b].id),
                        first_line,
                    }));
                }
                priced_on.insert((a, b), row.line);
                fares[a * n + b] = Some(amount);
            }
        }
        let Some((currency, _)) = currency else {
            return Err(LoadError::whole(
                matrix_file,
                LoadReason::Invalid("the matrix has no fares".to_string()),
            ));
        };
        MetroFares::from_dense(currency, stops, fares).ok_or_else(|| {
            LoadError::whole(
                matrix_file,
                LoadReason::Invalid("the matrix has no fares".to_string()),
            )
        })
    }
}

#[derive(Deserialize)]
struct MatrixRow {
    from_stop_id: Option<String>,
    to_stop_id: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    symmetric: Option<String>,
}

#[derive(Deserialize)]
struct StopRow {
    stop_id: Option<String>,
    stop_name: Option<String>,
}

/// Reads `stop_id,stop_name` (other columns ignored), refusing duplicate ids and empty names.
fn read_stops(file: &str, text: &str) -> Result<Vec<Stop>, LoadError> {
    let table = CsvTable::open(file, text, &["stop_id", "stop_name"])?;
    let mut stops = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for item in table.rows::<StopRow>() {
        let (row, record) = item?;
        let id = row.required("stop_id", &record.stop_id)?;
        let name = row.required("stop_name", &record.stop_name)?;
        if let Some(&first) = first_line.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "stop_id".to_string(),
                id: id.to_string(),
                first_line: first,
            }));
        }
        first_line.insert(id.to_string(), row.line);
        stops.push(Stop {
            id: id.to_string(),
            name: name.to_string(),
        });
    }
    if stops.is_empty() {
        return Err(LoadError::whole(
            file,
            LoadReason::Invalid("no stops".to_string()),
        ));
    }
    Ok(stops)
}
