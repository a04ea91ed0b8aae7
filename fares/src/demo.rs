//! The shipped demo data, embedded in the binary so that the one-command demo needs no files on
//! disk, and the generator that wrote it.
//!
//! # Demo metro (`fares/data/demo-metro/`)
//! A Hangzhou-like "Line 1" of 20 stations over 42.9 km of track, priced by
//! [`hangzhou_distance_fare`](crate::hangzhou_distance_fare). Station names follow Hangzhou's; the distances are invented (1.2 to
//! 2.9 km apart) and placed so that journeys from the first station land exactly on the 4, 8,
//! 12, 18, 24, 32 and 40 km band edges. The only hand-written file is `stations.csv`
//! (`stop_id,stop_name,track_km`); every other file is generated from it by
//! [`generate_demo_metro_files`] (run `cargo run -p turnpike-fares --example gen_demo_network`),
//! and a test fails if the shipped files differ from what the generator writes.
//!
//! The generated GTFS Fares v2 feed has one area per station and one fare leg rule per ordered
//! pair of stations (same station included: entry and exit at one station is charged the base
//! fare), leg group `metro`. It also carries a small bus network (`hz-bus`, leg group `bus`) with a
//! flat 2 CNY fare, so that transfers are exercised:
//! - metro → bus or bus → metro within 90 minutes (from leaving the first vehicle to boarding the
//!   next; `duration_limit_type` 2): 1 CNY off (`fare_transfer_type` 1 with a −1 CNY product);
//! - bus → bus within 60 minutes of boarding the first (`duration_limit_type` 1): the second bus is
//!   free (`fare_transfer_type` 0, no product), once (`transfer_count` 1).
//!
//! `fare_matrix.csv` prices the same metro journeys in the matrix format, with `stations.csv` as
//! its stops file; a test checks both loaders agree on every pair.
//!
//! # Demo toll road (`fares/data/demo-toll/`)
//! A Hangzhou – Ningbo style expressway: 8 plazas over 178.5 km, passenger rates from 0.45 CNY/km
//! (p1) and truck rates rising to 2.10 CNY/km (t6), with a per-class minimum toll.

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::{LoadError, LoadReason};
use crate::gtfs::GtfsFeed;
use crate::hangzhou::hangzhou_distance_fare_yuan;
use crate::metro::MetroFares;
use crate::table::CsvTable;
use crate::toll::TollTable;

/// Network id of the demo metro line in the demo GTFS feed.
pub const DEMO_METRO_NETWORK: &str = "hz-metro";
/// Network id of the demo bus network in the demo GTFS feed.
pub const DEMO_BUS_NETWORK: &str = "hz-bus";

/// The demo GTFS feed's files, as `(file name, contents)`.
pub const DEMO_METRO_GTFS: [(&str, &str); 7] = [
    ("stops.txt", include_str!("../data/demo-metro/stops.txt")),
    ("areas.txt", include_str!("../data/demo-metro/areas.txt")),
    (
        "stop_areas.txt",
        include_str!("../data/demo-metro/stop_areas.txt"),
    ),
    (
        "networks.txt",
        include_str!("../data/demo-metro/networks.txt"),
    ),
    (
        "fare_products.txt",
        include_str!("../data/demo-metro/fare_products.txt"),
    ),
    (
        "fare_leg_rules.txt",
        include_str!("../data/demo-metro/fare_leg_rules.txt"),
    ),
    (
        "fare_transfer_rules.txt",
        include_str!("../data/demo-metro/fare_transfer_rules.txt"),
    ),
];

/// The hand-written source of the demo metro: `stop_id,stop_name,track_km`.
pub const DEMO_STATIONS_CSV: &str = include_str!("../data/demo-metro/stations.csv");
/// The demo metro as a fare matrix (stops file: [`DEMO_STATIONS_CSV`]).
pub const DEMO_FARE_MATRIX_CSV: &str = include_str!("../data/demo-metro/fare_matrix.csv");

const DEMO_TOLL_PLAZAS_CSV: &str = include_str!("../data/demo-toll/plazas.csv");
const DEMO_TOLL_RATES_CSV: &str = include_str!("../data/demo-toll/rates.csv");

/// The demo GTFS feed (metro and bus), for transfer pricing.
pub fn demo_feed() -> GtfsFeed {
    GtfsFeed::from_files(&DEMO_METRO_GTFS)
        .expect("the shipped demo feed loads; the demo tests check it on every build")
}

/// The demo metro line's fare table, loaded from the embedded GTFS feed.
pub fn demo_metro() -> MetroFares {
    demo_feed()
        .metro_fares(DEMO_METRO_NETWORK)
        .expect("the shipped demo feed prices the demo metro; the demo tests check it")
}

/// The demo expressway's toll table, with the default rounding (to the fen, half-up).
pub fn demo_toll() -> TollTable {
    TollTable::from_csv(
        ("plazas.csv", DEMO_TOLL_PLAZAS_CSV),
        ("rates.csv", DEMO_TOLL_RATES_CSV),
    )
    .expect("the shipped demo toll table loads; the demo tests check it")
}

/// A station of the demo line and its position along the track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoStation {
    pub id: String,
    pub name: String,
    /// Distance along the track from the line's first station, in metres.
    pub track_m: u64,
}

#[derive(Deserialize)]
struct StationRow {
    stop_id: Option<String>,
    stop_name: Option<String>,
    track_km: Option<String>,
}

/// Parses a stations file (`stop_id,stop_name,track_km`; `track_km` to the metre at most).
pub fn parse_stations(file: &str, text: &str) -> Result<Vec<DemoStation>, LoadError> {
    let table = CsvTable::open(file, text, &["stop_id", "stop_name", "track_km"])?;
    let mut stations: Vec<DemoStation> = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for item in table.rows::<StationRow>() {
        let (row, record) = item?;
        let id = row.required("stop_id", &record.stop_id)?;
        let name = row.required("stop_name", &record.stop_name)?;
        let km_text = row.required("track_km", &record.track_km)?;
        let track_km = row.decimal("track_km", km_text)?;
        let expected = "expected a non-negative number of kilometres with at most 3 decimals";
        let track_m = track_km
            .checked_mul(Decimal::from(1000))
            .filter(|m| m.fract().is_zero())
            .and_then(|m| u64::try_from(m).ok())
            .ok_or_else(|| row.invalid("track_km", km_text, expected))?;
        if let Some(&first) = first_line.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "stop_id".to_string(),
                id: id.to_string(),
                first_line: first,
            }));
        }
        first_line.insert(id.to_string(), row.line);
        stations.push(DemoStation {
            id: id.to_string(),
            name: name.to_string(),
            track_m,
        });
    }
    Ok(stations)
}

/// The demo line's stations, from the embedded `stations.csv`.
pub fn demo_stations() -> Vec<DemoStation> {
    parse_stations("stations.csv", DEMO_STATIONS_CSV)
        .expect("the shipped stations.csv parses; the demo tests check it")
}

/// The bus stops of the demo bus network: (stop_id, stop_name).
const DEMO_BUS_STOPS: [(&str, &str); 3] = [
    ("bus-xixing", "Xixing Bus Station"),
    ("bus-wulin", "Wulin Square Bus Hub"),
    ("bus-jiubao", "Jiubao Passenger Terminal"),
];

/// Writes every generated file of `fares/data/demo-metro/` from a stations file: the GTFS fare
/// files of the metro and bus networks and `fare_matrix.csv`. Returns `(file name, contents)`.
pub fn generate_demo_metro_files(
    stations_csv: &str,
) -> Result<Vec<(&'static str, String)>, LoadError> {
    let stations = parse_stations("stations.csv", stations_csv)?;
    let area = |s: &DemoStation| format!("area-{}", s.id);
    let product = |yuan: u64| format!("metro-{yuan}");
    let fare_yuan = |a: &DemoStation, b: &DemoStation| {
        hangzhou_distance_fare_yuan(a.track_m.abs_diff(b.track_m))
    };

    let mut stops = vec!["stop_id,stop_name".to_string()];
    let mut areas = vec!["area_id,area_name".to_string()];
    let mut stop_areas = vec!["area_id,stop_id".to_string()];
    for s in &stations {
        stops.push(csv_line(&[&s.id, &s.name]));
        areas.push(csv_line(&[&area(s), &s.name]));
        stop_areas.push(csv_line(&[&area(s), &s.id]));
    }
    for (id, name) in DEMO_BUS_STOPS {
        stops.push(csv_line(&[id, name]));
    }

    let networks = vec![
        "network_id,network_name".to_string(),
        csv_line(&[DEMO_METRO_NETWORK, "Demo Metro (Hangzhou-like)"]),
        csv_line(&[DEMO_BUS_NETWORK, "Demo Bus"]),
    ];

    let fares_used: BTreeSet<u64> = stations
        .iter()
        .flat_map(|a| stations.iter().map(move |b| fare_yuan(a, b)))
        .collect();
    let mut products = vec!["fare_product_id,fare_product_name,amount,currency".to_string()];
    for &yuan in &fares_used {
        let name = format!("Metro single journey {yuan} CNY");
        products.push(csv_line(&[
            &product(yuan),
            &name,
            &format!("{yuan}.00"),
            "CNY",
        ]));
    }
    products.push(csv_line(&["bus-flat", "Bus flat fare", "2.00", "CNY"]));
    products.push(csv_line(&[
        "metro-bus-transfer",
        "Metro-bus transfer discount",
        "-1.00",
        "CNY",
    ]));

    let mut leg_rules =
        vec!["leg_group_id,network_id,from_area_id,to_area_id,fare_product_id".to_string()];
    for a in &stations {
        for b in &stations {
            leg_rules.push(csv_line(&[
                "metro",
                DEMO_METRO_NETWORK,
                &area(a),
                &area(b),
                &product(fare_yuan(a, b)),
            ]));
        }
    }
    leg_rules.push(csv_line(&["bus", DEMO_BUS_NETWORK, "", "", "bus-flat"]));

    let transfer_rules = vec![
        "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id".to_string(),
        csv_line(&["metro", "bus", "", "5400", "2", "1", "metro-bus-transfer"]),
        csv_line(&["bus", "metro", "", "5400", "2", "1", "metro-bus-transfer"]),
        csv_line(&["bus", "bus", "1", "3600", "1", "0", ""]),
    ];

    let mut matrix = vec!["from_stop_id,to_stop_id,amount,currency,symmetric".to_string()];
    for (i, a) in stations.iter().enumerate() {
        for b in &stations[i..] {
            let amount = format!("{}.00", fare_yuan(a, b));
            matrix.push(csv_line(&[&a.id, &b.id, &amount, "CNY", "1"]));
        }
    }

    let file = |lines: Vec<String>| lines.join("\n") + "\n";
    Ok(vec![
        ("stops.txt", file(stops)),
        ("areas.txt", file(areas)),
        ("stop_areas.txt", file(stop_areas)),
        ("networks.txt", file(networks)),
        ("fare_products.txt", file(products)),
        ("fare_leg_rules.txt", file(leg_rules)),
        ("fare_transfer_rules.txt", file(transfer_rules)),
        ("fare_matrix.csv", file(matrix)),
    ])
}

/// One CSV line; fields with a comma or quote are quoted, as RFC 4180 (and GTFS) say.
fn csv_line(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                (*f).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
