//! [`MetroFares`]: the priced station-to-station table of one metro network, and its loader from
//! a plain fare matrix (stops CSV + matrix CSV).
//!
//! A matrix is held as its priced pairs only (memory linear in its rows, whatever the number of
//! stops); a table built from GTFS Fares v2 ([`crate::GtfsFeed::metro_fares`]) holds the feed and
//! prices each tap by rule ([`MetroFares::price_at`]: the stops' areas, then the rules indexed by
//! (network, from area, to area), then their timeframes), so it too is linear in the feed's size.
//! The minimum and maximum fares are known at load (for GTFS: over the network's rules' products
//! for the configured rider, an upper bound of any leg's fare).
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

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use turnpike_wire::money::{Currency, Money};

use crate::error::{FareError, LoadError, LoadReason};
use crate::fast::HashMap;
use crate::gtfs::{FareQuery, GtfsFeed, Resolved};
use crate::limits::Limits;
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
    prices: Prices,
    min_fare: Money,
    max_fare: Money,
}

/// How a [`MetroFares`] prices.
#[derive(Debug, Clone)]
enum Prices {
    /// A matrix's priced pairs (from, to) in minor units.
    Sparse(HashMap<(u32, u32), i64>),
    /// A GTFS feed's rules, at tap time.
    Rules(RulePricing),
}

/// A network of a GTFS feed and the rider and medium its gates price for by default.
#[derive(Clone)]
pub(crate) struct RulePricing {
    pub(crate) feed: Arc<GtfsFeed>,
    /// The keys under which the network's rules are indexed.
    pub(crate) networks: Vec<Option<usize>>,
    /// The feed's stop index of each of the table's stops.
    pub(crate) stop_of: Vec<u32>,
    /// The configured rider and medium, resolved against the feed.
    pub(crate) resolved: Resolved,
}

impl std::fmt::Debug for RulePricing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulePricing")
            .field("networks", &self.networks)
            .field("stops", &self.stop_of.len())
            .finish_non_exhaustive()
    }
}

impl MetroFares {
    /// The fare from `from_stop` to `to_stop` for the network's configured rider and medium,
    /// with no time (a GTFS network's time-dependent rules do not apply; see
    /// [`MetroFares::price_at`]).
    pub fn price(&self, from_stop: &str, to_stop: &str) -> Result<Money, FareError> {
        self.price_at(from_stop, to_stop, 0, 0, None)
    }

    /// The fare of a journey entered at `from_stop` at `start_s` and left at `to_stop` at
    /// `end_s` (seconds on the clock of `query`'s [`crate::ServiceDay`]), for `query`'s rider,
    /// medium and day; `None` uses the network's configured query. A matrix ignores times and
    /// riders.
    pub fn price_at(
        &self,
        from_stop: &str,
        to_stop: &str,
        start_s: i64,
        end_s: i64,
        query: Option<&FareQuery>,
    ) -> Result<Money, FareError> {
        let from = self.stop_index(from_stop)?;
        let to = self.stop_index(to_stop)?;
        let minor = match &self.prices {
            Prices::Rules(rules) => {
                let asked;
                let q = match query {
                    None => &rules.resolved,
                    Some(query) => {
                        asked = rules.feed.resolve(query)?;
                        &asked
                    }
                };
                let stops = (rules.stop_of[from] as usize, rules.stop_of[to] as usize);
                return rules
                    .feed
                    .price_stops(&rules.networks, stops, (start_s, end_s), q)
                    .ok_or_else(|| FareError::NoFareRule {
                        from_stop: from_stop.to_string(),
                        to_stop: to_stop.to_string(),
                    })?;
            }
            Prices::Sparse(fares) => fares.get(&(from as u32, to as u32)).copied(),
        };
        minor
            .map(|m| Money::from_minor(m, self.currency))
            .ok_or_else(|| FareError::NoFareRule {
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

    /// The network's GTFS feed, when it was built from one (its warnings, its currency).
    pub fn feed(&self) -> Option<&GtfsFeed> {
        match &self.prices {
            Prices::Rules(rules) => Some(&rules.feed),
            Prices::Sparse(_) => None,
        }
    }

    /// A table priced by rule; `min` and `max` bound its fares.
    pub(crate) fn by_rule(stops: Vec<Stop>, rules: RulePricing, min: Money, max: Money) -> Self {
        let currency = rules.feed.currency();
        MetroFares::new(
            currency,
            stops,
            Prices::Rules(rules),
            min.to_minor(),
            max.to_minor(),
        )
    }

    fn new(currency: Currency, stops: Vec<Stop>, prices: Prices, min: i64, max: i64) -> MetroFares {
        let index = stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        MetroFares {
            currency,
            stops,
            index,
            prices,
            min_fare: Money::from_minor(min, currency),
            max_fare: Money::from_minor(max, currency),
        }
    }

    /// Loads a fare matrix from in-memory text, each given as `(file name, contents)`; the name is
    /// used only in errors.
    pub fn from_matrix_csv(stops: (&str, &str), matrix: (&str, &str)) -> Result<Self, LoadError> {
        Self::from_matrix_csv_with(stops, matrix, &Limits::default())
    }

    /// [`MetroFares::from_matrix_csv`] within `limits` (`stops_max`; `rules_max` rows of the
    /// matrix; `feed_bytes_max` for both files).
    pub fn from_matrix_csv_with(
        stops: (&str, &str),
        matrix: (&str, &str),
        limits: &Limits,
    ) -> Result<Self, LoadError> {
        let (stops_file, stops_text) = stops;
        let (matrix_file, matrix_text) = matrix;
        let bytes = (stops_text.len() + matrix_text.len()) as u64;
        Limits::check(matrix_file, "feed_bytes_max", limits.feed_bytes_max, bytes)?;
        let stops = read_stops(stops_file, stops_text)?;
        Limits::check(
            stops_file,
            "stops_max",
            limits.stops_max,
            stops.len() as u64,
        )?;
        if u32::try_from(stops.len()).is_err() {
            // Pairs are keyed by 32-bit stop indexes.
            return Err(LoadError::whole(
                stops_file,
                LoadReason::Invalid(format!("{} stops; at most {}", stops.len(), u32::MAX)),
            ));
        }
        let index: HashMap<&str, usize> = stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();

        // Each priced pair's fare (minor units) and the line that priced it, to point at the
        // first one when a pair comes twice. Only priced pairs are held: a matrix of a million
        // stops and a few rows takes a few rows' memory.
        let mut fares: HashMap<(u32, u32), (i64, u64)> = HashMap::default();
        let mut currency: Option<(Currency, u64)> = None;

        let matrix = CsvTable::open(
            matrix_file,
            matrix_text,
            &["from_stop_id", "to_stop_id", "amount", "currency"],
        )?;
        let mut rows = 0u64;
        for item in matrix.rows::<MatrixRow>() {
            let (row, record) = item?;
            rows += 1;
            Limits::check(matrix_file, "rules_max", limits.rules_max, rows)?;
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
                if let Some(&(_, first_line)) = fares.get(&(a as u32, b as u32)) {
                    return Err(row.err(LoadReason::Duplicate {
                        what: "fare for".to_string(),
                        id: format!("{} -> {}", stops[a].id, stops[b].id),
                        first_line,
                    }));
                }
                fares.insert((a as u32, b as u32), (amount.to_minor(), row.line));
            }
        }
        let Some((currency, _)) = currency else {
            return Err(LoadError::whole(
                matrix_file,
                LoadReason::Invalid("the matrix has no fares".to_string()),
            ));
        };
        let fares: HashMap<(u32, u32), i64> = fares
            .into_iter()
            .map(|(pair, (minor, _))| (pair, minor))
            .collect();
        let (min, max) = min_max(fares.values().copied()).ok_or_else(|| {
            LoadError::whole(
                matrix_file,
                LoadReason::Invalid("the matrix has no fares".to_string()),
            )
        })?;
        Ok(MetroFares::new(
            currency,
            stops,
            Prices::Sparse(fares),
            min,
            max,
        ))
    }
}

/// The smallest and largest of `fares` (one currency, so minor units compare), if any.
fn min_max(fares: impl Iterator<Item = i64>) -> Option<(i64, i64)> {
    fares.fold(None, |acc, m| match acc {
        None => Some((m, m)),
        Some((lo, hi)) => Some((lo.min(m), hi.max(m))),
    })
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
    let mut first_line: HashMap<String, u64> = HashMap::default();
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
