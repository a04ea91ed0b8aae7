//! The shipped demo data: it is what the generator writes, it prices every journey by the
//! Hangzhou distance rule in both formats, and its transfer rules behave as documented.

mod files;

use turnpike_fares::demo::{
    self, DEMO_BUS_NETWORK, DEMO_FARE_MATRIX_CSV, DEMO_METRO_NETWORK, DEMO_STATIONS_CSV,
};
use turnpike_fares::gtfs::GTFS_FARE_FILES;
use turnpike_fares::{demo_feed, demo_metro, hangzhou_distance_fare, GtfsFeed, Leg, MetroFares};

#[test]
fn shipped_files_are_what_the_generator_writes() {
    // Proves the shipped GTFS and matrix files cannot drift from stations.csv and the distance
    // rule: regenerate with `cargo run -p turnpike-fares --example gen_demo_network`.
    let files = demo::generate_demo_metro_files(DEMO_STATIONS_CSV).unwrap();
    for (name, generated) in files {
        let shipped = files::read(&files::data_dir("demo-metro"), name).unwrap();
        assert!(
            shipped == generated,
            "{name} differs from the generator's output; run the gen_demo_network example"
        );
    }
}

#[test]
fn line_has_plausible_shape() {
    // Proves the demo line is what the docs promise: 20 stations, 1–3 km apart, ~43 km long.
    let stations = demo::demo_stations();
    assert_eq!(stations.len(), 20);
    for pair in stations.windows(2) {
        let gap_m = pair[1].track_m - pair[0].track_m;
        assert!(
            (1_000..=3_000).contains(&gap_m),
            "{} → {}: {gap_m} m",
            pair[0].id,
            pair[1].id
        );
    }
    assert_eq!(stations.last().unwrap().track_m, 42_900);
}

#[test]
fn gtfs_and_matrix_price_every_pair_by_the_distance_rule() {
    // Proves that every ordered pair of stations (same station included) costs exactly
    // hangzhou_distance_fare(track distance), in the embedded GTFS feed, in the feed read from
    // disk, and in the matrix, and that every fare band from 2 to 9 CNY occurs.
    let stations = demo::demo_stations();
    let embedded = demo_metro();
    let on_disk = files::read_present(&files::data_dir("demo-metro"), &GTFS_FARE_FILES);
    let on_disk: Vec<(&str, &str)> = on_disk.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let from_disk = GtfsFeed::from_files(&on_disk)
        .unwrap()
        .metro_fares(DEMO_METRO_NETWORK)
        .unwrap();
    let matrix = MetroFares::from_matrix_csv(
        ("stations.csv", DEMO_STATIONS_CSV),
        ("fare_matrix.csv", DEMO_FARE_MATRIX_CSV),
    )
    .unwrap();
    let mut bands = std::collections::BTreeSet::new();
    for a in &stations {
        for b in &stations {
            let expected = hangzhou_distance_fare(a.track_m.abs_diff(b.track_m));
            for (source, table) in [
                ("embedded", &embedded),
                ("disk", &from_disk),
                ("matrix", &matrix),
            ] {
                assert_eq!(
                    table.price(&a.id, &b.id),
                    Ok(expected),
                    "{source}: {} → {}",
                    a.id,
                    b.id
                );
            }
            bands.insert(expected.to_minor() / 100);
        }
    }
    assert_eq!(
        bands.into_iter().collect::<Vec<_>>(),
        (2..=9).collect::<Vec<_>>()
    );
    for table in [&embedded, &from_disk, &matrix] {
        assert_eq!(table.min_fare().to_minor(), 200);
        assert_eq!(table.max_fare().to_minor(), 900);
        assert_eq!(table.stops().len(), 20);
        assert_eq!(table.currency().code(), "CNY");
    }
    assert_eq!(embedded.stops(), matrix.stops());
}

#[test]
fn band_edges_on_the_demo_line() {
    // Proves the demo's exact band-edge journeys from Xianghu, where a partial band would show.
    let metro = demo_metro();
    let table = [
        ("xixing", 200),            // 4.000 km
        ("binhe-road", 300),        // 6.480 km
        ("jiangling-road", 300),    // 8.000 km
        ("wujiang-road", 400),      // 12.000 km
        ("longxiangqiao", 500),     // 18.000 km
        ("qiutao-north-road", 600), // 24.000 km
        ("pengbu", 700),            // 26.880 km
        ("wenze-road", 700),        // 32.000 km
        ("gaosha-road", 800),       // 40.000 km
        ("linping", 900),           // 42.900 km
    ];
    for (to, fen) in table {
        assert_eq!(
            metro.price("xianghu", to).unwrap().to_minor(),
            fen,
            "xianghu → {to}"
        );
        assert_eq!(
            metro.price(to, "xianghu").unwrap().to_minor(),
            fen,
            "{to} → xianghu"
        );
    }
    assert_eq!(metro.stop("wulin-square").unwrap().name, "Wulin Square");
}

fn leg(network: &str, from: &str, to: &str, start_s: i64, end_s: i64) -> Leg {
    Leg {
        from_stop: from.to_string(),
        to_stop: to.to_string(),
        start_s,
        end_s,
        network_id: network.to_string(),
    }
}

fn check(legs: &[Leg], expected_fen: i64) {
    let got = demo_feed().price_legs(legs).map(|m| m.to_minor());
    assert_eq!(got, Ok(expected_fen), "{legs:#?}");
}

#[test]
fn demo_transfers() {
    // Proves the demo's transfer rules: metro ↔ bus within 90 minutes of leaving the first
    // vehicle takes 1 CNY off; a second bus within an hour of boarding the first is free, once.
    let m = DEMO_METRO_NETWORK;
    let b = DEMO_BUS_NETWORK;
    let min = 60;
    // Xianghu → Wulin Square is 20.62 km: 6 CNY.
    let metro_ride = leg(m, "xianghu", "wulin-square", 0, 40 * min);
    let table: Vec<(Vec<Leg>, i64)> = vec![
        // metro alone, bus alone
        (vec![metro_ride.clone()], 600),
        (vec![leg(b, "bus-wulin", "bus-jiubao", 0, 30 * min)], 200),
        // metro then bus 10 minutes later: 6 − 1 + 2
        (
            vec![
                metro_ride.clone(),
                leg(b, "bus-wulin", "bus-jiubao", 50 * min, 80 * min),
            ],
            700,
        ),
        // exactly 90 minutes after leaving the metro: still a transfer
        (
            vec![
                metro_ride.clone(),
                leg(b, "bus-wulin", "bus-jiubao", 130 * min, 150 * min),
            ],
            700,
        ),
        // one second later: two separate fares
        (
            vec![
                metro_ride.clone(),
                leg(b, "bus-wulin", "bus-jiubao", 130 * min + 1, 150 * min),
            ],
            800,
        ),
        // bus then metro: 2 − 1 + 6
        (
            vec![
                leg(b, "bus-jiubao", "bus-wulin", 0, 30 * min),
                leg(m, "wulin-square", "xianghu", 35 * min, 75 * min),
            ],
            700,
        ),
        // bus, bus within the hour (free), then a third bus (the count of 1 is used up)
        (
            vec![
                leg(b, "bus-xixing", "bus-wulin", 0, 20 * min),
                leg(b, "bus-wulin", "bus-jiubao", 25 * min, 45 * min),
            ],
            200,
        ),
        (
            vec![
                leg(b, "bus-xixing", "bus-wulin", 0, 20 * min),
                leg(b, "bus-wulin", "bus-jiubao", 25 * min, 45 * min),
                leg(b, "bus-jiubao", "bus-xixing", 50 * min, 70 * min),
            ],
            400,
        ),
        // metro, metro: no metro → metro rule, two fares (6 + 6)
        (
            vec![
                metro_ride.clone(),
                leg(m, "wulin-square", "xianghu", 45 * min, 85 * min),
            ],
            1200,
        ),
    ];
    for (legs, expected_fen) in table {
        check(&legs, expected_fen);
    }
}

#[test]
fn bus_stops_are_not_metro_stations() {
    // Proves the metro table built from the mixed feed has only metro stations, and a metro
    // journey cannot start at a bus stop.
    let metro = demo_metro();
    assert!(metro.stop("bus-wulin").is_none());
    assert!(demo_feed()
        .price(DEMO_METRO_NETWORK, "bus-wulin", "xianghu")
        .is_err());
}
