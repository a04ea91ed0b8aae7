//! The Frictionless Data Package descriptor (`datapackage.json`, Data Package and Table Schema
//! v1): each file's schema, the licence, where the data comes from, and a `privacy` section
//! stating k, the suppression rules and how many cells each rule withheld — or, with noise,
//! the differential-privacy budget, mechanism and threshold, and only what the noisy release
//! itself shows.

use serde_json::{json, Value};

use super::parquet_out::Kind;
use super::rules::{Day, FareClass, Suppression, BANDS};
use super::{NoiseReport, ENTRIES_FILE, ENTRIES_PARQUET, OD_FILE, OD_PARQUET};
use crate::store::OperatorRow;

/// The header of `hourly_entries.csv` (MTA's names where the meaning is the same).
pub const ENTRIES_COLUMNS: [&str; 4] = [
    "transit_timestamp",
    "station_id",
    "fare_class_category",
    "ridership",
];
/// How the Parquet files store each column (text, or a count as INT64).
pub const ENTRIES_KINDS: [Kind; 4] = [Kind::Text, Kind::Text, Kind::Text, Kind::Count];
pub const OD_KINDS: [Kind; 7] = [
    Kind::Text,
    Kind::Text,
    Kind::Count,
    Kind::Count,
    Kind::Text,
    Kind::Text,
    Kind::Count,
];
/// The header of `od_matrix.csv`.
pub const OD_COLUMNS: [&str; 7] = [
    "business_day",
    "hour_band",
    "band_start_hour",
    "band_end_hour",
    "origin_station_id",
    "destination_station_id",
    "journeys",
];

/// The licence the package is published under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    /// An SPDX-style id, e.g. `CC-BY-4.0`.
    pub name: String,
    pub path: Option<String>,
    pub title: Option<String>,
}

impl Licence {
    pub const DEFAULT: &'static str = "CC-BY-4.0";

    /// A licence by id; the common open-data licences get their URL and title.
    pub fn named(name: &str) -> Licence {
        let known = [
            (
                "CC-BY-4.0",
                "https://creativecommons.org/licenses/by/4.0/",
                "Creative Commons Attribution 4.0",
            ),
            (
                "CC0-1.0",
                "https://creativecommons.org/publicdomain/zero/1.0/",
                "CC0 1.0 Universal",
            ),
            (
                "ODbL-1.0",
                "https://opendatacommons.org/licenses/odbl/1-0/",
                "Open Data Commons Open Database License 1.0",
            ),
            (
                "ODC-By-1.0",
                "https://opendatacommons.org/licenses/by/1-0/",
                "Open Data Commons Attribution License 1.0",
            ),
        ];
        match known
            .iter()
            .find(|(id, _, _)| id.eq_ignore_ascii_case(name))
        {
            Some((id, path, title)) => Licence {
                name: id.to_string(),
                path: Some(path.to_string()),
                title: Some(title.to_string()),
            },
            None => Licence {
                name: name.to_string(),
                path: None,
                title: None,
            },
        }
    }

    fn to_json(&self) -> Value {
        let mut l = json!({ "name": self.name });
        if let Some(p) = &self.path {
            l["path"] = json!(p);
        }
        if let Some(t) = &self.title {
            l["title"] = json!(t);
        }
        l
    }
}

/// What the descriptor states.
pub struct Facts<'a> {
    pub operator: &'a OperatorRow,
    pub day: &'a Day,
    pub k: i64,
    pub licence: &'a Licence,
    pub entries: &'a Suppression,
    pub od: &'a Suppression,
    /// `Some` when the counts are noisy.
    pub noise: Option<&'a NoiseReport>,
    pub created: jiff::Timestamp,
}

fn field(name: &str, ty: &str, description: &str, constraints: Value) -> Value {
    let mut f = json!({ "name": name, "type": ty, "description": description });
    if constraints != json!({}) {
        f["constraints"] = constraints;
    }
    f
}

fn resource(name: &str, path: &str, title: &str, fields: Vec<Value>, key: &[&str]) -> Value {
    json!({
        "name": name,
        "path": path,
        "title": title,
        "profile": "tabular-data-resource",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "dialect": { "delimiter": ",", "lineTerminator": "\r\n", "header": true, "quoteChar": "\"", "doubleQuote": true },
        "schema": { "fields": fields, "primaryKey": key, "missingValues": [] },
    })
}

/// Cells published and withheld by rule: cell counts only. The journeys withheld are not
/// stated: with the published cells they would make a total.
fn suppressed(s: &Suppression) -> Value {
    json!({
        "cells_published": s.cells_published,
        "cells_withheld_small": s.cells_small,
        "cells_withheld_entries_bound": s.cells_bound,
        "cells_withheld_complementary": s.cells_complement,
    })
}

/// With noise, the package states only what the noisy release shows: the cells published.
/// How many non-empty cells fell below the threshold is not stated: a rider's lone trip would
/// change it with certainty.
fn suppressed_noisy(s: &Suppression) -> Value {
    json!({ "cells_published": s.cells_published })
}

/// The `privacy` section of a noisy package.
fn privacy_noisy(k: i64, n: &NoiseReport, f: &Facts<'_>) -> Value {
    let t = &n.table;
    let c = n.dp.journeys_per_rider_max();
    let threshold = n.threshold;
    let table = json!({
        "epsilon": t.epsilon,
        "delta": t.delta,
        "sensitivity_l1": c,
        "noise_scale": t.scale(),
        "tau": t.tau,
    });
    json!({
        "k": k,
        "rules": [
            format!("At most {c} journeys per rider and day are counted (the first by entry time)."),
            "Every count gets independent two-sided geometric noise; counts are not exact.",
            format!("A noisy count below {threshold} (the larger of k = {k} and tau = {}) is not published.", t.tau),
            "The two tables are noised independently: an origin's published O-D journeys may exceed its published entries.",
            "Withheld cells are omitted: an absent row may be zero or below the threshold. No totals are published.",
        ],
        "differential_privacy": {
            "applied": true,
            "unit": "rider: neighbouring days differ by all of one rider's journeys of the business day",
            "max_journeys_per_rider": c,
            "epsilon": n.dp.epsilon().as_f64(),
            "delta": n.dp.delta(),
            "composition": "basic: the two tables' epsilons and deltas add up to the package's",
            "mechanism": "two-sided geometric (discrete Laplace) noise with P[z] proportional to exp(-epsilon_table * |z| / max_journeys_per_rider) on each non-empty cell, sampled exactly with integer arithmetic (Canonne, Kamath and Steinke 2020); a cell is published only if its noisy count is at least the threshold (the stability-based histogram: delta bounds the chance that a cell only one rider made appears at all)",
            "delta_formula": "delta_table = max(e^epsilon_table, C * e^(epsilon_table / C)) * alpha^tau / (1 + alpha), alpha = e^(-epsilon_table / C), C = max_journeys_per_rider",
            "threshold": threshold,
            "tables": {
                "hourly_entries.csv": table.clone(),
                "od_matrix.csv": table,
            },
            "note": "Each run draws new noise: publish a day once. Two versions of the same day average the noise away and spend the budget twice.",
        },
        "suppression": {
            "hourly_entries.csv": suppressed_noisy(f.entries),
            "od_matrix.csv": suppressed_noisy(f.od),
        },
    })
}

/// The descriptor of one operator's day.
pub fn datapackage(f: &Facts<'_>) -> Value {
    let op = &f.operator.operator_id;
    let day = f.day.name();
    let zone = f.day.tz.iana_name().unwrap_or("UTC");
    let k = f.k;
    // The smallest count published, and what each count is.
    let (least, ridership, journeys) = match f.noise {
        None => (
            k,
            format!("Riders who entered (at least {k}; smaller counts are not published)."),
            format!("Journeys entered in the band that exited at the destination, exact (at least {k})."),
        ),
        Some(n) => (
            n.threshold,
            format!("Riders who entered, with differentially private noise (see privacy); published only when the noisy count is at least {}.", n.threshold),
            format!("Journeys entered in the band that exited at the destination, with differentially private noise (see privacy); published only when the noisy count is at least {}.", n.threshold),
        ),
    };
    let classes: Vec<&str> = FareClass::ALL.iter().map(|c| c.as_str()).collect();
    let bands: Vec<&str> = BANDS.iter().map(|b| b.name).collect();
    let at_least_k = json!({ "required": true, "minimum": least });
    let required = json!({ "required": true });
    let entries = resource(
        "hourly-entries",
        ENTRIES_FILE,
        "Hourly entries per station and fare class",
        vec![
            field("transit_timestamp", "datetime",
                &format!("Start of the hour in which the riders entered, local time in {zone} with its UTC offset."), required.clone()),
            field("station_id", "string", "The station's id in the operator's fare data.", required.clone()),
            field("fare_class_category", "string",
                "full_fare: charged the fare the network priced (an incomplete journey's maximum fare included); capped: the rider's daily cap made it cheaper or free.",
                json!({ "required": true, "enum": classes })),
            field("ridership", "integer", &ridership, at_least_k.clone()),
        ],
        &["transit_timestamp", "station_id", "fare_class_category"],
    );
    let od = resource(
        "od-matrix",
        OD_FILE,
        "Origin-destination journeys per hour band",
        vec![
            field("business_day", "date", &format!("The business day (local date of entry in {zone})."), required.clone()),
            field("hour_band", "string",
                "early 00-07, am_peak 07-10, midday 10-16, pm_peak 16-19, evening 19-24 (local time of entry).",
                json!({ "required": true, "enum": bands })),
            field("band_start_hour", "integer", "First local hour of the band.", json!({ "required": true, "minimum": 0, "maximum": 23 })),
            field("band_end_hour", "integer", "Local hour the band ends (exclusive).", json!({ "required": true, "minimum": 1, "maximum": 24 })),
            field("origin_station_id", "string", "Where the journey entered.", required.clone()),
            field("destination_station_id", "string", "Where the journey exited.", required.clone()),
            field("journeys", "integer", &journeys, at_least_k),
        ],
        &["business_day", "hour_band", "origin_station_id", "destination_station_id"],
    );
    let description = match f.noise {
        None => format!(
            "Hourly entries per station and fare class, and the exact origin-destination matrix per hour band, of the metro of operator {} on {day}. Counted from closed journeys (entry and exit taps) by the Turnpike gateway. No rider, credential, code or exact time is published; counts below {k} are withheld, and so are the cells from which a withheld count could be recovered by subtraction (see privacy).",
            f.operator.name),
        Some(n) => format!(
            "Hourly entries per station and fare class, and the origin-destination matrix per hour band, of the metro of operator {} on {day}. Counted from closed journeys (entry and exit taps) by the Turnpike gateway, at most {} per rider, with differentially private noise (epsilon {} for the package, delta {:e}); noisy counts below {} are withheld (see privacy). No rider, credential, code or exact time is published.",
            f.operator.name, n.dp.journeys_per_rider_max(), n.dp.epsilon(), n.dp.delta(), n.threshold),
    };
    let privacy = match f.noise {
        None => json!({
            "k": k,
            "rules": [
                format!("A count below {k} is not published."),
                "In each origin and band, the published O-D journeys never exceed the published entries of that origin in the band's hours; O-D cells are withheld, smallest first, until they do.",
                "An O-D row whose only withheld cell is small gets a second withheld cell (its smallest published one).",
                "Withheld cells are omitted: an absent row may be zero, small, or withheld to protect another. No totals are published.",
            ],
            "differential_privacy": "not applied: counts are exact",
            "suppression": {
                "hourly_entries.csv": suppressed(f.entries),
                "od_matrix.csv": suppressed(f.od),
            },
        }),
        Some(n) => privacy_noisy(k, n, f),
    };
    json!({
        "profile": "tabular-data-package",
        "name": format!("turnpike-open-data-{}-{day}", op.to_ascii_lowercase()),
        "title": format!("{} metro ridership, {day}", f.operator.name),
        "description": description,
        "version": "1.0.0",
        "created": f.created.to_string(),
        "temporal": { "start": day, "end": day, "timeZone": zone },
        "licenses": [f.licence.to_json()],
        "sources": [{ "title": format!("Turnpike gateway journeys of operator {op} (closed metro journeys, business day {day})") }],
        "privacy": privacy,
        "resources": [entries, od],
        // Not resources: Frictionless v1 validators read Parquet only through a plugin.
        "parquet": [
            { "path": ENTRIES_PARQUET, "mediatype": "application/vnd.apache.parquet", "same_as": "hourly-entries" },
            { "path": OD_PARQUET, "mediatype": "application/vnd.apache.parquet", "same_as": "od-matrix" },
        ],
    })
}
