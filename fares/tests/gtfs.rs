//! GTFS Fares v2: leg-rule matching, transfer pricing and loader errors, on small in-memory feeds.

use turnpike_fares::{FareError, GtfsFeed, Leg, LoadError};

/// Stops a, b, c; d in two areas (zone1 and center); station st in zone2 with platform st-p1,
/// which has no area of its own.
const STOPS: &str = "\
stop_id,stop_name,location_type,parent_station
a,A,,
b,B,,
c,C,,
d,D,,
st,Station,1,
st-p1,Platform 1,0,st
";
const AREAS: &str = "area_id,area_name\nzone1,Zone 1\nzone2,Zone 2\nzone3,Zone 3\ncenter,Center\n";
const STOP_AREAS: &str =
    "area_id,stop_id\nzone1,a\nzone2,b\nzone3,c\nzone1,d\ncenter,d\nzone2,st\n";
const PRODUCTS: &str = "\
fare_product_id,fare_product_name,amount,currency
p2,Two,2.00,CNY
p3,Three,3.00,CNY
p4,Four,4.00,CNY
p5,Five,5.00,CNY
p9,Nine,9.00,CNY
";

/// A feed of the shared stops, areas and products with the given leg rules (and other files).
fn feed_with(extra: &[(&str, &str)]) -> Result<GtfsFeed, LoadError> {
    let mut files = vec![
        ("stops.txt", STOPS),
        ("areas.txt", AREAS),
        ("stop_areas.txt", STOP_AREAS),
        ("fare_products.txt", PRODUCTS),
    ];
    for &(name, text) in extra {
        files.retain(|(n, _)| *n != name);
        files.push((name, text));
    }
    GtfsFeed::from_files(&files)
}

fn feed(leg_rules: &str) -> GtfsFeed {
    feed_with(&[("fare_leg_rules.txt", leg_rules)]).unwrap()
}

/// `expected` is an amount such as "5.00", or "none" when no rule may match.
fn check(feed: &GtfsFeed, network: &str, from: &str, to: &str, expected: &str) {
    let got = feed.price(network, from, to);
    match expected {
        "none" => assert_eq!(
            got,
            Err(FareError::NoFareRule {
                from_stop: from.to_string(),
                to_stop: to.to_string()
            }),
            "{network} {from} -> {to}"
        ),
        amount => assert_eq!(
            got.map(|m| m.amount().to_string()),
            Ok(amount.to_string()),
            "{network} {from} -> {to}"
        ),
    }
}

#[test]
fn empty_semantics_exact_area_beats_empty() {
    // Proves the spec's matching without rule_priority: a listed area only matches rules naming
    // it, an empty field means "any area not listed in that column", per field independently.
    let feed = feed(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id
,n,zone1,zone2,p5
,n,,zone2,p3
,n,,,p2
",
    );
    let table = [
        ("n", "a", "b", "5.00"),     // both areas listed: the exact rule
        ("n", "c", "b", "3.00"),     // zone3 is not listed as a from area: empty from matches
        ("n", "c", "a", "2.00"),     // neither listed (zone1 is listed only as a from area)
        ("n", "c", "c", "2.00"),     // nothing listed
        ("n", "a", "c", "none"), // zone1 is listed as a from area, and no zone1 rule goes to "any"
        ("n", "a", "st-p1", "5.00"), // the platform inherits its station's zone2
        ("other", "a", "b", "none"), // network n is listed; no rule has an empty network
    ];
    for (network, from, to, expected) in table {
        check(&feed, network, from, to, expected);
    }
}

#[test]
fn empty_network_matches_unlisted_networks() {
    // Proves that an empty network_id matches every network not named elsewhere in the column,
    // and only those.
    let feed = feed(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id
,n,,,p5
,,,,p2
",
    );
    check(&feed, "n", "a", "b", "5.00");
    check(&feed, "bus", "a", "b", "2.00");
}

#[test]
fn stop_in_two_areas_takes_the_cheapest_matching_rule() {
    // Proves that a stop in several listed areas matches the rules of each, and the rider is
    // charged the cheapest of them.
    let feed = feed(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id
,n,zone1,zone2,p5
,n,center,zone2,p4
",
    );
    check(&feed, "n", "d", "b", "4.00");
    check(&feed, "n", "a", "b", "5.00");
}

#[test]
fn rule_priority_semantics() {
    // Proves the rule_priority mode: empty fields match anything, the highest priority wins, and
    // ties between equal priorities go to the cheapest product.
    let feed = feed(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority
,n,zone1,zone2,p5,1
,n,,zone2,p3,
,n,,,p4,0
,,,,p9,0
",
    );
    let table = [
        ("n", "a", "b", "5.00"),   // priority 1 beats the wildcards
        ("n", "c", "b", "3.00"),   // two priority-0 matches: the cheaper
        ("n", "a", "c", "4.00"),   // unlike empty semantics, the wildcard applies to zone1 too
        ("bus", "a", "c", "9.00"), // empty network matches any network
    ];
    for (network, from, to, expected) in table {
        check(&feed, network, from, to, expected);
    }
}

#[test]
fn unknown_stop_is_its_own_error() {
    // Proves an unknown stop is reported as such, not as a missing rule.
    let feed = feed("fare_product_id\np2\n");
    assert_eq!(
        feed.price("n", "a", "zz"),
        Err(FareError::UnknownStop {
            stop_id: "zz".to_string()
        })
    );
}

/// Networks m, b and x each priced flat by a rule with empty areas: 3.00, 2.00 and 4.00 CNY,
/// leg groups m, b and x; plus the given transfer rules.
fn transfer_feed(transfer_rules: &str) -> GtfsFeed {
    let products = "\
fare_product_id,amount,currency
m,3.00,CNY
b,2.00,CNY
x,4.00,CNY
t-half,0.50,CNY
t-quarter,0.25,CNY
t-minus1,-1.00,CNY
t-minus5,-5.00,CNY
t-450,4.50,CNY
";
    let rules = "\
leg_group_id,network_id,fare_product_id
m,m,m
b,b,b
x,x,x
";
    feed_with(&[
        ("fare_products.txt", products),
        ("fare_leg_rules.txt", rules),
        ("fare_transfer_rules.txt", transfer_rules),
    ])
    .unwrap()
}

fn leg(network: &str, start_s: i64, end_s: i64) -> Leg {
    Leg {
        from_stop: "a".to_string(),
        to_stop: "b".to_string(),
        start_s,
        end_s,
        network_id: network.to_string(),
    }
}

/// Legs given as "network@start-end", e.g. "m@0-600".
fn legs(spec: &str) -> Vec<Leg> {
    spec.split_whitespace()
        .map(|l| {
            let (network, times) = l.split_once('@').unwrap();
            let (start, end) = times.split_once('-').unwrap();
            leg(network, start.parse().unwrap(), end.parse().unwrap())
        })
        .collect()
}

const TRANSFER_HEADER: &str = "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id\n";

fn check_journey(transfer_rules: &str, journey: &str, expected: &str) {
    let feed = transfer_feed(&format!("{TRANSFER_HEADER}{transfer_rules}"));
    let got = feed
        .price_legs(&legs(journey))
        .map(|m| m.amount().to_string());
    assert_eq!(
        got,
        Ok(expected.to_string()),
        "rules:\n{transfer_rules}journey: {journey}"
    );
}

#[test]
fn transfer_types_follow_the_spec_table() {
    // Proves the cost processing of fare_transfer_type 0, 1 and 2 for two and three legs, as in
    // the spec's table (S = running cost): 0 → A+AB then S+BC; 1 → A+AB+B then S+BC+C;
    // 2 → AB then S+BC.
    let table = [
        // no rule: legs are separate
        ("", "m@0-600 b@700-900", "5.00"),
        // two legs
        ("m,b,,,,0,t-half\n", "m@0-600 b@700-900", "3.50"),
        ("m,b,,,,1,t-minus1\n", "m@0-600 b@700-900", "4.00"),
        ("m,b,,,,2,t-450\n", "m@0-600 b@700-900", "4.50"),
        // an empty product costs nothing: type 0 makes the second leg free
        ("m,b,,,,0,\n", "m@0-600 b@700-900", "3.00"),
        // three legs, second transfer of each type after a type-2 first transfer
        (
            "m,b,,,,2,t-450\nb,x,,,,0,t-quarter\n",
            "m@0-600 b@700-900 x@950-1200",
            "4.75",
        ),
        (
            "m,b,,,,2,t-450\nb,x,,,,1,t-quarter\n",
            "m@0-600 b@700-900 x@950-1200",
            "8.75",
        ),
        (
            "m,b,,,,2,t-450\nb,x,,,,2,t-quarter\n",
            "m@0-600 b@700-900 x@950-1200",
            "4.75",
        ),
        // a rule for the second transfer only: the first pair is separate
        (
            "b,x,,,,1,t-minus1\n",
            "m@0-600 b@700-900 x@950-1200",
            "8.00",
        ),
        // a discount larger than the fares: never below zero
        ("m,b,,,,1,t-minus5\n", "m@0-600 b@700-900", "0.00"),
    ];
    for (rules, journey, expected) in table {
        check_journey(rules, journey, expected);
    }
}

#[test]
fn duration_limit_types() {
    // Proves each duration_limit_type measures between the right validations, and that a
    // transfer exactly at the limit is still within it. Leg 1: 0–300, leg 2: 900–1500, limit 600.
    let journey = "m@0-300 b@900-1500";
    let table = [
        ("0", "5.00"), // departure 0 → arrival 1500: over
        ("1", "5.00"), // departure 0 → departure 900: over
        ("2", "4.00"), // arrival 300 → departure 900: exactly 600, within
        ("3", "5.00"), // arrival 300 → arrival 1500: over
    ];
    for (limit_type, expected) in table {
        check_journey(
            &format!("m,b,,600,{limit_type},1,t-minus1\n"),
            journey,
            expected,
        );
    }
}

#[test]
fn transfer_count_limits_consecutive_transfers() {
    // Proves transfer_count: a rule spans at most that many consecutive transfers between the
    // same groups, -1 is unlimited, and the smallest sufficient count is chosen.
    let table = [
        ("b,b,1,,,0,\n", "b@0-100 b@200-300 b@400-500", "4.00"),
        ("b,b,2,,,0,\n", "b@0-100 b@200-300 b@400-500", "2.00"),
        (
            "b,b,-1,,,0,\n",
            "b@0-100 b@200-300 b@400-500 b@600-700",
            "2.00",
        ),
        // two empty groups match any unlisted pair, here b → b, with their own count
        (",,1,,,0,\n", "b@0-100 b@200-300 b@400-500", "4.00"),
        // count 1 (free) for the first transfer, the unlimited rule (0.50) after it
        (
            "b,b,1,,,0,\nb,b,-1,,,0,t-half\n",
            "b@0-100 b@200-300 b@400-500",
            "2.50",
        ),
    ];
    for (rules, journey, expected) in table {
        check_journey(rules, journey, expected);
    }
}

#[test]
fn duration_of_a_run_counts_from_its_first_leg() {
    // Proves that consecutive transfers under the same groups measure the duration limit from
    // the first leg of the run, not from the previous leg.
    let rules = "b,b,-1,3600,1,0,\n";
    check_journey(rules, "b@0-600 b@1800-2400 b@3000-3300", "2.00");
    check_journey(rules, "b@0-600 b@1800-2400 b@4000-4300", "4.00");
}

#[test]
fn empty_leg_group_matches_unlisted_groups() {
    // Proves the empty-group semantics of transfer rules: an empty from_leg_group_id matches
    // groups not listed in that column, and an exact group takes precedence.
    let rules = "m,b,,,,1,t-minus1\n,b,,,,0,\n";
    check_journey(rules, "m@0-600 b@700-900", "4.00"); // exact m → b
    check_journey(rules, "x@0-600 b@700-900", "4.00"); // x is unlisted: empty → b, free bus
}

#[test]
fn journey_errors() {
    // Proves the precise errors of price_legs: no legs, a leg ending before it starts, legs out
    // of order, and an unknown stop.
    let feed = transfer_feed(TRANSFER_HEADER);
    assert_eq!(feed.price_legs(&[]), Err(FareError::EmptyJourney));
    assert!(matches!(
        feed.price_legs(&legs("m@100-50")),
        Err(FareError::InvalidLeg { index: 0, .. })
    ));
    assert!(matches!(
        feed.price_legs(&legs("m@100-200 b@50-300")),
        Err(FareError::InvalidLeg { index: 1, .. })
    ));
    let mut bad = legs("m@0-100");
    bad[0].to_stop = "nowhere".to_string();
    assert_eq!(
        feed.price_legs(&bad),
        Err(FareError::UnknownStop {
            stop_id: "nowhere".to_string()
        })
    );
}

/// Loads the base feed with `file` replaced by `text` and checks the error's full message, which
/// carries the file, the line and the reason.
fn check_load_error(overrides: &[(&str, &str)], expected: &str) {
    let mut files = vec![("fare_leg_rules.txt", "fare_product_id\np2\n")];
    files.extend_from_slice(overrides);
    match feed_with(&files) {
        Ok(_) => panic!("expected the error {expected:?}, but the feed loaded"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn load_errors_name_file_line_and_reason() {
    // Proves that every kind of bad feed is refused with its file, line and a precise reason.
    let table: &[(&[(&str, &str)], &str)] = &[
        (
            &[("stop_areas.txt", "area_id,stop_id\nzone1,a\nzone1,b\nzone9,c\n")],
            r#"stop_areas.txt line 4: unknown area_id "zone9" (not in areas.txt)"#,
        ),
        (
            &[("stop_areas.txt", "area_id,stop_id\nzone1,a\nzone1,zz\n")],
            r#"stop_areas.txt line 3: unknown stop_id "zz" (not in stops.txt)"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,2.001,CNY\n")],
            r#"fare_products.txt line 2: amount "2.001" has more decimal places than CNY allows"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,92233720368547758.08,CNY\n")],
            r#"fare_products.txt line 2: amount "92233720368547758.08" is too large for a CNY amount"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,1e3,CNY\n")],
            r#"fare_products.txt line 2: `amount` is "1e3": expected a decimal number such as 2.50"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,2,XYZ\n")],
            r#"fare_products.txt line 2: `currency` is "XYZ": expected a supported ISO 4217 currency code"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,2,CNY\np3,3,HKD\n")],
            "fare_products.txt line 3: currency HKD differs from CNY used on line 2; one table, one currency",
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,2,CNY\np2,3,CNY\n")],
            r#"fare_products.txt line 3: duplicate fare product (fare_product_id, rider_category_id, fare_media_id) "p2,," (first on line 2)"#,
        ),
        (
            &[("fare_products.txt", "fare_product_id,currency\np2,CNY\n")],
            "fare_products.txt line 1: missing required column `amount`",
        ),
        (
            &[("fare_products.txt", "fare_product_id,amount,currency\np2,,CNY\n")],
            "fare_products.txt line 2: required value `amount` is empty",
        ),
        (
            &[("stops.txt", "stop_id,stop_name\na,A\nb,B\na,Again\n")],
            r#"stops.txt line 4: duplicate stop_id "a" (first on line 2)"#,
        ),
        (
            &[("stops.txt", "stop_id,stop_name,parent_station\na,A,\nb,B,nowhere\n")],
            r#"stops.txt line 3: unknown parent_station "nowhere" (not in stops.txt)"#,
        ),
        (
            &[("stops.txt", "stop_id,stop_name\na,A\nb,B,extra\n")],
            "stops.txt line 3: expected 2 fields as in the header, found 3",
        ),
        (
            &[("fare_leg_rules.txt", "network_id,from_area_id\nn,zone1\n")],
            "fare_leg_rules.txt line 1: missing required column `fare_product_id`",
        ),
        (
            &[("fare_leg_rules.txt", "from_area_id,fare_product_id\nzone1,p2\nzone7,p2\n")],
            r#"fare_leg_rules.txt line 3: unknown from_area_id "zone7" (not in areas.txt)"#,
        ),
        (
            &[("fare_leg_rules.txt", "from_area_id,fare_product_id\nzone1,p2\nzone1,p2\n")],
            r#"fare_leg_rules.txt line 3: duplicate rule (network_id, from_area_id, to_area_id, from_timeframe_group_id, to_timeframe_group_id, fare_product_id) ",zone1,,,,p2" (first on line 2)"#,
        ),
        (
            &[("fare_leg_rules.txt", "fare_product_id,rule_priority\np2,-1\n")],
            r#"fare_leg_rules.txt line 2: `rule_priority` is "-1": expected a non-negative integer"#,
        ),
        (
            &[
                ("networks.txt", "network_id\nmetro\n"),
                ("fare_leg_rules.txt", "network_id,fare_product_id\nmetro,p2\nbus,p2\n"),
            ],
            r#"fare_leg_rules.txt line 3: unknown network_id "bus" (not in networks.txt)"#,
        ),
        (
            &[
                ("fare_products.txt", "fare_product_id,amount,currency\np2,-2.00,CNY\n"),
                ("fare_leg_rules.txt", "fare_product_id\np2\n"),
            ],
            r#"fare_leg_rules.txt line 2: `fare_product_id` is "p2": a leg's fare product cannot have a negative amount (only transfer products may)"#,
        ),
        (
            &[("stops.txt", "")],
            "stops.txt: file is empty (no header line)",
        ),
    ];
    for (overrides, expected) in table {
        check_load_error(overrides, expected);
    }
}

#[test]
fn transfer_rule_errors() {
    // Proves the conditional presence rules of fare_transfer_rules.txt are enforced with the line.
    let leg_rules = "leg_group_id,network_id,fare_product_id\nm,m,p3\nb,b,p2\n";
    let table = [
        (
            "b,b,,,,0,\n",
            "fare_transfer_rules.txt line 2: required value `transfer_count (required when from_leg_group_id equals to_leg_group_id)` is empty",
        ),
        (
            "m,b,2,,,0,\n",
            r#"fare_transfer_rules.txt line 2: `transfer_count` is "2": forbidden unless from_leg_group_id equals to_leg_group_id"#,
        ),
        (
            "b,b,0,,,0,\n",
            r#"fare_transfer_rules.txt line 2: `transfer_count` is "0": expected -1 (no limit) or a positive integer"#,
        ),
        (
            "m,b,,600,,0,\n",
            "fare_transfer_rules.txt line 2: required value `duration_limit_type (required when duration_limit is set)` is empty",
        ),
        (
            "m,b,,,1,0,\n",
            r#"fare_transfer_rules.txt line 2: `duration_limit_type` is "1": forbidden when duration_limit is empty"#,
        ),
        (
            "m,b,,0,1,0,\n",
            r#"fare_transfer_rules.txt line 2: `duration_limit` is "0": expected a positive number of seconds"#,
        ),
        (
            "m,b,,,,3,\n",
            r#"fare_transfer_rules.txt line 2: `fare_transfer_type` is "3": expected 0, 1 or 2"#,
        ),
        (
            "m,tram,,,,0,\n",
            r#"fare_transfer_rules.txt line 2: unknown to_leg_group_id "tram" (not in fare_leg_rules.txt leg_group_id)"#,
        ),
        (
            "m,b,,,,0,p2\nm,b,,,,0,p2\n",
            r#"fare_transfer_rules.txt line 3: duplicate rule (from_leg_group_id, to_leg_group_id, fare_product_id, transfer_count, duration_limit) "m,b,p2,," (first on line 2)"#,
        ),
    ];
    for (rules, expected) in table {
        let transfer = format!("{TRANSFER_HEADER}{rules}");
        let result = feed_with(&[
            ("fare_leg_rules.txt", leg_rules),
            ("fare_transfer_rules.txt", &transfer),
        ]);
        assert_eq!(
            result.err().map(|e| e.to_string()),
            Some(expected.to_string())
        );
    }
}

#[test]
fn missing_required_files_are_named() {
    // Proves that a feed without one of its required files says which.
    let result = GtfsFeed::from_files(&[("stops.txt", STOPS)]);
    assert_eq!(
        result.err().map(|e| e.to_string()),
        Some("fare_products.txt: required file is missing".to_string())
    );
}

#[test]
fn byte_order_mark_and_spaces_are_tolerated() {
    // Proves that a header starting with a UTF-8 BOM (as spreadsheet exports write) and spaces
    // around values are read as GTFS intends.
    let stops = "\u{feff}stop_id,stop_name\n a , A \nb,B\n";
    let feed = feed_with(&[
        ("stops.txt", stops),
        ("stop_areas.txt", "area_id,stop_id\nzone1,a\n"),
        (
            "fare_leg_rules.txt",
            "from_area_id,fare_product_id\n zone1 ,p3\n,p2\n",
        ),
    ])
    .unwrap();
    check(&feed, "n", "a", "b", "3.00");
    check(&feed, "n", "b", "a", "2.00");
}

#[test]
fn metro_fares_from_gtfs_keeps_only_priced_stops() {
    // Proves that the per-network table has the stops with at least one fare on that network,
    // and min and max over its pairs.
    let feed = feed(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id
,n,zone1,zone2,p5
,n,zone2,zone1,p4
,bus,,,p2
",
    );
    let metro = feed.metro_fares("n").unwrap();
    let ids: Vec<&str> = metro.stops().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "d", "st", "st-p1"]);
    assert_eq!(metro.min_fare().amount().to_string(), "4.00");
    assert_eq!(metro.max_fare().amount().to_string(), "5.00");
    assert!(matches!(
        metro.price("a", "d"),
        Err(FareError::NoFareRule { .. })
    ));
    assert!(matches!(
        metro.price("c", "a"),
        Err(FareError::UnknownStop { .. })
    ));
    assert!(feed.metro_fares("tram").is_err());
}
