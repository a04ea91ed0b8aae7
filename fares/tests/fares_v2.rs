//! Fares v2 features beyond areas and transfers, on a Translink/MBTA-shaped feed written for
//! these tests: products per rider category and medium (with the default category and the
//! mobile-app medium), timeframes with service days (peak, off-peak, a free-fare day),
//! `rule_priority`, the `transfer_only` and `filter_fare_product_id` extensions, warnings,
//! limits, CRLF line numbers and the rule-priced per-network table. Every expected price is in a
//! hand-computed table beside its test.

use turnpike_fares::{
    FareError, FareQuery, GtfsFeed, Leg, Limits, LoadReason, LoadWarning, ServiceDay,
};

const STOPS: &str = "stop_id,stop_name\ns1,One\ns2,Two\ns3,Three\ns4,Four\n";
const AREAS: &str = "area_id,area_name\nzone1,Zone 1\nzone2,Zone 2\nzone3,Zone 3\n";
const STOP_AREAS: &str = "area_id,stop_id\nzone1,s1\nzone1,s2\nzone2,s3\nzone3,s4\n";
const CATEGORIES: &str = "rider_category_id,rider_category_name,is_default_fare_category\n\
adult,Adult,1\nconcession,Concession,0\n";
const MEDIA: &str = "fare_media_id,fare_media_name,fare_media_type\n\
cash,Cash,0\ncard,Compass Card,2\napp,Transit App,4\n";
/// One product row per (product, category, medium), as real feeds publish them.
const PRODUCTS: &str = "\
fare_product_id,fare_product_name,amount,currency,rider_category_id,fare_media_id
single,Single,3.00,USD,adult,cash
single,Single,2.50,USD,adult,card
single,Single,2.40,USD,adult,app
single,Single,1.50,USD,concession,
two_zone,Two zones,4.50,USD,adult,
two_zone,Two zones,3.00,USD,concession,
offpeak,Off-peak,2.00,USD,,
free,Free fare day,0.00,USD,,
";
/// Weekday off-peak (before 07:00 and from 09:00) and a free-fare day on 25 December.
const TIMEFRAMES: &str = "\
timeframe_group_id,start_time,end_time,service_id
offpeak,00:00:00,07:00:00,weekday
offpeak,09:00:00,24:00:00,weekday
free_day,,,freeday
";
const CALENDAR: &str =
    "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n\
weekday,1,1,1,1,1,0,0,20260101,20261231\n";
const CALENDAR_DATES: &str = "service_id,date,exception_type\nfreeday,20261225,1\n";
const LEG_RULES: &str = "\
leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,fare_product_id,rule_priority
ride,metro,zone1,zone1,,single,0
ride,metro,zone1,zone2,,two_zone,0
ride,metro,zone1,zone1,offpeak,offpeak,1
free,metro,,,free_day,free,2
";

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("stops.txt", STOPS),
        ("areas.txt", AREAS),
        ("stop_areas.txt", STOP_AREAS),
        ("rider_categories.txt", CATEGORIES),
        ("fare_media.txt", MEDIA),
        ("fare_products.txt", PRODUCTS),
        ("timeframes.txt", TIMEFRAMES),
        ("calendar.txt", CALENDAR),
        ("calendar_dates.txt", CALENDAR_DATES),
        ("networks.txt", "network_id,network_name\nmetro,Metro\n"),
        ("fare_leg_rules.txt", LEG_RULES),
    ]
}

fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut files = files();
    for &(name, text) in overrides {
        files.retain(|(n, _)| *n != name);
        files.push((name, text));
    }
    files
}

/// A service day starting at an arbitrary instant, so times of day are offsets from it.
const DAY_START_S: i64 = 1_000_000;

fn query(category: &str, medium: &str, date: u32) -> FareQuery {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    FareQuery {
        rider_category: some(category),
        fare_medium: some(medium),
        service_day: (date != 0).then_some(ServiceDay {
            date,
            start_s: DAY_START_S,
        }),
    }
}

/// One row of a price table: from, to, time of day (`HH:MM`, or "-" for no day), date,
/// category, medium, expected amount or "none".
type Case = (
    &'static str,
    &'static str,
    &'static str,
    u32,
    &'static str,
    &'static str,
    &'static str,
);

fn check(feed: &GtfsFeed, cases: &[Case]) {
    for &(from, to, time, date, category, medium, expected) in cases {
        let at_s = match time {
            "-" => 0,
            hm => {
                let (h, m) = hm.split_once(':').unwrap();
                DAY_START_S + h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60
            }
        };
        let date = if time == "-" { 0 } else { date };
        let got = feed.price_at(
            "metro",
            from,
            to,
            at_s,
            at_s + 600,
            &query(category, medium, date),
        );
        let got = match got {
            Ok(m) => m.amount().to_string(),
            Err(FareError::NoFareRule { .. }) => "none".to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(
            got, expected,
            "{from}->{to} at {time} on {date} for {category}/{medium}"
        );
    }
}

#[test]
fn products_per_category_and_medium_with_documented_defaults() {
    // Proves a feed with one product row per category and medium loads (it used to be refused at
    // "fare_products.txt line 3: duplicate fare_product_id") and prices each rider as published:
    // the default category is adult (is_default_fare_category), the default medium the feed's
    // mobile-app medium, a row with an empty category or medium serves every one.
    let feed = GtfsFeed::from_files(&files()).unwrap();
    check(
        &feed,
        &[
            ("s1", "s2", "-", 0, "", "", "2.40"), // adult, app (defaults)
            ("s1", "s2", "-", 0, "adult", "cash", "3.00"),
            ("s1", "s2", "-", 0, "adult", "card", "2.50"),
            ("s1", "s2", "-", 0, "concession", "", "1.50"), // row with empty medium
            ("s1", "s2", "-", 0, "concession", "cash", "1.50"),
            ("s1", "s3", "-", 0, "", "", "4.50"),
            ("s1", "s3", "-", 0, "concession", "card", "3.00"),
            ("s3", "s1", "-", 0, "", "", "none"), // no rule zone2 -> zone1
            ("s4", "s1", "-", 0, "", "", "none"),
        ],
    );
    assert_eq!(
        feed.price_at("metro", "s1", "s2", 0, 0, &query("student", "", 0)),
        Err(FareError::UnknownRiderCategory {
            rider_category_id: "student".into()
        })
    );
    assert_eq!(
        feed.price_at("metro", "s1", "s2", 0, 0, &query("", "token", 0)),
        Err(FareError::UnknownFareMedium {
            fare_media_id: "token".into()
        })
    );
}

#[test]
fn timeframes_with_service_days_and_priorities() {
    // Proves time-dependent rules: off-peak applies on weekdays outside 07:00-09:00 (calendar.txt
    // weekdays), the free-fare day only on its calendar_dates.txt date, and with no day given no
    // timeframe holds — so the free-day rule never matches "always" (it used to price every fare
    // at 0.00 once its columns were blanked).
    let feed = GtfsFeed::from_files(&files()).unwrap();
    let wed = 20261202; // a Wednesday
    let sat = 20261205; // a Saturday
    let xmas = 20261225; // a Friday, the free-fare day
    check(
        &feed,
        &[
            ("s1", "s2", "08:00", wed, "", "", "2.40"), // peak: single
            ("s1", "s2", "06:59", wed, "", "", "2.00"), // off-peak, before 07:00
            ("s1", "s2", "07:00", wed, "", "", "2.40"), // 07:00 starts peak
            ("s1", "s2", "09:00", wed, "", "", "2.00"), // 09:00 ends it
            ("s1", "s2", "10:00", wed, "concession", "", "2.00"), // off-peak serves every category
            ("s1", "s3", "10:00", wed, "", "", "4.50"), // off-peak is zone1 only
            ("s1", "s2", "10:00", sat, "", "", "2.40"), // off-peak is weekdays only
            ("s1", "s2", "10:00", xmas, "", "", "0.00"), // free-fare day beats off-peak
            ("s4", "s3", "10:00", xmas, "", "", "0.00"), // empty areas match any stop
            ("s4", "s3", "10:00", wed, "", "", "none"),
            ("s1", "s2", "-", 0, "", "", "2.40"), // no day: no timeframe applies
        ],
    );
}

#[test]
fn timeframe_empty_semantics_without_priority() {
    // Proves the spec's empty semantics for timeframes: without rule_priority, a rule with an
    // empty from_timeframe_group_id matches only when no listed timeframe holds the leg's start.
    let rules = "fare_product_id,from_area_id,to_area_id,from_timeframe_group_id\n\
single,zone1,zone1,\noffpeak,zone1,zone1,offpeak\n";
    let feed = GtfsFeed::from_files(&with(&[("fare_leg_rules.txt", rules)])).unwrap();
    let price = |time_s: i64, date| {
        feed.price_at(
            "",
            "s1",
            "s2",
            DAY_START_S + time_s,
            DAY_START_S + time_s,
            &query("", "", date),
        )
        .unwrap()
        .amount()
        .to_string()
    };
    assert_eq!(price(8 * 3600, 20261202), "2.40"); // peak
    assert_eq!(price(10 * 3600, 20261202), "2.00"); // off-peak: the single rule does not match
    assert_eq!(price(10 * 3600, 20261205), "2.40"); // Saturday: no listed timeframe holds
}

fn leg(from: &str, to: &str, start_min: i64) -> Leg {
    Leg {
        from_stop: from.into(),
        to_stop: to.into(),
        start_s: start_min * 60,
        end_s: start_min * 60 + 600,
        network_id: "metro".into(),
    }
}

#[test]
fn transfer_only_leg_rules() {
    // Proves the `transfer_only` extension: a free transfer-only rule prices a leg only where a
    // transfer rule leads into its group from the leg before (within that rule's duration
    // limit); a lone 2.40 ride is never priced 0.00 by it, nor is a second ride no transfer
    // rule reaches.
    //   no transfer rule:                      2.40 + 2.40 = 4.80
    //   ride -> xfer within 60 min, at 20 min: 2.40 + 0.00 = 2.40
    //   the same at 70 min (past the limit):   2.40 + 2.40 = 4.80
    let rules = "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority,transfer_only\n\
ride,metro,zone1,zone1,single,0,\n\
xfer,metro,zone1,zone1,free,1,1\n";
    let transfers =
        "from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type\n\
ride,xfer,3600,1,0\n";
    let q = FareQuery::default();
    let without = GtfsFeed::from_files(&with(&[("fare_leg_rules.txt", rules)])).unwrap();
    assert!(without
        .warnings()
        .iter()
        .all(|w| w.column.as_deref() != Some("transfer_only")));
    let feed = GtfsFeed::from_files(&with(&[
        ("fare_leg_rules.txt", rules),
        ("fare_transfer_rules.txt", transfers),
    ]))
    .unwrap();
    let price =
        |feed: &GtfsFeed, legs: &[Leg]| feed.price_journey(legs, &q).unwrap().amount().to_string();
    assert_eq!(price(&feed, &[leg("s1", "s2", 0)]), "2.40");
    assert_eq!(
        price(&without, &[leg("s1", "s2", 0), leg("s2", "s1", 20)]),
        "4.80"
    );
    assert_eq!(
        price(&feed, &[leg("s1", "s2", 0), leg("s2", "s1", 20)]),
        "2.40"
    );
    assert_eq!(
        price(&feed, &[leg("s1", "s2", 0), leg("s2", "s1", 70)]),
        "4.80"
    );
    assert_eq!(
        feed.price("metro", "s1", "s2")
            .unwrap()
            .amount()
            .to_string(),
        "2.40"
    );
}

#[test]
fn transfer_rules_with_product_filter_and_duration() {
    // Proves filter_fare_product_id (the transfer applies only after a leg of that product) and
    // the duration limit, on a free ride→ride transfer within 90 minutes after a single:
    //   single then single within 90 min: 2.40 (type 0, free transfer)
    //   single then single at 100 min:   2.40 + 2.40 = 4.80
    //   two_zone then single:            4.50 + 2.40 = 6.90 (filter: only after a single)
    let transfers = "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,filter_fare_product_id\n\
ride,ride,-1,5400,1,0,single\n";
    let feed = GtfsFeed::from_files(&with(&[("fare_transfer_rules.txt", transfers)])).unwrap();
    let q = FareQuery::default();
    let price = |legs: &[Leg]| feed.price_journey(legs, &q).unwrap().amount().to_string();
    assert_eq!(price(&[leg("s1", "s2", 0), leg("s2", "s1", 30)]), "2.40");
    assert_eq!(price(&[leg("s1", "s2", 0), leg("s2", "s1", 100)]), "4.80");
    assert_eq!(price(&[leg("s1", "s3", 0), leg("s1", "s2", 30)]), "6.90");
}

/// Stops with a station: `s2` is a platform of station `hub`.
const STOPS_WITH_HUB: &str = "stop_id,stop_name,location_type,parent_station\n\
s1,One,0,\nhub,Hub,1,\ns2,Two,0,hub\ns3,Three,0,\ns4,Four,0,\n";

#[test]
fn join_rules_price_joined_legs_as_one_effective_leg() {
    // Proves fare_leg_join_rules.txt: legs whose transfer matches a join rule are priced as one
    // leg from the first departure to the last arrival, by the rules of the network they share.
    // Fares (default rider, app medium, no service day): zone1->zone1 2.40, zone1->zone2 4.50
    // (s1, s2 in zone1; s3 in zone2); no transfer rules, so unjoined legs each pay.
    //   s1->s2 then s2->s3, joined at station hub (s2 is its platform): s1->s3 = 4.50
    //     (unjoined: 2.40 + 4.50 = 6.90)
    //   s1->s2 then s1->s3 (the second leg starts at s1, not at hub): 2.40 + 4.50 = 6.90
    //   a three-leg chain s1->s2, s2->s2, s2->s3 under a network-only rule: s1->s3 = 4.50
    let price = |feed: &GtfsFeed, legs: &[Leg]| {
        feed.price_journey(legs, &FareQuery::default())
            .map(|m| m.amount().to_string())
    };
    let at_hub = GtfsFeed::from_files(&with(&[
        ("stops.txt", STOPS_WITH_HUB),
        (
            "fare_leg_join_rules.txt",
            "from_network_id,to_network_id,from_stop_id,to_stop_id\nmetro,metro,hub,hub\n",
        ),
    ]))
    .unwrap();
    assert!(
        at_hub
            .warnings()
            .iter()
            .all(|w| w.file != "fare_leg_join_rules.txt"),
        "{:?}",
        at_hub.warnings()
    );
    let unjoined = GtfsFeed::from_files(&with(&[("stops.txt", STOPS_WITH_HUB)])).unwrap();
    let through = [leg("s1", "s2", 0), leg("s2", "s3", 20)];
    assert_eq!(price(&at_hub, &through).unwrap(), "4.50");
    assert_eq!(price(&unjoined, &through).unwrap(), "6.90");
    assert_eq!(
        price(&at_hub, &[leg("s1", "s2", 0), leg("s1", "s3", 20)]).unwrap(),
        "6.90"
    );

    let anywhere = GtfsFeed::from_files(&with(&[(
        "fare_leg_join_rules.txt",
        "from_network_id,to_network_id\nmetro,metro\n",
    )]))
    .unwrap();
    let chain = [leg("s1", "s2", 0), leg("s2", "s2", 20), leg("s2", "s3", 40)];
    assert_eq!(price(&anywhere, &chain).unwrap(), "4.50");
    assert_eq!(price(&unjoined, &chain).unwrap(), "9.30");

    // Joining two networks: the effective leg shares no network, so only a rule for networks
    // no rule lists could price it; this feed has none, so the journey has no fare (an error,
    // never a guess), and the load says so.
    let cross = GtfsFeed::from_files(&with(&[
        (
            "networks.txt",
            "network_id,network_name\nmetro,Metro\nbus,Bus\n",
        ),
        (
            "fare_leg_join_rules.txt",
            "from_network_id,to_network_id\nmetro,bus\n",
        ),
    ]))
    .unwrap();
    assert!(cross
        .warnings()
        .iter()
        .any(|w| w.file == "fare_leg_join_rules.txt" && w.line == Some(2)));
    let mut bus = leg("s2", "s3", 20);
    bus.network_id = "bus".into();
    assert!(matches!(
        price(&cross, &[leg("s1", "s2", 0), bus]),
        Err(FareError::NoFareRule { .. })
    ));

    // A join rule with from_stop_id but no to_stop_id is refused with the column named.
    let err = GtfsFeed::from_files(&with(&[(
        "fare_leg_join_rules.txt",
        "from_network_id,to_network_id,from_stop_id,to_stop_id\nmetro,metro,s1,\n",
    )]))
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line),
        ("fare_leg_join_rules.txt", Some(2)),
        "{err}"
    );
    assert!(err.to_string().contains("to_stop_id"), "{err}");
}

#[test]
fn what_is_not_used_is_a_warning_with_file_line_and_column() {
    // Proves nothing is dropped silently: Fares v1 files, a join rule naming an unknown stop,
    // the unsettled fare_product_behavior column (fare_media_behavior is honoured: one medium
    // pays a whole journey, so it is not warned about), unknown
    // columns and timeframes on an unknown service each come back as a warning naming the file,
    // line and column, and the feed still loads.
    let feed = GtfsFeed::from_files(&with(&[
        ("fare_attributes.txt", "fare_id,price\nf,1\n"),
        (
            "fare_leg_join_rules.txt",
            "from_network_id,to_network_id,from_stop_id,to_stop_id\nmetro,metro,nowhere,s1\n",
        ),
        (
            "fare_transfer_rules.txt",
            "from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type,fare_media_behavior,fare_product_behavior\nride,ride,1,0,0,1\n",
        ),
        (
            "fare_leg_rules.txt",
            "network_id,from_area_id,to_area_id,fare_product_id,agency_zone_note,leg_group_id\nmetro,zone1,zone1,single,x,ride\n",
        ),
        ("timeframes.txt", "timeframe_group_id,start_time,end_time,service_id\nnight,00:00:00,05:00:00,owl\n"),
    ]))
    .unwrap();
    let seen: Vec<(String, Option<u64>, Option<String>)> = feed
        .warnings()
        .iter()
        .map(|w: &LoadWarning| (w.file.clone(), w.line, w.column.clone()))
        .collect();
    for expected in [
        ("fare_attributes.txt", None, None),
        ("fare_leg_join_rules.txt", Some(2), Some("from_stop_id")),
        (
            "fare_transfer_rules.txt",
            Some(1),
            Some("fare_product_behavior"),
        ),
        ("fare_leg_rules.txt", Some(1), Some("agency_zone_note")),
        ("timeframes.txt", Some(2), Some("service_id")),
    ] {
        let expected = (
            expected.0.to_string(),
            expected.1,
            expected.2.map(str::to_string),
        );
        assert!(seen.contains(&expected), "{expected:?} not in {seen:#?}");
    }
    let shown = feed.warnings()[0].to_string();
    assert!(shown.starts_with("fare_attributes.txt: "), "{shown}");
}

#[test]
fn crlf_line_numbers_are_right() {
    // Proves errors name the right line with CRLF line endings (they were one too low).
    let products = "fare_product_id,amount,currency\r\np,1.00,USD\r\nq,,USD\r\n";
    let err = GtfsFeed::from_files(&with(&[("fare_products.txt", products)])).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    let rules = "fare_product_id,from_area_id\r\np,zone1\r\n\r\np,zone9\r\n";
    let products = "fare_product_id,amount,currency\r\np,1.00,USD\r\n";
    let err = GtfsFeed::from_files(&with(&[
        ("fare_products.txt", products),
        ("fare_leg_rules.txt", rules),
    ]))
    .unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
}

#[test]
fn limits_are_named() {
    // Proves a load past a limit is refused with the limit's name, limit and what was found.
    let limits = Limits {
        stops_max: 3,
        ..Limits::default()
    };
    let err = GtfsFeed::load(&files(), &limits).unwrap_err();
    assert_eq!(
        err.reason,
        LoadReason::Limit {
            name: "stops_max".into(),
            limit: 3,
            found: 4
        }
    );
    let limits = Limits {
        rules_max: 2,
        ..Limits::default()
    };
    let err = GtfsFeed::load(&files(), &limits).unwrap_err();
    assert!(
        matches!(err.reason, LoadReason::Limit { ref name, .. } if name == "rules_max"),
        "{err}"
    );
    let limits = Limits {
        feed_bytes_max: 100,
        ..Limits::default()
    };
    let err = GtfsFeed::load(&files(), &limits).unwrap_err();
    assert!(err.to_string().contains("feed_bytes_max"), "{err}");
}

#[test]
fn network_table_prices_by_rule_at_tap_time() {
    // Proves the per-network table the gateway uses prices by rule with the tap's times and the
    // rider, and bounds its fares by the network's products: max = the dearest product (4.50),
    // min = the cheapest rule that holds at any time (2.40: not the free-fare day's 0.00).
    let feed = GtfsFeed::from_files(&files()).unwrap();
    let metro = feed.metro_fares("metro").unwrap();
    let ids: Vec<&str> = metro.stops().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s3", "s4"]);
    assert_eq!(
        metro.price("s1", "s2").unwrap().amount().to_string(),
        "2.40"
    );
    let q = query("concession", "", 20261202);
    let at = DAY_START_S + 8 * 3600;
    assert_eq!(
        metro
            .price_at("s1", "s3", at, at, Some(&q))
            .unwrap()
            .amount()
            .to_string(),
        "3.00"
    );
    let at = DAY_START_S + 10 * 3600;
    assert_eq!(
        metro
            .price_at("s1", "s2", at, at, Some(&q))
            .unwrap()
            .amount()
            .to_string(),
        "2.00"
    );
    assert_eq!(metro.min_fare().amount().to_string(), "2.40");
    assert_eq!(metro.max_fare().amount().to_string(), "4.50");
}

mod random_feeds {
    use proptest::prelude::*;
    use turnpike_fares::{FareQuery, GtfsFeed, ServiceDay};

    /// A well-formed random feed: stops in random areas, products with random category and
    /// medium rows, leg rules with random areas, timeframes, priorities and transfer-only flags.
    fn feed_text() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        (
            1usize..60,
            1usize..6,
            prop::collection::vec((0usize..60, 0usize..6), 0..80),
            prop::collection::vec((0u8..3, 0u8..3, 0u32..1000), 1..12),
            prop::collection::vec((0usize..7, 0usize..7, 0usize..3, 0usize..12, 0u8..3, any::<bool>()), 1..30),
            any::<bool>(),
        )
            .prop_map(|(stops, areas, members, products, rules, priority)| {
                let mut s = String::from("stop_id,stop_name\n");
                for i in 0..stops {
                    s += &format!("s{i},S{i}\n");
                }
                let mut a = String::from("area_id\n");
                for i in 0..areas {
                    a += &format!("a{i}\n");
                }
                let mut sa = String::from("area_id,stop_id\n");
                let mut seen = std::collections::HashSet::new();
                for (stop, area) in members {
                    let (stop, area) = (stop % stops, area % areas);
                    if seen.insert((stop, area)) {
                        sa += &format!("a{area},s{stop}\n");
                    }
                }
                let mut p = String::from("fare_product_id,amount,currency,rider_category_id,fare_media_id\n");
                let mut seen = std::collections::HashSet::new();
                for (i, &(cat, medium, amount)) in products.iter().enumerate() {
                    let id = i % 4;
                    if !seen.insert((id, cat, medium)) {
                        continue;
                    }
                    let cat = ["", "adult", "child"][cat as usize];
                    let medium = ["", "app", "card"][medium as usize];
                    p += &format!("p{id},{}.{:02},USD,{cat},{medium}\n", amount / 100, amount % 100);
                }
                let products_n = seen.iter().map(|k| k.0).max().unwrap_or(0) + 1;
                let mut r = String::from(
                    "network_id,from_area_id,to_area_id,from_timeframe_group_id,fare_product_id,transfer_only",
                );
                r += if priority { ",rule_priority\n" } else { "\n" };
                let mut seen = std::collections::HashSet::new();
                for (from, to, tf, product, prio, transfer_only) in rules {
                    let product = product % products_n;
                    if !seen.insert((from, to, tf, product)) {
                        continue;
                    }
                    let area = |x: usize| if x < areas { format!("a{x}") } else { String::new() };
                    let tf = ["", "peak", "night"][tf];
                    r += &format!(
                        "m,{},{},{tf},p{product},{}",
                        area(from),
                        area(to),
                        u8::from(transfer_only)
                    );
                    r += &if priority { format!(",{prio}\n") } else { "\n".to_string() };
                }
                vec![
                    ("stops.txt", s),
                    ("areas.txt", a),
                    ("stop_areas.txt", sa),
                    ("rider_categories.txt", "rider_category_id,is_default_fare_category\nadult,1\nchild,0\n".into()),
                    ("fare_media.txt", "fare_media_id,fare_media_type\ncard,2\napp,4\n".into()),
                    ("fare_products.txt", p),
                    ("timeframes.txt", "timeframe_group_id,start_time,end_time\npeak,07:00:00,09:00:00\nnight,00:00:00,05:00:00\n".into()),
                    ("fare_leg_rules.txt", r),
                ]
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Proves on random well-formed feeds: loading and pricing never panic; the network
        /// table's stop list is no longer than the feed's (memory linear in the feed: no
        /// per-pair table); every price the table gives for any pair and time, for the
        /// configured rider, is at most its maximum fare, and no price is negative.
        #[test]
        fn random_feeds_price_within_bounds(files in feed_text(), hour in 0i64..24, child in any::<bool>()) {
            let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
            let Ok(feed) = GtfsFeed::from_files(&files) else { return Ok(()); };
            let Ok(metro) = feed.metro_fares("m") else { return Ok(()); };
            let stops_n = files[0].1.lines().count() - 1;
            prop_assert!(metro.stops().len() <= stops_n);
            let q = FareQuery {
                rider_category: child.then(|| "child".to_string()),
                fare_medium: None,
                service_day: Some(ServiceDay { date: 20261202, start_s: 0 }),
            };
            let ids: Vec<String> = metro.stops().iter().map(|s| s.id.clone()).collect();
            for from in &ids {
                for to in &ids {
                    let at = hour * 3600;
                    if let Ok(price) = metro.price_at(from, to, at, at, Some(&q)) {
                        if !child {
                            prop_assert!(price.to_minor() <= metro.max_fare().to_minor(), "{from}->{to} {price:?}");
                        }
                        prop_assert!(price.to_minor() >= 0);
                    }
                }
            }
        }
    }
}

#[test]
fn spec_example_fare_media_bay_area() {
    // Proves the reference's fare-media example (gtfs.org "Fares": Clipper is a transit card,
    // type 2; MuniMobile a mobile app, type 4; cash type 0; a single ride of 2.75 USD on
    // MuniMobile): the default medium is the mobile app, so the ride prices 2.75; on Clipper or
    // cash the product has no row, so there is no fare rather than a guessed one.
    let feed = GtfsFeed::from_files(&[
        ("stops.txt", "stop_id,stop_name\nx,X\ny,Y\n"),
        (
            "fare_media.txt",
            "fare_media_id,fare_media_name,fare_media_type\nclipper,Clipper,2\nmunimobile,SFMTA MuniMobile,4\ncash,Cash,0\n",
        ),
        (
            "fare_products.txt",
            "fare_product_id,fare_product_name,amount,currency,fare_media_id\nsingle_ride,Single Ride Fare,2.75,USD,munimobile\n",
        ),
        ("fare_leg_rules.txt", "fare_product_id\nsingle_ride\n"),
    ])
    .unwrap();
    let price = |medium: &str| {
        feed.price_at("", "x", "y", 0, 0, &query("", medium, 0))
            .map(|m| m.amount().to_string())
    };
    assert_eq!(price(""), Ok("2.75".to_string()));
    assert_eq!(price("munimobile"), Ok("2.75".to_string()));
    assert!(matches!(
        price("clipper"),
        Err(FareError::NoFareRule { .. })
    ));
    assert!(matches!(price("cash"), Err(FareError::NoFareRule { .. })));
}

#[test]
fn rules_naming_missing_ids_are_warned_and_never_apply() {
    // Proves a leg rule naming a product or a timeframe group the feed does not define is a
    // warning at its line and column, never a refused feed, and that the rule never prices a
    // leg. Base rules (priority mode): zone1->zone1 single 2.40 (app, adult); the added rules
    // name "p77" (no such product) and "holiday" (no such timeframe group), each with a higher
    // priority that would win if it applied.
    let rules = "leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,fare_product_id,rule_priority\n\
ride,metro,zone1,zone1,,single,0\n\
ride,metro,zone1,zone1,,p77,5\n\
ride,metro,zone1,zone1,holiday,free,6\n";
    let feed = GtfsFeed::from_files(&with(&[("fare_leg_rules.txt", rules)])).unwrap();
    let warned: Vec<(Option<u64>, Option<&str>)> = feed
        .warnings()
        .iter()
        .filter(|w| w.file == "fare_leg_rules.txt")
        .map(|w| (w.line, w.column.as_deref()))
        .collect();
    assert_eq!(
        warned,
        vec![
            (Some(3), Some("fare_product_id")),
            (Some(4), Some("from_timeframe_group_id"))
        ]
    );
    check(
        &feed,
        &[
            ("s1", "s2", "-", 0, "", "", "2.40"),
            ("s1", "s2", "10:00", 20261225, "", "", "2.40"),
        ],
    );
}
