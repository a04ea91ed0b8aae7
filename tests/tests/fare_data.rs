//! Fare data loaded through the admin API in each supported format prices journeys exactly like
//! the embedded demo networks, and a broken file is refused with its name and line.

use std::collections::BTreeMap;

use turnpike_tests::{booth, gate, tap, toll_exit, Db, Env};
use turnpike_wire::api::{Decision, Direction, VehicleClass};

macro_rules! metro_file {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../fares/data/demo-metro/", $name)),
        )
    };
}

fn gtfs_files() -> BTreeMap<String, String> {
    [
        metro_file!("stops.txt"),
        metro_file!("areas.txt"),
        metro_file!("stop_areas.txt"),
        metro_file!("networks.txt"),
        metro_file!("fare_products.txt"),
        metro_file!("fare_leg_rules.txt"),
        metro_file!("fare_transfer_rules.txt"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Creates operator `id` (named after it) running `mode` ("metro" or "toll").
async fn create_operator(env: &Env, id: &str, mode: &str) {
    env.gw
        .admin
        .post_ok(
            "/v1/admin/operators",
            &serde_json::json!({"operator_id": id, "name": id, "mode": mode}),
        )
        .await
        .unwrap();
}

async fn put_fares(env: &Env, operator: &str, body: serde_json::Value) -> turnpike_client::Answer {
    env.gw
        .admin
        .send(
            reqwest::Method::PUT,
            &format!("/v1/admin/operators/{operator}/fares"),
            Some(&body),
        )
        .await
        .unwrap()
}

async fn formats(db: Db) {
    // GTFS Fares v2, a station matrix and toll CSVs each load through the admin API, and taps at
    // terminals registered on them are priced as the demo networks price them.
    let Some(env) = Env::start(db).await else {
        return;
    };
    let demo = turnpike_fares::demo_metro();
    let stops: Vec<String> = demo.stops().iter().map(|s| s.id.clone()).collect();
    for (operator, body) in [
        (
            "gtfs-metro",
            serde_json::json!({"format": "gtfs", "network_id": "hz-metro", "files": gtfs_files()}),
        ),
        (
            "matrix-metro",
            serde_json::json!({"format": "matrix", "files": {
                "stops.csv": include_str!("../../fares/data/demo-metro/stops.txt"),
                "fare_matrix.csv": include_str!("../../fares/data/demo-metro/fare_matrix.csv"),
            }}),
        ),
    ] {
        create_operator(&env, operator, "metro").await;
        let loaded = put_fares(&env, operator, body).await;
        assert_eq!(
            loaded.status,
            201,
            "{}",
            String::from_utf8_lossy(&loaded.body)
        );
        // Re-home two demo gates onto this operator.
        for (stop, n) in [(&stops[1], 1), (&stops[16], 2)] {
            env.gw
                .admin
                .post_ok("/v1/admin/terminals", &serde_json::json!({"terminal_id": gate(stop, n), "operator_id": operator, "location_id": stop}))
                .await
                .unwrap();
        }
        let rider = env.gw.rider().await;
        let seq = turnpike_tests::now_ms();
        let entry = env
            .gw
            .terminal(&gate(&stops[1], 1))
            .tap(&tap(
                seq,
                Direction::Entry,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(entry.decision, Decision::Approve, "{operator}: {entry:?}");
        let exit = env
            .gw
            .terminal(&gate(&stops[16], 2))
            .tap(&tap(
                seq,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(
            exit.fare,
            Some(demo.price(&stops[1], &stops[16]).unwrap()),
            "{operator}: {exit:?}"
        );
    }

    // Toll CSVs, with a different rate for t2 than the demo's.
    create_operator(&env, "csv-toll", "toll").await;
    let plazas = include_str!("../../fares/data/demo-toll/plazas.csv");
    let rates =
        "vehicle_class,rate_per_km,currency,min_toll\np1,0.50,CNY,5.00\nt2,1.00,CNY,10.00\n";
    let loaded = put_fares(
        &env,
        "csv-toll",
        serde_json::json!({"format": "toll", "files": {"plazas.csv": plazas, "rates.csv": rates}}),
    )
    .await;
    assert_eq!(
        loaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    let toll = turnpike_fares::demo_toll();
    let p: Vec<String> = toll.plazas().iter().map(|p| p.id.clone()).collect();
    for (id, plaza) in [(booth(&p[0], "in"), &p[0]), (booth(&p[2], "out"), &p[2])] {
        env.gw.admin.post_ok("/v1/admin/terminals", &serde_json::json!({"terminal_id": id, "operator_id": "csv-toll", "location_id": plaza})).await.unwrap();
    }
    let driver = env.gw.rider().await;
    env.gw
        .terminal(&booth(&p[0], "in"))
        .tap(&tap(
            1,
            Direction::Entry,
            driver.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    let exit = env
        .gw
        .terminal(&booth(&p[2], "out"))
        .tap(&toll_exit(
            1,
            driver.ride_code(turnpike_tests::now_ms()).unwrap(),
            VehicleClass::T2,
        ))
        .await
        .unwrap();
    let km = toll.distance_km(&p[0], &p[2]).unwrap();
    let expected = turnpike_wire::Money::round_to_minor(
        km,
        turnpike_wire::Currency::CNY,
        turnpike_wire::money::Rounding::HalfUp,
    )
    .unwrap();
    let expected = if expected.to_minor() < 1000 {
        turnpike_wire::Money::from_minor(1000, turnpike_wire::Currency::CNY)
    } else {
        expected
    };
    assert_eq!(exit.fare, Some(expected), "{exit:?}");
    // A class without a rate in this table cannot be priced.
    let other = env.gw.rider().await;
    env.gw
        .terminal(&booth(&p[0], "in"))
        .tap(&tap(
            2,
            Direction::Entry,
            other.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    let unpriced = env
        .gw
        .terminal(&booth(&p[2], "out"))
        .tap(&toll_exit(
            2,
            other.ride_code(turnpike_tests::now_ms()).unwrap(),
            VehicleClass::T6,
        ))
        .await
        .unwrap();
    // A class the rates lack is no reason to hold a driver at the barrier: let through without a
    // price, the journey is settled as incomplete (docs/taps.md).
    assert_eq!(
        (unpriced.decision, unpriced.fare),
        (Decision::Approve, None),
        "{unpriced:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fare_formats_sqlite() {
    formats(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fare_formats_postgres() {
    formats(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_gtfs_is_refused_with_file_and_line() {
    // A stop_areas.txt naming an unknown area is a 422 that names the file and line, and the
    // previous fare data stays in force.
    let env = Env::start(Db::Sqlite).await.unwrap();
    create_operator(&env, "bad", "metro").await;
    let mut files = gtfs_files();
    let stop_areas = files.get_mut("stop_areas.txt").unwrap();
    stop_areas.push_str("no-such-area,xianghu\n");
    let line = stop_areas.lines().count();
    let answer = put_fares(
        &env,
        "bad",
        serde_json::json!({"format": "gtfs", "network_id": "hz-metro", "files": files}),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.error_code().as_deref(), Some("invalid_fare_data"));
    let message = String::from_utf8_lossy(&answer.body);
    assert!(
        message.contains("stop_areas.txt") && message.contains(&format!("line {line}")),
        "{message}"
    );
    let ops: serde_json::Value = serde_json::from_slice(
        &env.gw
            .admin
            .send::<()>(reqwest::Method::GET, "/v1/admin/operators", None)
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let bad = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operator_id"] == "bad")
        .unwrap();
    assert!(bad["fare_version"].is_null(), "nothing was stored: {bad}");
}

/// Proves no network size aborts the gateway. A station matrix of 600,000 stops (a 9 MB upload,
/// under the body limit) with two priced pairs — it used to allocate a 3.6 × 10¹¹-cell array and
/// abort the process — loads in memory linear in its rows and prices both pairs; a GTFS
/// network of 100,000 stops in one area (once refused: it was priced pairwise) loads and is
/// priced by rule; and the gateway goes on judging taps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_networks_never_abort_the_gateway() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    for operator in ["huge-matrix", "huge-gtfs"] {
        create_operator(&env, operator, "metro").await;
    }
    let stops_n = 600_000;
    let mut stops = String::from("stop_id,stop_name\n");
    for i in 0..stops_n {
        stops.push_str(&format!("s{i},S{i}\n"));
    }
    let matrix = "from_stop_id,to_stop_id,amount,currency,symmetric\n\
                  s0,s599999,4.00,CNY,1\n\
                  s12345,s54321,2.00,CNY,0\n";
    let loaded = put_fares(
        &env,
        "huge-matrix",
        serde_json::json!({"format": "matrix", "files": {
            "stops.csv": stops, "fare_matrix.csv": matrix,
        }}),
    )
    .await;
    assert_eq!(
        loaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    let network = env.gw.state.networks.get("huge-matrix").unwrap();
    assert_eq!(network.metro_fare("s599999", "s0").unwrap().to_minor(), 400);
    assert_eq!(
        network.metro_fare("s12345", "s54321").unwrap().to_minor(),
        200
    );
    assert_eq!(network.metro_fare("s54321", "s12345"), None);

    // GTFS: one area holding 100,000 stops, one rule pricing any leg in it.
    let n = 100_000;
    let mut stops = String::from("stop_id,stop_name,location_type\n");
    let mut stop_areas = String::from("area_id,stop_id\n");
    for i in 0..n {
        stops.push_str(&format!("g{i},G{i},0\n"));
        stop_areas.push_str(&format!("all,g{i}\n"));
    }
    let files = serde_json::json!({
        "stops.txt": stops,
        "areas.txt": "area_id,area_name\nall,All\n",
        "stop_areas.txt": stop_areas,
        "fare_products.txt": "fare_product_id,fare_product_name,amount,currency\nflat,Flat,2.00,CNY\n",
        "fare_leg_rules.txt": "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id\nflat,,all,all,flat\n",
    });
    let loaded = put_fares(
        &env,
        "huge-gtfs",
        serde_json::json!({"format": "gtfs", "network_id": "", "files": files}),
    )
    .await;
    assert_eq!(
        loaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    let network = env.gw.state.networks.get("huge-gtfs").unwrap();
    assert_eq!(network.metro_fare("g0", "g99999").unwrap().to_minor(), 200);
    // Still serving: a demo tap is judged.
    let rider = env.gw.rider().await;
    let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let answer = env
        .gw
        .terminal(&turnpike_tests::gate(&turnpike_tests::demo_stops()[0], 1))
        .tap(&turnpike_tests::tap(
            1,
            turnpike_wire::api::Direction::Entry,
            code,
        ))
        .await
        .unwrap();
    assert_eq!(answer.decision, turnpike_wire::api::Decision::Approve);
}

/// Proves the periodic reload keeps a network whose fare data and operator did not change (the
/// very same table in memory: nothing re-read or re-parsed), and rebuilds it when a new version
/// is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rebuilds_only_what_changed() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let networks = &env.gw.state.networks;
    let before = networks.get("hz-metro").unwrap();
    networks.reload(&env.gw.state.store).await.unwrap();
    let kept = networks.get("hz-metro").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&before, &kept),
        "an unchanged network is kept as it is"
    );
    let loaded = put_fares(
        &env,
        "hz-metro",
        serde_json::json!({"format": "gtfs", "network_id": "hz-metro", "files": gtfs_files()}),
    )
    .await;
    assert_eq!(
        loaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    networks.reload(&env.gw.state.store).await.unwrap();
    let after = networks.get("hz-metro").unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&before, &after),
        "a new version is built"
    );
    assert!(after.fare_version > before.fare_version);
}

/// A small Fares v2 feed in `currency` with two networks (metro, bus), adult/concession riders,
/// an app medium and an extra `agency_note` column on the leg rules.
fn v2_files(currency: &str) -> serde_json::Value {
    serde_json::json!({
        "stops.txt": "stop_id,stop_name\nwulin,Wulin Square\nlongxiangqiao,Longxiangqiao\n",
        "areas.txt": "area_id\ncore\n",
        "stop_areas.txt": "area_id,stop_id\ncore,wulin\ncore,longxiangqiao\n",
        "rider_categories.txt": "rider_category_id,is_default_fare_category\nadult,1\nconcession,0\n",
        "fare_media.txt": "fare_media_id,fare_media_type\napp,4\n",
        "fare_products.txt": format!("fare_product_id,amount,currency,rider_category_id,fare_media_id\nride,3.00,{currency},adult,app\nride,1.50,{currency},concession,\nbus,2.00,{currency},,\n"),
        "fare_leg_rules.txt": "network_id,from_area_id,to_area_id,fare_product_id,agency_note\nmetro,core,core,ride,x\nbus,,,bus,\n",
    })
}

/// Proves the fare upload's Fares v2 answers: a feed with two networks and no `network_id` is a
/// 422 listing both; with one, it loads (201) with its warnings (file, line, column) in the
/// answer and prices for the configured rider category; an unknown category, a feed in another
/// currency than the operator's, and a matrix past `stops_max` are 422s that say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fares_v2_upload_answers_warnings_and_refuses_precisely() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    create_operator(&env, "v2", "metro").await;

    let refused = put_fares(
        &env,
        "v2",
        serde_json::json!({"format": "gtfs", "files": v2_files("CNY")}),
    )
    .await;
    assert_eq!(refused.status, 422);
    let message = String::from_utf8_lossy(&refused.body);
    assert!(
        message.contains("network_id") && message.contains("bus") && message.contains("metro"),
        "{message}"
    );

    let loaded = put_fares(
        &env,
        "v2",
        serde_json::json!({"format": "gtfs", "network_id": "metro", "rider_category_id": "concession", "files": v2_files("CNY")}),
    )
    .await;
    assert_eq!(
        loaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&loaded.body)
    );
    let answer: serde_json::Value = serde_json::from_slice(&loaded.body).unwrap();
    let warnings = answer["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w["file"] == "fare_leg_rules.txt"
            && w["line"] == 1
            && w["column"] == "agency_note"),
        "{answer}"
    );
    let network = env.gw.state.networks.get("v2").unwrap();
    assert_eq!(
        network
            .metro_fare("wulin", "longxiangqiao")
            .unwrap()
            .to_minor(),
        150
    );

    let refused = put_fares(
        &env,
        "v2",
        serde_json::json!({"format": "gtfs", "network_id": "metro", "rider_category_id": "student", "files": v2_files("CNY")}),
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(String::from_utf8_lossy(&refused.body).contains("student"));

    let refused = put_fares(
        &env,
        "v2",
        serde_json::json!({"format": "gtfs", "network_id": "metro", "files": v2_files("USD")}),
    )
    .await;
    assert_eq!(refused.status, 422);
    let message = String::from_utf8_lossy(&refused.body);
    assert!(
        message.contains("USD") && message.contains("CNY"),
        "{message}"
    );

    // 1,000,001 stops (about 11 MB of JSON, under the 16 MiB body limit).
    let mut stops = String::with_capacity(12 << 20);
    stops.push_str("stop_id,stop_name\n");
    for i in 0..=1_000_000u32 {
        stops.push_str(&format!("{i},x\n"));
    }
    let refused = put_fares(
        &env,
        "v2",
        serde_json::json!({"format": "matrix", "files": {
            "stops.csv": stops, "fare_matrix.csv": "from_stop_id,to_stop_id,amount,currency\n0,1,2.00,CNY\n",
        }}),
    )
    .await;
    assert_eq!(refused.status, 422);
    let message = String::from_utf8_lossy(&refused.body);
    assert!(message.contains("stops_max"), "{message}");
    assert!(message.contains("\"fare_limit_exceeded\""), "{message}");
}
