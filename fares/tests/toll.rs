//! Tolls: the formula, rounding, minimum tolls, vehicle classes and loader errors.

mod files;

use rust_decimal_macros::dec;
use turnpike_fares::{
    demo_toll, parse_vehicle_class, FareError, TollRounding, TollTable, VehicleClass,
};
use turnpike_wire::money::Rounding;

fn check(table: &TollTable, entry: &str, exit: &str, class: &str, expected: &str) {
    let class = parse_vehicle_class(class).unwrap();
    let got = match table.toll(entry, exit, class) {
        Ok(m) => m.amount().to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "{entry} -> {exit} {}", class.as_str());
}

#[test]
fn demo_tolls() {
    // Proves the formula on the demo expressway: |km difference| × rate, rounded to the fen
    // half-up, never below the class minimum, the same in both directions.
    let toll = demo_toll();
    let table = [
        // 18.5 km × 0.45 = 8.325 → 8.33 (half-up)
        ("hangzhou-pengbu", "xiaoshan", "p1", "8.33"),
        ("xiaoshan", "hangzhou-pengbu", "p1", "8.33"),
        // 178.5 km × 0.45 = 80.325 → 80.33
        ("hangzhou-pengbu", "ningbo-east", "p1", "80.33"),
        // 178.5 km × 2.10 = 374.85
        ("hangzhou-pengbu", "ningbo-east", "t6", "374.85"),
        // 17.4 km (keqiao → shaoxing) × 0.45 = 7.83
        ("keqiao", "shaoxing", "p1", "7.83"),
        // 18.5 km × 0.50 = 9.25, above the t1 minimum of 5.00
        ("hangzhou-pengbu", "xiaoshan", "t1", "9.25"),
        // 17.4 km × 0.90 = 15.66
        ("keqiao", "shaoxing", "p2", "15.66"),
        // 17.4 km × 1.35 = 23.49
        ("keqiao", "shaoxing", "p3", "23.49"),
        // 33.7 km × 0.45 = 15.165 → 15.17
        ("shaoxing", "shangyu", "p1", "15.17"),
        // same plaza: distance 0, the class minimum
        ("yuyao", "yuyao", "p1", "5.00"),
        ("yuyao", "yuyao", "t6", "20.00"),
        // unknown plaza
        ("yuyao", "shanghai", "p1", r#"unknown plaza "shanghai""#),
    ];
    for (entry, exit, class, expected) in table {
        check(&toll, entry, exit, class, expected);
    }
    assert_eq!(toll.plazas().len(), 8);
    assert_eq!(
        toll.distance_km("ningbo-east", "hangzhou-pengbu"),
        Ok(dec!(178.5))
    );
}

#[test]
fn rounding_rules() {
    // Proves the rounding rule is configurable and applied once to the exact product: 8.325 CNY
    // is 8.33 half-up, 8.32 half-even, 9 in whole yuan rounded up, 8 in whole yuan half-up.
    let table = [
        (TollRounding::MinorUnit(Rounding::HalfUp), "8.33"),
        (TollRounding::MinorUnit(Rounding::HalfEven), "8.32"),
        (TollRounding::MinorUnit(Rounding::Down), "8.32"),
        (TollRounding::WholeUnit(Rounding::HalfUp), "8.00"),
        (TollRounding::WholeUnit(Rounding::Up), "9.00"),
    ];
    for (rounding, expected) in table {
        let toll = demo_toll().with_rounding(rounding);
        check(&toll, "hangzhou-pengbu", "xiaoshan", "p1", expected);
    }
    assert_eq!(
        demo_toll().rounding(),
        TollRounding::MinorUnit(Rounding::HalfUp)
    );
}

#[test]
fn minimum_toll_applies_after_rounding() {
    // Proves a short trip costs the class minimum, and a class without a minimum can cost zero
    // at the same plaza.
    let toll = TollTable::from_csv(
        (
            "plazas.csv",
            "plaza_id,plaza_name,km_post\na,A,0\nb,B,3.3\n",
        ),
        (
            "rates.csv",
            "vehicle_class,rate_per_km,currency,min_toll\np1,0.45,CNY,2.00\nt1,0.475,CNY,\n",
        ),
    )
    .unwrap();
    check(&toll, "a", "b", "p1", "2.00"); // 1.485 → 1.49 < 2.00
    check(&toll, "a", "b", "t1", "1.57"); // 3.3 × 0.475 = 1.5675 → 1.57
    check(&toll, "a", "a", "t1", "0.00");
    assert_eq!(
        toll.toll("a", "b", VehicleClass::T6),
        Err(FareError::NoRateForClass {
            class: "t6".to_string()
        })
    );
}

#[test]
fn vehicle_class_names() {
    // Proves the ten JT/T 489 class names parse and round-trip, and anything else is a precise
    // error listing the valid names.
    for class in VehicleClass::ALL {
        assert_eq!(parse_vehicle_class(class.as_str()), Ok(class));
    }
    let table = ["", "P1", "p0", "p5", "t7", "car"];
    for text in table {
        let err = parse_vehicle_class(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown vehicle class {text:?}: expected one of p1, p2, p3, p4 (passenger) or t1 to t6 (truck)")
        );
    }
}

#[test]
fn loader_errors_name_file_line_and_reason() {
    // Proves that every kind of bad plaza or rate file is refused with its file, line and reason.
    let plazas_ok = "plaza_id,plaza_name,km_post\na,A,0\nb,B,10.5\n";
    let rates_ok = "vehicle_class,rate_per_km,currency,min_toll\np1,0.45,CNY,5\n";
    let table = [
        ("plaza_id,plaza_name,km_post\na,A,0\na,B,1\n", rates_ok, r#"plazas.csv line 3: duplicate plaza_id "a" (first on line 2)"#),
        ("plaza_id,plaza_name,km_post\na,A,-1\n", rates_ok, r#"plazas.csv line 2: `km_post` is "-1": a kilometre post cannot be negative"#),
        ("plaza_id,plaza_name,km_post\na,A,ten\n", rates_ok, r#"plazas.csv line 2: `km_post` is "ten": expected a decimal number such as 2.50"#),
        ("plaza_id,km_post\na,0\n", rates_ok, "plazas.csv line 1: missing required column `plaza_name`"),
        (plazas_ok, "vehicle_class,rate_per_km,currency\np1,0.45,CNY\np9,1,CNY\n", r#"rates.csv line 3: `vehicle_class` is "p9": expected p1, p2, p3, p4, t1, t2, t3, t4, t5 or t6"#),
        (plazas_ok, "vehicle_class,rate_per_km,currency\np1,0.45,CNY\np1,0.5,CNY\n", r#"rates.csv line 3: duplicate vehicle_class "p1" (first on line 2)"#),
        (plazas_ok, "vehicle_class,rate_per_km,currency\np1,-0.45,CNY\n", r#"rates.csv line 2: `rate_per_km` is "-0.45": a rate cannot be negative"#),
        (plazas_ok, "vehicle_class,rate_per_km,currency,min_toll\np1,0.45,CNY,5.001\n", r#"rates.csv line 2: amount "5.001" has more decimal places than CNY allows"#),
        (plazas_ok, "vehicle_class,rate_per_km,currency\np1,0.45,CNY\nt1,0.5,JPY\n", "rates.csv line 3: currency JPY differs from CNY used on line 2; one table, one currency"),
        (plazas_ok, "vehicle_class,rate_per_km,currency\n", "rates.csv: no rates"),
    ];
    for (plazas, rates, expected) in table {
        let got = TollTable::from_csv(("plazas.csv", plazas), ("rates.csv", rates))
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), Some(expected));
    }
}

#[test]
fn shipped_road_files_load() {
    // Proves the shipped demo road, read from disk by the test (the crate does no I/O), loads;
    // errors name the file by the name given with the text.
    let dir = files::data_dir("demo-toll");
    let plazas = files::read(&dir, "plazas.csv").unwrap();
    let rates = files::read(&dir, "rates.csv").unwrap();
    let toll = TollTable::from_csv(("plazas.csv", &plazas), ("rates.csv", &rates)).unwrap();
    assert_eq!(toll.currency().code(), "CNY");
    assert_eq!(toll.rate(VehicleClass::P1).unwrap().rate_per_km, dec!(0.45));
    let empty = TollTable::from_csv(("plazas.csv", ""), ("rates.csv", &rates));
    assert_eq!(
        empty.err().map(|e| e.to_string()).as_deref(),
        Some("plazas.csv: file is empty (no header line)")
    );
}
