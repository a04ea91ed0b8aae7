//! Runs the `fares` binary on a feed written to a temporary directory.

use std::process::Command;

fn feed_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fares-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("stops.txt", "stop_id,stop_name\na,A\nb,B\n"),
        ("rider_categories.txt", "rider_category_id,is_default_fare_category\nadult,1\nchild,0\n"),
        ("fare_products.txt", "fare_product_id,amount,currency,rider_category_id\nride,3.00,USD,adult\nride,1.00,USD,child\noff,2.00,USD,\n"),
        ("timeframes.txt", "timeframe_group_id,start_time,end_time\noffpeak,09:00:00,24:00:00\n"),
        ("fare_leg_rules.txt", "network_id,fare_product_id,from_timeframe_group_id,rule_priority,note\nm,ride,,0,\nm,off,offpeak,1,\n"),
        ("fare_attributes.txt", "fare_id,price\nx,1\n"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn fares(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fares"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Proves `fares price` prices by rider category and time of day, and `fares check` prints the
/// feed's warnings and a summary.
#[test]
fn price_and_check() {
    let dir = feed_dir();
    let feed = dir.to_str().unwrap();
    let price = |extra: &[&str]| {
        let mut args = vec!["price", "--feed", feed, "--from", "a", "--to", "b"];
        args.extend_from_slice(extra);
        let (ok, out) = fares(&args);
        assert!(ok, "{out}");
        out.trim().to_string()
    };
    assert_eq!(price(&[]), "3.00 USD");
    assert_eq!(price(&["--category", "child"]), "1.00 USD");
    assert_eq!(price(&["--at", "08:30"]), "3.00 USD");
    assert_eq!(price(&["--at", "10:00"]), "2.00 USD");
    let (ok, out) = fares(&["price", "--feed", feed, "--from", "a", "--to", "zz"]);
    assert!(!ok && out.contains("unknown stop"), "{out}");

    let (ok, out) = fares(&["check", "--feed", feed]);
    assert!(ok, "{out}");
    assert!(out.contains("WARNING fare_attributes.txt"), "{out}");
    assert!(
        out.contains("WARNING fare_leg_rules.txt line 1 column note"),
        "{out}"
    );
    // The summary's range leaves out timeframed rules (the 2.00 off-peak fare): min_fare is
    // the fare that always applies, not the cheapest of any hour.
    assert!(
        out.contains("network \"m\": 2 stops, fares 3.00 to 3.00"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Proves `fares journey` prices legs in travel order with the feed's join rules: two legs
/// joined at station `hub` (platform `p`) are one effective leg a->b of the zone fare, not two
/// fares; without the join the two legs each pay.
#[test]
fn journey_with_join_rules() {
    let dir = std::env::temp_dir().join(format!("fares-cli-journey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("stops.txt", "stop_id,stop_name,location_type,parent_station\na,A,0,\nhub,Hub,1,\np,P,0,hub\nb,B,0,\n"),
        ("areas.txt", "area_id\nin\nout\n"),
        ("stop_areas.txt", "area_id,stop_id\nin,a\nin,p\nout,b\n"),
        ("fare_products.txt", "fare_product_id,amount,currency\ninner,2.00,USD\ncross,3.00,USD\n"),
        ("fare_leg_rules.txt", "network_id,from_area_id,to_area_id,fare_product_id\nm,in,in,inner\nm,in,out,cross\n"),
        ("fare_leg_join_rules.txt", "from_network_id,to_network_id,from_stop_id,to_stop_id\nm,m,hub,hub\n"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let feed = dir.to_str().unwrap();
    let (ok, out) = fares(&[
        "journey",
        "--feed",
        feed,
        "--leg",
        "m,a,08:00,p,08:10",
        "--leg",
        "m,p,08:15,b,08:30",
    ]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "3.00 USD");
    // Not joined: the second leg starts at a, not at the hub.
    let (ok, out) = fares(&[
        "journey",
        "--feed",
        feed,
        "--leg",
        "m,a,08:00,p,08:10",
        "--leg",
        "m,a,08:15,b,08:30",
    ]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "5.00 USD");
    let (ok, out) = fares(&["journey", "--feed", feed, "--leg", "m,a,8h,b,09:00"]);
    assert!(!ok && out.contains("expected HH:MM"), "{out}");
}
