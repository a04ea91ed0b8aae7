//! Bad input, end to end: every malformed, oversized, out-of-range or unauthenticated request gets
//! a precise 4xx (status and machine-readable code) and writes nothing.

use reqwest::Method;
use serde_json::{json, Value};
use turnpike_client::demo::{METRO_OPERATOR, TOLL_OPERATOR};
use turnpike_client::{Answer, RiderDevice, TerminalClient};
use turnpike_tests::{both_backends, gate, tap, Env, ADMIN_TOKEN};
use turnpike_wire::api::{
    Decision, Direction, TapBatchRequest, TapRequest, TapResponse, VehicleClass, SEQUENCE_MAX,
};

const DAY_MS: u64 = 24 * 3600 * 1000;

use turnpike_tests::demo_stops as stops;

fn now() -> u64 {
    turnpike_tests::now_ms()
}

/// Asserts the precise status and error code of an answer.
#[track_caller]
fn assert_error(answer: &Answer, status: u16, code: &str, case: &str) {
    assert_eq!(
        (answer.status, answer.error_code().as_deref()),
        (status, Some(code)),
        "{case}: {}",
        String::from_utf8_lossy(&answer.body)
    );
}

fn message(answer: &Answer) -> String {
    answer
        .json::<Value>()
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn post_json(terminal: &TerminalClient, path: &str, body: &Value) -> Answer {
    terminal
        .post_bytes(path, "application/json", body.to_string().into_bytes())
        .await
        .unwrap()
}

fn entry(rider: &RiderDevice, sequence: u64) -> TapRequest {
    tap(sequence, Direction::Entry, rider.ride_code(now()).unwrap())
}

// Malformed, unknown-field, missing-field, wrong-type, oversized and non-JSON tap bodies each get
// their precise 4xx and write nothing.
both_backends!(tap_body_errors_are_precise, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[0], 1));
    let before = env.gw.written().await;
    let good = serde_json::to_value(entry(&rider, 1)).unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let json_cases = [
        (
            "a body cannot claim a terminal",
            with("terminal_id", json!(gate(&s[1], 1))),
            400,
            "unknown_field",
        ),
        (
            "missing ride_code",
            without("ride_code"),
            422,
            "invalid_body",
        ),
        ("missing sequence", without("sequence"), 422, "invalid_body"),
        (
            "sequence as a string",
            with("sequence", json!("1")),
            422,
            "invalid_body",
        ),
        (
            "negative sequence",
            with("sequence", json!(-1)),
            422,
            "invalid_body",
        ),
        (
            "fractional scan time",
            with("scanned_at_ms", json!(1.5)),
            422,
            "invalid_body",
        ),
        (
            "unknown vehicle class",
            with("vehicle_class", json!("p9")),
            422,
            "invalid_body",
        ),
        (
            "unknown direction",
            with("direction", json!("sideways")),
            422,
            "invalid_body",
        ),
        ("a JSON array", json!([good.clone()]), 422, "invalid_body"),
        (
            "20 KiB ride code",
            with("ride_code", json!("A".repeat(20 * 1024))),
            413,
            "body_too_large",
        ),
    ];
    for (case, body, status, code) in json_cases {
        assert_error(&post_json(&t, "/v1/taps", &body).await, status, code, case);
    }
    let raw_cases: [(&str, &str, Vec<u8>, u16, &str); 4] = [
        (
            "truncated JSON",
            "application/json",
            br#"{"sequence": 1, "direction": "#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "trailing garbage",
            "application/json",
            [good.to_string().as_bytes(), b"}"].concat(),
            400,
            "malformed_json",
        ),
        (
            "text/plain",
            "text/plain",
            good.to_string().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "no body at all",
            "application/json",
            Vec::new(),
            400,
            "malformed_json",
        ),
    ];
    for (case, content_type, body, status, code) in raw_cases {
        let answer = t.post_bytes("/v1/taps", content_type, body).await.unwrap();
        assert_error(&answer, status, code, case);
    }
    assert_eq!(
        env.gw.written().await,
        before,
        "refused bodies wrote nothing"
    );
    // Sequence 1 was never claimed: the well-formed tap is judged as new.
    let ok = t.tap(&entry(&rider, 1)).await.unwrap();
    assert_eq!(ok.decision, Decision::Approve, "{ok:?}");
    assert_eq!(env.gw.written().await.taps, before.taps + 1);
});

// Well-formed taps with out-of-range values (sequence, scan time, vehicle class on a metro gate)
// are 422s with their precise code, and none of them claims its sequence number.
both_backends!(tap_value_errors_are_precise, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[1], 1));
    let before = env.gw.written().await;
    let in_future = now() + 3600 * 1000;
    let too_old = now() - 8 * DAY_MS;
    let cases = [
        (
            "sequence 0",
            TapRequest {
                sequence: 0,
                ..entry(&rider, 1)
            },
            "sequence_out_of_range",
        ),
        (
            "sequence 2^53",
            TapRequest {
                sequence: SEQUENCE_MAX + 1,
                ..entry(&rider, 1)
            },
            "sequence_out_of_range",
        ),
        (
            "sequence u64::MAX",
            TapRequest {
                sequence: u64::MAX,
                ..entry(&rider, 1)
            },
            "sequence_out_of_range",
        ),
        (
            "scanned an hour in the future",
            TapRequest {
                scanned_at_ms: in_future,
                ride_code: rider.ride_code(in_future).unwrap(),
                ..entry(&rider, 1)
            },
            "scan_time_in_future",
        ),
        (
            "scanned 8 days ago",
            TapRequest {
                scanned_at_ms: too_old,
                ride_code: rider.ride_code(too_old).unwrap(),
                ..entry(&rider, 1)
            },
            "scan_time_too_old",
        ),
        (
            "vehicle class on a metro gate",
            TapRequest {
                vehicle_class: Some(VehicleClass::P1),
                ..entry(&rider, 1)
            },
            "vehicle_class_not_allowed",
        ),
    ];
    for (case, request, code) in cases {
        assert_error(&t.tap_raw(&request).await.unwrap(), 422, code, case);
        let batch = t
            .batch_raw(&TapBatchRequest {
                taps: vec![request],
            })
            .await
            .unwrap();
        assert_error(&batch, 422, code, &format!("{case} (batch)"));
    }
    assert_eq!(env.gw.written().await, before, "refused taps wrote nothing");
    // The largest sequence is accepted, and sequence 1 was never claimed by the refusals above.
    for sequence in [1, SEQUENCE_MAX] {
        let r = t
            .tap(&entry(&env.gw.rider().await, sequence))
            .await
            .unwrap();
        assert_eq!(r.decision, Decision::Approve, "{r:?}");
        assert_eq!(r.sequence, sequence);
    }
    assert_eq!(env.gw.written().await.taps, before.taps + 2);
});

// A batch must carry 1 to 500 taps in strictly increasing sequence order; otherwise it is a 422
// and nothing of it is stored.
both_backends!(batch_shape_errors_are_precise, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[2], 1));
    let before = env.gw.written().await;
    let code = rider.ride_code(now()).unwrap();
    let taps = |sequences: &[u64]| TapBatchRequest {
        taps: sequences
            .iter()
            .map(|&n| tap(n, Direction::Entry, code.clone()))
            .collect(),
    };
    let too_many: Vec<u64> = (1..=501).collect();
    let cases = [
        ("empty", taps(&[]), "batch_size_out_of_range"),
        ("501 taps", taps(&too_many), "batch_size_out_of_range"),
        ("decreasing", taps(&[2, 1]), "batch_out_of_order"),
        ("repeated sequence", taps(&[1, 2, 2]), "batch_out_of_order"),
        (
            "sequence 0 in the middle",
            taps(&[1, 0, 3]),
            "batch_out_of_order",
        ),
    ];
    for (case, batch, code) in cases {
        assert_error(&t.batch_raw(&batch).await.unwrap(), 422, code, case);
    }
    let not_a_list = post_json(&t, "/v1/taps/batch", &json!({"taps": {}})).await;
    assert_error(&not_a_list, 422, "invalid_body", "taps is an object");
    let unknown = post_json(
        &t,
        "/v1/taps/batch",
        &json!({"taps": [], "terminal_id": "x"}),
    )
    .await;
    assert_error(
        &unknown,
        400,
        "unknown_field",
        "a batch cannot claim a terminal",
    );
    assert_eq!(
        env.gw.written().await,
        before,
        "refused batches wrote nothing"
    );
});

// One invalid tap anywhere in a batch refuses the whole batch with the tap's precise code and
// index, and none of the batch's valid taps is stored.
both_backends!(batch_with_one_bad_tap_stores_none, |env: Env| async move {
    let s = stops();
    let t = env.gw.terminal(&gate(&s[3], 1));
    let riders = [
        env.gw.rider().await,
        env.gw.rider().await,
        env.gw.rider().await,
    ];
    let good = |i: usize| entry(&riders[i], i as u64 + 1);
    let before = env.gw.written().await;
    let future = now() + 3600 * 1000;
    let cases = [
        (
            "scan time in the future in the middle",
            vec![
                good(0),
                TapRequest {
                    scanned_at_ms: future,
                    ride_code: riders[1].ride_code(future).unwrap(),
                    ..good(1)
                },
                good(2),
            ],
            "scan_time_in_future",
            "taps[1]",
        ),
        (
            "vehicle class in the middle",
            vec![
                good(0),
                TapRequest {
                    vehicle_class: Some(VehicleClass::T1),
                    ..good(1)
                },
                good(2),
            ],
            "vehicle_class_not_allowed",
            "taps[1]",
        ),
        (
            "sequence 2^53 at the end",
            vec![
                good(0),
                good(1),
                TapRequest {
                    sequence: SEQUENCE_MAX + 1,
                    ..good(2)
                },
            ],
            "sequence_out_of_range",
            "taps[2]",
        ),
    ];
    for (case, taps, code, index) in cases {
        let answer = t.batch_raw(&TapBatchRequest { taps }).await.unwrap();
        assert_error(&answer, 422, code, case);
        assert!(
            message(&answer).starts_with(index),
            "{case}: {}",
            message(&answer)
        );
    }
    assert_eq!(
        env.gw.written().await,
        before,
        "no tap of a refused batch is stored"
    );
    // The same sequences are still free: the corrected batch is judged in full.
    let accepted = t.batch(vec![good(0), good(1), good(2)]).await.unwrap();
    assert_eq!(accepted.results.len(), 3);
    assert!(accepted
        .results
        .iter()
        .all(|r| r.decision == Decision::Approve));
    assert_eq!(env.gw.written().await.taps, before.taps + 3);
});

// A batch that reuses a stored sequence with a different body is a 409 and stores none of its
// other taps, whose sequences stay free.
both_backends!(
    batch_idempotency_conflict_stores_none,
    |env: Env| async move {
        let s = stops();
        let t = env.gw.terminal(&gate(&s[4], 1));
        let first = t.tap(&entry(&env.gw.rider().await, 5)).await.unwrap();
        assert_eq!(first.decision, Decision::Approve);
        let before = env.gw.written().await;
        let (a, b, c) = (
            env.gw.rider().await,
            env.gw.rider().await,
            env.gw.rider().await,
        );
        let batch = TapBatchRequest {
            taps: vec![entry(&a, 4), entry(&b, 5), entry(&c, 6)],
        };
        let conflict = t.batch_raw(&batch).await.unwrap();
        assert_error(
            &conflict,
            409,
            "idempotency_conflict",
            "batch reusing sequence 5",
        );
        assert_eq!(
            env.gw.written().await,
            before,
            "nothing of the batch is stored"
        );
        let single = t.tap_raw(&entry(&b, 5)).await.unwrap();
        assert_error(&single, 409, "idempotency_conflict", "single tap reusing 5");
        assert_eq!(env.gw.written().await, before);
        // Sequences 4 and 6 were not claimed: new bodies under them are judged, not conflicts.
        for (rider, sequence) in [(&b, 4), (&c, 6)] {
            let r: TapResponse = t.tap(&entry(rider, sequence)).await.unwrap();
            assert_eq!(r.decision, Decision::Approve, "{r:?}");
        }
        assert_eq!(env.gw.written().await.taps, before.taps + 2);
    }
);

fn admin_routes(rider: &RiderDevice, terminal: &str) -> Vec<(Method, String, Option<Value>)> {
    let op = json!({"operator_id": "intruder", "name": "x", "mode": "metro"});
    vec![
        (Method::POST, "/v1/admin/operators".into(), Some(op)),
        (Method::GET, "/v1/admin/operators".into(), None),
        (
            Method::PUT,
            format!("/v1/admin/operators/{METRO_OPERATOR}/fares"),
            Some(json!({"format": "demo_metro"})),
        ),
        (
            Method::POST,
            "/v1/admin/terminals".into(),
            Some(
                json!({"terminal_id": "intruder-1", "operator_id": METRO_OPERATOR, "location_id": stops()[0]}),
            ),
        ),
        (Method::GET, "/v1/admin/terminals".into(), None),
        (
            Method::POST,
            format!("/v1/admin/terminals/{terminal}/revoke"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/admin/terminals/{terminal}/reinstate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/admin/deny-list".into(),
            Some(json!({"kind": "rider", "subject_id": rider.rider_id, "reason": "x"})),
        ),
        (Method::GET, "/v1/admin/deny-list".into(), None),
        (
            Method::DELETE,
            format!("/v1/admin/deny-list/rider/{}", rider.rider_id),
            None,
        ),
        (Method::GET, "/v1/admin/issuer-keys".into(), None),
        (
            Method::POST,
            "/v1/admin/issuer-keys/stage".into(),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/admin/issuer-keys/rotate".into(),
            Some(json!({"force": true})),
        ),
    ]
}

async fn admin_state(env: &Env) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/admin/operators",
        "/v1/admin/terminals",
        "/v1/admin/deny-list",
        "/v1/admin/issuer-keys",
    ] {
        let a = env
            .gw
            .public_send(Method::GET, path, Some(ADMIN_TOKEN), None)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{path}");
        out.push(a.json().unwrap());
    }
    out
}

// Every admin route refuses a missing, wrong, truncated or rider token with 401 `unauthorized`,
// and none of the refused requests changes anything.
both_backends!(admin_routes_demand_the_admin_token, |env: Env| async move {
    let rider = env.gw.rider().await;
    let terminal = gate(&stops()[5], 1);
    let state = admin_state(&env).await;
    let longer = format!("{ADMIN_TOKEN}x");
    let shorter = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let tokens: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("wrong token", Some("not-the-admin-token")),
        ("token plus a character", Some(&longer)),
        ("token minus a character", Some(shorter)),
        ("a rider token", Some(&rider.token)),
    ];
    for (method, path, body) in admin_routes(&rider, &terminal) {
        for (case, token) in tokens {
            let answer = env
                .gw
                .public_send(method.clone(), &path, token, body.as_ref())
                .await
                .unwrap();
            assert_error(
                &answer,
                401,
                "unauthorized",
                &format!("{method} {path} with {case}"),
            );
        }
    }
    // The admin token under another scheme is not a bearer token.
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    let basic = http
        .get(format!("{}/v1/admin/operators", env.gw.public_base))
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(
        admin_state(&env).await,
        state,
        "refused requests changed nothing"
    );
    assert_eq!(env.gw.count("deny_list").await, 0);
});

async fn admin(env: &Env, method: Method, path: &str, body: Value) -> Answer {
    env.gw
        .public_send(method, path, Some(ADMIN_TOKEN), Some(&body))
        .await
        .unwrap()
}

// Invalid admin requests (unknown station, unknown operator, broken fare file, duplicate operator,
// invalid ids, bad money precision) get their precise 4xx and change nothing.
both_backends!(admin_input_errors_are_precise, |env: Env| async move {
    let s = stops();
    let state = admin_state(&env).await;
    let terminals = env.gw.count("terminals").await;
    let post = Method::POST;

    let at = |terminal_id: &str, operator_id: &str, location_id: &str| json!({"terminal_id": terminal_id, "operator_id": operator_id, "location_id": location_id});
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/terminals",
        at("gate-new-1", METRO_OPERATOR, "atlantis"),
    )
    .await;
    assert_error(&a, 422, "unknown_station", "unknown station");
    let plaza = turnpike_fares::demo_toll().plazas()[0].id.clone();
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/terminals",
        at("gate-new-1", METRO_OPERATOR, &plaza),
    )
    .await;
    assert_error(
        &a,
        422,
        "unknown_station",
        "a toll plaza is not a metro station",
    );
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/terminals",
        at("gate-new-1", TOLL_OPERATOR, &s[0]),
    )
    .await;
    assert_error(
        &a,
        422,
        "unknown_station",
        "a metro station is not a toll plaza",
    );
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/terminals",
        at("gate-new-1", "no-such-operator", &s[0]),
    )
    .await;
    assert_error(&a, 422, "network_not_configured", "unknown operator");
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/terminals",
        json!({"terminal_id": "gate-new-1", "operator_id": METRO_OPERATOR}),
    )
    .await;
    assert_error(&a, 422, "invalid_body", "terminal without location");

    let a = admin(
        &env,
        Method::PUT,
        "/v1/admin/operators/no-such-operator/fares",
        json!({"format": "demo_metro"}),
    )
    .await;
    assert_error(&a, 404, "not_found", "fares of an unknown operator");

    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/operators",
        json!({"operator_id": METRO_OPERATOR, "name": "again", "mode": "metro"}),
    )
    .await;
    assert_error(&a, 409, "operator_exists", "operator created twice");

    let long = "x".repeat(100);
    for bad in ["has space", long.as_str(), "", "slash/id", "ünïcode"] {
        let a = admin(
            &env,
            post.clone(),
            "/v1/admin/operators",
            json!({"operator_id": bad, "name": "n", "mode": "metro"}),
        )
        .await;
        assert_error(&a, 422, "invalid_id", &format!("operator id {bad:?}"));
        let a = admin(
            &env,
            post.clone(),
            "/v1/admin/terminals",
            at(bad, METRO_OPERATOR, &s[0]),
        )
        .await;
        assert_error(&a, 422, "invalid_id", &format!("terminal id {bad:?}"));
    }
    let a = admin(&env, post.clone(), "/v1/admin/operators", json!({"operator_id": "capped", "name": "n", "mode": "metro", "daily_cap": {"amount": "1.234", "currency": "CNY"}})).await;
    assert_error(&a, 422, "invalid_body", "daily cap with fractional fen");
    let a = admin(&env, post.clone(), "/v1/admin/operators", json!({"operator_id": "capped", "name": "n", "mode": "metro", "daily_cap": {"amount": 12, "currency": "CNY"}})).await;
    assert_error(&a, 422, "invalid_body", "daily cap as a JSON number");
    let a = admin(&env, post.clone(), "/v1/admin/operators", json!({"operator_id": "capped", "name": "n", "mode": "metro", "daily_cap": {"amount": "-5.00", "currency": "CNY"}})).await;
    assert_error(&a, 422, "invalid_daily_cap", "negative daily cap");
    let a = admin(&env, post.clone(), "/v1/admin/operators", json!({"operator_id": "capped", "name": "n", "mode": "metro", "currency": "CNY", "daily_cap": {"amount": "5.00", "currency": "USD"}})).await;
    assert_error(
        &a,
        422,
        "invalid_daily_cap",
        "daily cap in another currency",
    );
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/operators",
        json!({"operator_id": "capped", "name": "n", "mode": "bus"}),
    )
    .await;
    assert_error(&a, 422, "invalid_mode", "unknown mode");
    let a = admin(
        &env,
        post.clone(),
        "/v1/admin/operators",
        json!({"operator_id": "capped", "name": "n", "mode": "metro", "time_zone": "Mars/Olympus"}),
    )
    .await;
    assert_error(&a, 422, "unknown_time_zone", "unknown time zone");
    assert_eq!(
        admin_state(&env).await,
        state,
        "refused requests changed nothing"
    );

    // A fare matrix with one broken line is refused naming the file and line; nothing is stored.
    admin(
        &env,
        post.clone(),
        "/v1/admin/operators",
        json!({"operator_id": "matrix-metro", "name": "m", "mode": "metro"}),
    )
    .await;
    let mut matrix = include_str!("../../fares/data/demo-metro/fare_matrix.csv").to_string();
    if !matrix.ends_with('\n') {
        matrix.push('\n');
    }
    matrix.push_str(&format!("{},{},two yuan,CNY,1\n", s[0], s[1]));
    let line = matrix.lines().count();
    let a = admin(
        &env,
        Method::PUT,
        "/v1/admin/operators/matrix-metro/fares",
        json!({"format": "matrix", "files": {
            "stops.csv": include_str!("../../fares/data/demo-metro/stops.txt"),
            "fare_matrix.csv": matrix,
        }}),
    )
    .await;
    assert_error(&a, 422, "invalid_fare_data", "broken matrix line");
    let text = message(&a);
    assert!(
        text.contains("fare_matrix.csv") && text.contains(&format!("line {line}")),
        "{text}"
    );
    let a = admin(
        &env,
        Method::PUT,
        "/v1/admin/operators/matrix-metro/fares",
        json!({"format": "matrix", "files": {"stops.csv": include_str!("../../fares/data/demo-metro/stops.txt")}}),
    )
    .await;
    assert_error(&a, 422, "invalid_fare_data", "missing matrix file");
    assert!(message(&a).contains("fare_matrix.csv"), "{}", message(&a));
    let a = admin(
        &env,
        Method::PUT,
        "/v1/admin/operators/matrix-metro/fares",
        json!({"format": "demo_toll"}),
    )
    .await;
    assert_error(
        &a,
        422,
        "invalid_fare_data",
        "toll fares for a metro operator",
    );
    let ops: Value = admin_state(&env).await.remove(0);
    let matrix_op = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operator_id"] == "matrix-metro")
        .unwrap();
    assert!(
        matrix_op["fare_version"].is_null(),
        "no fare data stored: {matrix_op}"
    );
    assert_eq!(env.gw.count("terminals").await, terminals);
});

async fn rider_send(
    env: &Env,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    env.gw
        .public_send(method, path, token, body.as_ref())
        .await
        .unwrap()
}

// The rider API refuses missing or wrong tokens with 401, and invalid device keys, products and
// limits with their precise 422; no credential is issued for a refused enrolment.
both_backends!(rider_input_errors_are_precise, |env: Env| async move {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rider = env.gw.rider().await;
    let credentials = env.gw.count("credentials").await;
    let key = b64.encode(
        turnpike_wire::ridecode::DeviceKeyPair::generate()
            .unwrap()
            .public_key_compressed(),
    );
    let enrol =
        |key: &str, products: Value| json!({"device_public_key": key, "products": products});
    let good = enrol(&key, json!(["metro"]));
    let wrong = format!("rt_{}", b64.encode([7u8; 32]));
    for (case, token) in [
        ("no token", None),
        ("wrong token", Some(wrong.as_str())),
        ("the admin token", Some(ADMIN_TOKEN)),
    ] {
        let a = rider_send(
            &env,
            Method::POST,
            "/v1/riders/me/credentials",
            token,
            Some(good.clone()),
        )
        .await;
        assert_error(&a, 401, "unauthorized", &format!("enrol with {case}"));
        let a = rider_send(&env, Method::GET, "/v1/riders/me/journeys", token, None).await;
        assert_error(&a, 401, "unauthorized", &format!("journeys with {case}"));
    }
    // Authentication comes before the body: a bad body without a token is still a 401.
    let a = rider_send(
        &env,
        Method::POST,
        "/v1/riders/me/credentials",
        None,
        Some(json!({"nope": 1})),
    )
    .await;
    assert_error(&a, 401, "unauthorized", "bad body without a token");

    let mut off_curve = vec![0x02];
    off_curve.extend([0xff; 32]);
    let mut bad_prefix = vec![0x05];
    bad_prefix.extend([0x11; 32]);
    // An x coordinate in range whose curve equation has no square root: no point at all.
    let no_point = (1u8..=255)
        .map(|x| {
            let mut k = [0u8; 33];
            k[0] = 0x02;
            k[32] = x;
            k
        })
        .find(|k| turnpike_wire::ridecode::decompress_public_key(k).is_err())
        .expect("about half of all x have no point");
    let token = Some(rider.token.as_str());
    for (case, key) in [
        ("33 bytes, x without a point", b64.encode(no_point)),
        ("not base64", "not base64 at all!".to_string()),
        ("10 bytes", b64.encode([1u8; 10])),
        ("33 bytes not on the curve", b64.encode(&off_curve)),
        ("33 bytes with a bad prefix", b64.encode(&bad_prefix)),
        ("65 bytes not on the curve", b64.encode([4u8; 65])),
        ("empty", String::new()),
    ] {
        let a = rider_send(
            &env,
            Method::POST,
            "/v1/riders/me/credentials",
            token,
            Some(enrol(&key, json!(["metro"]))),
        )
        .await;
        assert_error(&a, 422, "invalid_device_public_key", case);
    }
    for (case, products) in [
        ("unknown product", json!(["metro", "bus"])),
        ("no product", json!([])),
    ] {
        let a = rider_send(
            &env,
            Method::POST,
            "/v1/riders/me/credentials",
            token,
            Some(enrol(&key, products)),
        )
        .await;
        assert_error(&a, 422, "unknown_product", case);
    }
    let a = rider_send(
        &env,
        Method::POST,
        "/v1/riders/me/credentials",
        token,
        Some(json!({"device_public_key": key, "rider_id": "1"})),
    )
    .await;
    assert_error(&a, 400, "unknown_field", "a body cannot name a rider");
    assert_eq!(
        env.gw.count("credentials").await,
        credentials,
        "no credential issued"
    );

    for limit in ["0", "10000", "-1", "501"] {
        let a = rider_send(
            &env,
            Method::GET,
            &format!("/v1/riders/me/journeys?limit={limit}"),
            token,
            None,
        )
        .await;
        assert_error(&a, 422, "limit_out_of_range", &format!("limit={limit}"));
    }
    let a = rider_send(
        &env,
        Method::GET,
        "/v1/riders/me/journeys?limit=ten",
        token,
        None,
    )
    .await;
    assert_error(&a, 400, "invalid_query", "limit=ten");
    let a = rider_send(
        &env,
        Method::GET,
        "/v1/riders/me/journeys?limit=500",
        token,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "limit=500 is the largest allowed");

    // The good enrolment works with the rider's own token.
    let a = rider_send(
        &env,
        Method::POST,
        "/v1/riders/me/credentials",
        token,
        Some(good),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(env.gw.count("credentials").await, credentials + 1);
});

// A rider token lists only that rider's journeys: B travels, A sees none and B sees B's.
both_backends!(riders_see_only_their_own_journeys, |env: Env| async move {
    let s = stops();
    let a = env.gw.rider().await;
    let b = env.gw.rider().await;
    let entry_gate = env.gw.terminal(&gate(&s[6], 1));
    let exit_gate = env.gw.terminal(&gate(&s[9], 2));
    let r = entry_gate.tap(&entry(&b, 1)).await.unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    let r = exit_gate
        .tap(&tap(1, Direction::Exit, b.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    let ca = env.gw.ca();
    let seen_by_a = a.journeys(&env.gw.public_base, &ca).await.unwrap();
    assert_eq!(seen_by_a.journeys.len(), 0, "A sees none of B's journeys");
    let seen_by_b = b.journeys(&env.gw.public_base, &ca).await.unwrap();
    assert_eq!(seen_by_b.journeys.len(), 1);
    assert_eq!(
        seen_by_b.journeys[0].entry_location_id.as_deref(),
        Some(s[6].as_str())
    );
    assert_eq!(
        seen_by_b.journeys[0].exit_location_id.as_deref(),
        Some(s[9].as_str())
    );
    // A query string cannot widen the scope.
    let widened = rider_send(
        &env,
        Method::GET,
        &format!("/v1/riders/me/journeys?rider_id={}", b.rider_id),
        Some(&a.token),
        None,
    )
    .await;
    assert_error(&widened, 400, "invalid_query", "rider_id in the query");
});
