//! Hostile input: whatever text an upload carries and whatever legs a journey has, loaders and
//! pricing answer with a value or an error, never a panic.

use proptest::prelude::*;
use turnpike_fares::{GtfsFeed, Leg, MetroFares, TollTable, VehicleClass};

/// Field values that exercise the parsers' edges: ids that exist, empties, signs, huge numbers,
/// quotes, and arbitrary printable text.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("zone1".to_string()),
        Just("p".to_string()),
        Just("g".to_string()),
        Just("n".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("2".to_string()),
        Just("3".to_string()),
        Just("2.5".to_string()),
        Just("-7.25".to_string()),
        Just("CNY".to_string()),
        Just("JPY".to_string()),
        Just("\"".to_string()),
        Just("79228162514264337593543950335".to_string()),
        Just("99999999999999999999999999999999999".to_string()),
        Just("9223372036854775807".to_string()),
        "[ -~]{0,6}",
    ]
}

/// A CSV file with the given header (or, sometimes, a random one) and random rows.
fn csv_file(header: &'static str) -> impl Strategy<Value = String> {
    let header = prop_oneof![4 => Just(header.to_string()), 1 => "[ -~\n]{0,30}"];
    let rows = prop::collection::vec(prop::collection::vec(token(), 0..9), 0..6);
    (header, rows).prop_map(|(header, rows)| {
        let mut text = header;
        for row in rows {
            text.push('\n');
            text.push_str(&row.join(","));
        }
        text
    })
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), -10_000i64..10_000]
}

fn leg() -> impl Strategy<Value = Leg> {
    (token(), token(), time(), time(), token()).prop_map(|(from, to, start_s, end_s, network)| {
        Leg {
            from_stop: from,
            to_stop: to,
            start_s,
            end_s,
            network_id: network,
        }
    })
}

proptest! {
    #[test]
    fn gtfs_loader_and_pricing_never_panic(
        stops in csv_file("stop_id,stop_name,location_type,parent_station"),
        areas in csv_file("area_id"),
        stop_areas in csv_file("area_id,stop_id"),
        products in csv_file("fare_product_id,amount,currency"),
        leg_rules in csv_file("leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority"),
        transfer_rules in csv_file("from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id"),
        legs in prop::collection::vec(leg(), 0..5),
    ) {
        // Proves the GTFS reader and everything priced from what it accepts are total.
        let files = [
            ("stops.txt", stops.as_str()),
            ("areas.txt", areas.as_str()),
            ("stop_areas.txt", stop_areas.as_str()),
            ("fare_products.txt", products.as_str()),
            ("fare_leg_rules.txt", leg_rules.as_str()),
            ("fare_transfer_rules.txt", transfer_rules.as_str()),
        ];
        if let Ok(feed) = GtfsFeed::from_files(&files) {
            let _ = feed.price_legs(&legs);
            for leg in &legs {
                let _ = feed.price_leg(leg);
                if let Ok(metro) = feed.metro_fares(&leg.network_id) {
                    let _ = metro.price(&leg.from_stop, &leg.to_stop);
                }
            }
        }
    }

    #[test]
    fn matrix_loader_never_panics(
        stops in csv_file("stop_id,stop_name"),
        matrix in csv_file("from_stop_id,to_stop_id,amount,currency,symmetric"),
        from in token(),
        to in token(),
    ) {
        // Proves the matrix loader and its price lookups are total.
        if let Ok(fares) = MetroFares::from_matrix_csv(("stops.csv", &stops), ("fare_matrix.csv", &matrix)) {
            let _ = fares.price(&from, &to);
        }
    }

    #[test]
    fn toll_loader_and_tolls_never_panic(
        plazas in csv_file("plaza_id,plaza_name,km_post"),
        rates in csv_file("vehicle_class,rate_per_km,currency,min_toll"),
    ) {
        // Proves the toll loader and every toll it can then compute are total, huge kilometre
        // posts and rates included.
        if let Ok(table) = TollTable::from_csv(("plazas.csv", &plazas), ("rates.csv", &rates)) {
            for entry in table.plazas() {
                for exit in table.plazas() {
                    for class in VehicleClass::ALL {
                        let _ = table.toll(&entry.id, &exit.id, class);
                    }
                }
            }
        }
    }

    #[test]
    fn demo_journeys_never_panic(legs in prop::collection::vec(leg(), 0..6)) {
        // Proves transfer pricing on the demo feed is total for any legs, extreme times included.
        let _ = turnpike_fares::demo_feed().price_legs(&legs);
    }
}

/// One of `options`, or rarely an arbitrary token.
fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        80 => prop::sample::select(options).prop_map(str::to_string),
        1 => token(),
    ]
}

/// Non-negative amounts and quantities around the edges, up to the largest 28-digit decimals.
const NUMBERS: &[&str] = &[
    "0",
    "2",
    "3.5",
    "0.01",
    "7922816251426433759354395033",
    "792281625142643375935439503.3",
];

/// A mostly valid feed: three stops, two areas, three products (the transfer product `r` may be
/// negative), leg groups g and h, and random rules over them, so that most generated feeds load
/// and their pricing paths run.
fn structured_feed() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let stop_areas =
        prop::collection::vec((pick(&["zone1", "zone2"]), pick(&["a", "b", "c"])), 0..5);
    // Up to the largest amount Money holds (i64::MAX fen), so that sums overflow.
    let amount = || pick(&["0", "2", "3.5", "0.01", "92233720368547758.07"]);
    let amounts = (
        amount(),
        amount(),
        pick(&["-1", "-5.00", "0.5", "-92233720368547758.07"]),
    );
    let leg_rule = (
        pick(&["", "g", "h"]),
        pick(&["", "n", "m"]),
        pick(&["", "zone1", "zone2"]),
        pick(&["", "zone1", "zone2"]),
        pick(&["p", "q"]),
        pick(&["", "0", "1", "7"]),
    );
    let leg_rules = (any::<bool>(), prop::collection::vec(leg_rule, 0..7));
    let transfer_rule = (
        pick(&["", "g", "h"]),
        pick(&["", "g", "h"]),
        pick(&["-1", "1", "2"]),
        prop::sample::select(
            &[
                ("", ""),
                ("60", "0"),
                ("3600", "1"),
                ("600", "2"),
                ("60", "3"),
            ][..],
        ),
        pick(&["0", "1", "2"]),
        pick(&["", "p", "q", "r"]),
    );
    let transfer_rules = prop::collection::vec(transfer_rule, 0..5);
    (stop_areas, amounts, leg_rules, transfer_rules).prop_map(
        |(stop_areas, (p, q, r), (with_priority, leg_rules), transfer_rules)| {
            let mut seen = std::collections::HashSet::new();
            let stop_areas: Vec<String> = stop_areas
                .into_iter()
                .filter(|pair| seen.insert(pair.clone()))
                .map(|(area, stop)| format!("{area},{stop}"))
                .collect();
            let products = vec![
                format!("p,{p},CNY"),
                format!("q,{q},CNY"),
                format!("r,{r},CNY"),
            ];
            let fixed = [
                ("g", "n", "", "", "p", "0"),
                ("h", "m", "", "", "q", "0"),
            ]
            .map(|(g, n, f, t, p, priority)| {
                (g.to_string(), n.to_string(), f.to_string(), t.to_string(), p.to_string(), priority.to_string())
            });
            let mut seen = std::collections::HashSet::new();
            let leg_rules: Vec<String> = fixed
                .into_iter()
                .chain(leg_rules)
                .filter(|(_, n, f, t, p, _)| seen.insert((n.clone(), f.clone(), t.clone(), p.clone())))
                .map(|(g, n, f, t, p, priority)| {
                    if with_priority {
                        format!("{g},{n},{f},{t},{p},{priority}")
                    } else {
                        format!("{g},{n},{f},{t},{p}")
                    }
                })
                .collect();
            let leg_header = if with_priority {
                "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority"
            } else {
                "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id"
            };
            let mut seen = std::collections::HashSet::new();
            let transfer_rules: Vec<String> = transfer_rules
                .into_iter()
                .map(|(from, to, count, (limit, limit_type), kind, product)| {
                    // transfer_count is required between equal groups and forbidden otherwise.
                    let count = if !from.is_empty() && from == to { count } else { String::new() };
                    [from, to, count, limit.to_string(), limit_type.to_string(), kind, product]
                })
                .filter(|r| seen.insert([r[0].clone(), r[1].clone(), r[6].clone(), r[2].clone(), r[3].clone()]))
                .map(|r| r.join(","))
                .collect();
            let file = |header: &str, rows: Vec<String>| {
                std::iter::once(header.to_string()).chain(rows).collect::<Vec<_>>().join("\n")
            };
            vec![
                ("stops.txt", "stop_id,stop_name,location_type,parent_station\na,A,,\nb,B,1,\nc,C,0,b\n".to_string()),
                ("areas.txt", "area_id\nzone1\nzone2\n".to_string()),
                ("stop_areas.txt", file("area_id,stop_id", stop_areas)),
                ("fare_products.txt", file("fare_product_id,amount,currency", products)),
                ("fare_leg_rules.txt", file(leg_header, leg_rules)),
                ("fare_transfer_rules.txt", file("from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id", transfer_rules)),
            ]
        },
    )
}

fn structured_leg() -> impl Strategy<Value = Leg> {
    (
        pick(&["a", "b", "c"]),
        pick(&["a", "b", "c"]),
        time(),
        0i64..5_000,
        pick(&["n", "m", "x"]),
    )
        .prop_map(|(from, to, start_s, length_s, network)| Leg {
            from_stop: from,
            to_stop: to,
            start_s,
            end_s: start_s.saturating_add(length_s),
            network_id: network,
        })
}

proptest! {
    #[test]
    fn structured_feeds_price_without_panic(
        files in structured_feed(),
        mut legs in prop::collection::vec(structured_leg(), 1..6),
    ) {
        // Proves that feeds that load (most of these do) price any journey without panicking,
        // with huge amounts, negative transfer products and extreme times, and that the
        // per-network table built from a feed prices every pair as direct leg matching does.
        legs.sort_by_key(|l| l.start_s);
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        if let Ok(feed) = GtfsFeed::from_files(&borrowed) {
            let _ = feed.price_legs(&legs);
            for network in ["n", "m", "x"] {
                let metro = feed.metro_fares(network);
                let _ = metro.as_ref().map(|m| (m.min_fare(), m.max_fare()));
                // The per-network table agrees with matching each leg: same fare, or no fare
                // (the table may not know a stop that has no fare at all).
                for from in ["a", "b", "c"] {
                    for to in ["a", "b", "c"] {
                        let direct = feed.price(network, from, to).ok();
                        let table = metro.as_ref().ok().and_then(|m| m.price(from, to).ok());
                        prop_assert_eq!(direct, table, "{} {} -> {}", network, from, to);
                    }
                }
            }
        }
    }

    #[test]
    fn structured_toll_tables_never_panic(
        posts in prop::collection::vec(pick(NUMBERS), 3),
        rates in prop::collection::vec((pick(NUMBERS), pick(&["", "0", "5.00", "0.01"])), 10),
    ) {
        // Proves tolls are total for loadable tables with huge posts and rates: overflow is an
        // error, not a panic.
        let plazas = format!(
            "plaza_id,plaza_name,km_post\na,A,{}\nb,B,{}\nc,C,{}\n",
            posts[0], posts[1], posts[2]
        );
        let mut rates_csv = "vehicle_class,rate_per_km,currency,min_toll\n".to_string();
        for (class, (rate, min)) in VehicleClass::ALL.iter().zip(&rates) {
            rates_csv.push_str(&format!("{},{rate},CNY,{min}\n", class.as_str()));
        }
        if let Ok(table) = TollTable::from_csv(("plazas.csv", &plazas), ("rates.csv", &rates_csv)) {
            for entry in ["a", "b", "c"] {
                for exit in ["a", "b", "c"] {
                    for class in VehicleClass::ALL {
                        let _ = table.toll(entry, exit, class);
                    }
                }
            }
        }
    }
}
