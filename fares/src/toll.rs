//! Highway tolls: distance between plazas times a per-class rate, rounded by a written rule.
//!
//! # Formula
//! `toll = max(round(|km_post(exit) − km_post(entry)| × rate_per_km(class)), min_toll(class))`
//!
//! - The product is computed exactly (decimal, never floating point), then rounded once.
//! - [`TollRounding::default`] rounds to the currency's minor unit (0.01 CNY) half-up, the
//!   rule a rider can check with a calculator; [`TollRounding::WholeUnit`] rounds to whole yuan,
//!   as some operators publish.
//! - The minimum toll (optional per class) is applied after rounding. Entry and exit at the same
//!   plaza (a U-turn at the plaza) is distance zero, so it costs exactly the minimum toll, or
//!   nothing for a class without one.
//!
//! # Files
//! `plazas.csv`: `plaza_id,plaza_name,km_post` — `km_post` in kilometres along the road, a
//! non-negative decimal.
//!
//! `rates.csv`: `vehicle_class,rate_per_km,currency[,min_toll]` — `vehicle_class` is `p1`..`p4`
//! or `t1`..`t6` (JT/T 489), `rate_per_km` a non-negative decimal in currency units per kilometre
//! (any number of decimals: a rate is not an amount), `min_toll` an amount in the currency.
//! Every row has the same currency; a class appears at most once.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use turnpike_wire::money::{Currency, Money, Rounding};

pub use turnpike_wire::api::VehicleClass;

use crate::error::{FareError, LoadError, LoadReason};
use crate::table::{self, CsvTable};

/// The text `text` as a vehicle class (`p1`..`p4`, `t1`..`t6`), or an error naming the valid
/// values.
///
/// `VehicleClass` itself lives in `turnpike_wire::api` (terminals send it in taps), so this crate
/// re-exports it rather than define a second one; a `FromStr` impl belongs there.
pub fn parse_vehicle_class(text: &str) -> Result<VehicleClass, UnknownVehicleClass> {
    VehicleClass::parse(text).ok_or_else(|| UnknownVehicleClass {
        text: text.to_string(),
    })
}

/// A vehicle class name that JT/T 489 does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown vehicle class {text:?}: expected one of p1, p2, p3, p4 (passenger) or t1 to t6 (truck)")]
pub struct UnknownVehicleClass {
    pub text: String,
}

/// A toll plaza and where it stands on the road.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plaza {
    pub id: String,
    pub name: String,
    /// Kilometre post along the road.
    pub km_post: Decimal,
}

/// The rate of one vehicle class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TollRate {
    /// Currency units per kilometre, exact.
    pub rate_per_km: Decimal,
    /// The least any trip costs this class, including entry and exit at the same plaza.
    pub min_toll: Option<Money>,
}

/// How the exact `distance × rate` becomes an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TollRounding {
    /// To the currency's minor unit (fen for CNY).
    MinorUnit(Rounding),
    /// To whole major units (yuan for CNY).
    WholeUnit(Rounding),
}

impl Default for TollRounding {
    /// To the fen, half-up: 8.325 CNY is 8.33 CNY.
    fn default() -> Self {
        TollRounding::MinorUnit(Rounding::HalfUp)
    }
}

/// A road's plazas and rates.
#[derive(Debug, Clone)]
pub struct TollTable {
    currency: Currency,
    plazas: Vec<Plaza>,
    index: HashMap<String, usize>,
    rates: HashMap<VehicleClass, TollRate>,
    rounding: TollRounding,
}

impl TollTable {
    /// The toll from `entry_plaza` to `exit_plaza` for a vehicle of `class`.
    pub fn toll(
        &self,
        entry_plaza: &str,
        exit_plaza: &str,
        class: VehicleClass,
    ) -> Result<Money, FareError> {
        let distance_km = self.distance_km(entry_plaza, exit_plaza)?;
        let rate = self
            .rates
            .get(&class)
            .ok_or_else(|| FareError::NoRateForClass {
                class: class.as_str().to_string(),
            })?;
        let exact = distance_km
            .checked_mul(rate.rate_per_km)
            .ok_or(FareError::Overflow)?;
        let (unit, rounding) = match self.rounding {
            TollRounding::MinorUnit(r) => (crate::money::minor_unit(self.currency), r),
            TollRounding::WholeUnit(r) => (Decimal::ONE, r),
        };
        let rounded = crate::money::round_to_unit(exact, unit, self.currency, rounding)
            .ok_or(FareError::Overflow)?;
        Ok(match &rate.min_toll {
            Some(min) if min.to_minor() > rounded.to_minor() => *min,
            _ => rounded,
        })
    }

    /// Kilometres between two plazas (never negative: direction does not matter).
    pub fn distance_km(&self, entry_plaza: &str, exit_plaza: &str) -> Result<Decimal, FareError> {
        let entry = self.plaza(entry_plaza)?;
        let exit = self.plaza(exit_plaza)?;
        // Both posts are non-negative decimals checked at load, so the difference cannot overflow.
        Ok((exit.km_post - entry.km_post).abs())
    }

    pub fn plaza(&self, plaza_id: &str) -> Result<&Plaza, FareError> {
        self.index
            .get(plaza_id)
            .map(|&i| &self.plazas[i])
            .ok_or_else(|| FareError::UnknownPlaza {
                plaza_id: plaza_id.to_string(),
            })
    }

    /// Plazas in the order of the file.
    pub fn plazas(&self) -> &[Plaza] {
        &self.plazas
    }

    pub fn rate(&self, class: VehicleClass) -> Option<&TollRate> {
        self.rates.get(&class)
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn rounding(&self) -> TollRounding {
        self.rounding
    }

    /// The same table with another rounding rule.
    pub fn with_rounding(mut self, rounding: TollRounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// Loads from in-memory text, each given as `(file name, contents)`, with the default rounding.
    pub fn from_csv(plazas: (&str, &str), rates: (&str, &str)) -> Result<Self, LoadError> {
        let (plazas, index) = read_plazas(plazas.0, plazas.1)?;
        let (currency, rates) = read_rates(rates.0, rates.1)?;
        Ok(TollTable {
            currency,
            plazas,
            index,
            rates,
            rounding: TollRounding::default(),
        })
    }
}

#[derive(Deserialize)]
struct PlazaRow {
    plaza_id: Option<String>,
    plaza_name: Option<String>,
    km_post: Option<String>,
}

fn read_plazas(file: &str, text: &str) -> Result<(Vec<Plaza>, HashMap<String, usize>), LoadError> {
    let table = CsvTable::open(file, text, &["plaza_id", "plaza_name", "km_post"])?;
    let mut plazas = Vec::new();
    let mut index = HashMap::new();
    let mut lines = Vec::new();
    for item in table.rows::<PlazaRow>() {
        let (row, record) = item?;
        let id = row.required("plaza_id", &record.plaza_id)?;
        let name = row.required("plaza_name", &record.plaza_name)?;
        let km_text = row.required("km_post", &record.km_post)?;
        let km_post = row.decimal("km_post", km_text)?;
        if km_post < Decimal::ZERO {
            return Err(row.invalid("km_post", km_text, "a kilometre post cannot be negative"));
        }
        if let Some(&first) = index.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "plaza_id".to_string(),
                id: id.to_string(),
                first_line: lines[first],
            }));
        }
        index.insert(id.to_string(), plazas.len());
        lines.push(row.line);
        plazas.push(Plaza {
            id: id.to_string(),
            name: name.to_string(),
            km_post,
        });
    }
    if plazas.is_empty() {
        return Err(LoadError::whole(
            file,
            LoadReason::Invalid("no plazas".to_string()),
        ));
    }
    Ok((plazas, index))
}

#[derive(Deserialize)]
struct RateRow {
    vehicle_class: Option<String>,
    rate_per_km: Option<String>,
    currency: Option<String>,
    min_toll: Option<String>,
}

fn read_rates(
    file: &str,
    text: &str,
) -> Result<(Currency, HashMap<VehicleClass, TollRate>), LoadError> {
    let table = CsvTable::open(file, text, &["vehicle_class", "rate_per_km", "currency"])?;
    let mut rates = HashMap::new();
    let mut first_line: HashMap<VehicleClass, u64> = HashMap::new();
    let mut currency: Option<(Currency, u64)> = None;
    for item in table.rows::<RateRow>() {
        let (row, record) = item?;
        let class_text = row.required("vehicle_class", &record.vehicle_class)?;
        let class = parse_vehicle_class(class_text).map_err(|_| {
            row.invalid(
                "vehicle_class",
                class_text,
                "expected p1, p2, p3, p4, t1, t2, t3, t4, t5 or t6",
            )
        })?;
        if let Some(&first) = first_line.get(&class) {
            return Err(row.err(LoadReason::Duplicate {
                what: "vehicle_class".to_string(),
                id: class_text.to_string(),
                first_line: first,
            }));
        }
        let row_currency = row.same_currency("currency", &record.currency, &mut currency)?;
        let rate_text = row.required("rate_per_km", &record.rate_per_km)?;
        let rate_per_km = row.decimal("rate_per_km", rate_text)?;
        if rate_per_km < Decimal::ZERO {
            return Err(row.invalid("rate_per_km", rate_text, "a rate cannot be negative"));
        }
        let min_toll = match table::optional(&record.min_toll) {
            None => None,
            Some(text) => {
                let min = row.amount("min_toll", text, row_currency)?;
                if min.amount() < Decimal::ZERO {
                    return Err(row.invalid("min_toll", text, "a toll cannot be negative"));
                }
                Some(min)
            }
        };
        first_line.insert(class, row.line);
        rates.insert(
            class,
            TollRate {
                rate_per_km,
                min_toll,
            },
        );
    }
    let Some((currency, _)) = currency else {
        return Err(LoadError::whole(
            file,
            LoadReason::Invalid("no rates".to_string()),
        ));
    };
    Ok((currency, rates))
}
