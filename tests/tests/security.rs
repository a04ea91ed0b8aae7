//! What hostile clients found at 600cd9c (issue 14), each refused now with a precise error and
//! nothing written: unauthenticated notifications, oversized and malformed registrations,
//! positional JSON, admin input outside the documented rules, floods past a client's budget,
//! concurrent admin writers on SQLite, slow clients on the ops listener, certificates with two
//! common names; a rider's deny-list answer shows that rider's entries only. Wallet binding has
//! its own file (`wallet_binding.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike_client::Answer;
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{gate, on_both, tap, Db, Env};
use turnpike_wire::api::Direction;

fn now() -> u64 {
    turnpike_tests::now_ms()
}

/// A client of the public listener speaking only HTTP/1.1.
fn http1_client(env: &Env) -> reqwest::Client {
    let mut config = turnpike_client::tls::client_config(&env.gw.ca(), None).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .http1_only()
        .build()
        .unwrap()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    Answer {
        status,
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// Item 2: proves unsigned, badly signed, empty and garbage notifications are refused without
/// a single row written (300 of them, as the attack did), while a genuine one is still
/// recorded.
async fn bad_notifications_write_nothing(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let bodies: [&[u8]; 6] = [
        b"",
        b"garbage",
        b"notify_id=n1&out_trade_no=M1_1&trade_status=TRADE_SUCCESS&notify_type=trade_status_sync",
        b"notify_id=n2&out_trade_no=M1_1&sign_type=RSA2&sign=Zm9yZ2Vk&app_id=2021000000000001",
        b"notify_id=n3&notify_id=n4&sign=x",
        b"%ZZ=%ZZ&&&===",
    ];
    for i in 0..300 {
        let (status, body) = p.post_notify(bodies[i % bodies.len()].to_vec()).await;
        assert_eq!(
            (status, body.as_str()),
            (400, "fail"),
            "body {}",
            i % bodies.len()
        );
    }
    assert_eq!(p.env.gw.count("provider_notifications").await, 0);
}
on_both!(bad_notifications_write_nothing);

/// Item 3: proves a registration's body is read within its 4 KiB limit and checked before a
/// rider is written: 10 MB over HTTP/1.1 and over HTTP/2 gets 413, `{{{` 400, unknown fields
/// 400, and none of them writes a rider; an empty body or `{}` still registers.
async fn registration_checks_its_body_first(db: Db) {
    let Some(env) = Env::start(db).await else {
        return;
    };
    let url = format!("{}/v1/riders", env.gw.public_base);
    let big = vec![b' '; 10 * 1024 * 1024];
    let h1 = http1_client(&env);
    let h2 = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    for (name, client) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        // The server may close the stream before the whole body is sent; then the client
        // sees an error instead of the 413. Either way nothing may be written.
        if let Ok(response) = response {
            let a = answer(response).await;
            assert_eq!(
                (a.status, a.error_code().as_deref()),
                (413, Some("body_too_large")),
                "{name}"
            );
        }
        assert_eq!(env.gw.count("riders").await, 0, "{name}");
    }
    for (body, status, code) in [
        (&b"{{{"[..], 400, "malformed_json"),
        (br#"{"name":"x"}"#, 400, "unknown_field"),
        (b"[]", 422, "invalid_body"),
    ] {
        let a = answer(
            h2.post(&url)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status, a.error_code().as_deref()),
            (status, Some(code)),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let text = answer(
        h2.post(&url)
            .header("content-type", "text/plain")
            .body("hi")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(text.status, 415);
    assert_eq!(env.gw.count("riders").await, 0);
    assert_eq!(
        answer(h2.post(&url).send().await.unwrap()).await.status,
        201
    );
    let empty_object = h2.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(empty_object.status(), 201);
    assert_eq!(env.gw.count("riders").await, 2);
}
on_both!(registration_checks_its_body_first);

/// Proves `GET /v1/riders/me/deny-list` shows a rider the entries naming them or their devices,
/// with the reasons, and never another rider's: A (listed as a rider and by its device) sees
/// both; B, listed nowhere, is told it is not denied; without a token the answer is 401.
async fn a_rider_sees_only_their_own_deny_list(db: Db) {
    let Some(env) = Env::start(db).await else {
        return;
    };
    let gw = &env.gw;
    let (a, b) = (gw.rider().await, gw.rider().await);
    let a_credential = a.credential.body().credential_id.to_string();
    let listed = [
        ("credential", a_credential.as_str(), "phone reported lost"),
        ("rider", a.rider_id.as_str(), "fraud review"),
    ];
    for (kind, id, reason) in listed {
        gw.admin
            .post_ok(
                "/v1/admin/deny-list",
                &json!({"kind": kind, "subject_id": id, "reason": reason}),
            )
            .await
            .unwrap();
    }
    let path = "/v1/riders/me/deny-list";
    let seen = |token: &str| {
        let token = token.to_string();
        async move {
            let a = gw
                .public_send(reqwest::Method::GET, path, Some(&token), None)
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            serde_json::from_slice::<Value>(&a.body).unwrap()
        }
    };
    let a_view = seen(&a.token).await;
    assert_eq!(a_view["denied"], true);
    let mut entries: Vec<(String, String, String)> = a_view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("kind"), s("subject_id"), s("reason"))
        })
        .collect();
    entries.sort();
    let expected: Vec<(String, String, String)> = listed
        .iter()
        .map(|(k, i, r)| (k.to_string(), i.to_string(), r.to_string()))
        .collect();
    assert_eq!(entries, expected);
    assert_eq!(
        seen(&b.token).await,
        json!({"denied": false, "entries": []})
    );
    let anonymous = gw
        .public_send(reqwest::Method::GET, path, None, None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

on_both!(a_rider_sees_only_their_own_deny_list);

/// Item 4: proves a tap, a batch and an admin body given as positional arrays are refused
/// (422 `invalid_body`) and write nothing: only named fields are JSON structures here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_json_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let rider = env.gw.rider().await;
    let terminal = env.gw.terminal(&gate("xianghu", 1));
    let code = rider.ride_code(now()).unwrap();
    let positional = json!([970001, "entry", code, now()]);
    let batch = json!({ "taps": [[970002, "entry", code, now()]] });
    for (path, body) in [("/v1/taps", &positional), ("/v1/taps/batch", &batch)] {
        let a = terminal
            .post_bytes(path, "application/json", serde_json::to_vec(body).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.error_code().as_deref()),
            (422, Some("invalid_body")),
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            String::from_utf8_lossy(&a.body).contains("invalid type: sequence"),
            "{path}"
        );
    }
    let admin = env
        .gw
        .admin
        .post("/v1/admin/deny-list", &json!(["rider", "5", "test"]))
        .await
        .unwrap();
    assert_eq!(admin.status, 422);
    assert_eq!(
        env.gw.written().await,
        turnpike_tests::Written {
            taps: 0,
            journeys: 0,
            code_uses: 0
        }
    );
    assert_eq!(env.gw.count("deny_list").await, 0);
    // The same tap with named fields is taken.
    let ok = terminal
        .tap(&tap(970_003, Direction::Entry, code))
        .await
        .unwrap();
    assert_eq!(ok.decision, turnpike_wire::api::Decision::Approve);
}

/// Item 5: proves admin identifiers, names, fare-file stop ids and deny-list ids outside the
/// documented rules are refused with a precise 422 and nothing is stored.
async fn admin_input_rules(db: Db) {
    let Some(env) = Env::start(db).await else {
        return;
    };
    let admin = &env.gw.admin;
    let operators_before = env.gw.state.store.operators().await.unwrap().len();
    for (id, name, code) in [
        ("op\u{0}x", "Operator", "invalid_id"),
        ("op\u{202E}x", "Operator", "invalid_id"),
        ("оp-cyrillic", "Operator", "invalid_id"),
        ("op-a", "Metro\u{0}", "invalid_name"),
        ("op-b", "Metro \u{202E}ortem", "invalid_name"),
        ("op-c", "Hangzhou Metrо", "invalid_name"),
        ("op-d", " Padded", "invalid_name"),
    ] {
        let a = admin
            .post(
                "/v1/admin/operators",
                &json!({"operator_id": id, "name": name, "mode": "metro"}),
            )
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.error_code().as_deref()),
            (422, Some(code)),
            "{id:?} {name:?}"
        );
    }
    assert_eq!(
        env.gw.state.store.operators().await.unwrap().len(),
        operators_before
    );

    let stops = |id: &str| format!("stop_id,stop_name,track_km\nxianghu,Xianghu,0\n{id},Bad,1.5\n");
    for bad in ["wu\u{0}lin", "wu\u{202E}lin", "wulin sq", "wulіn"] {
        let a = admin
            .send(
                reqwest::Method::PUT,
                "/v1/admin/operators/hz-metro/fares",
                Some(&json!({"format": "matrix", "files": {
                    "stations.csv": stops(bad),
                }})),
            )
            .await
            .unwrap();
        assert_eq!(
            a.status,
            422,
            "{bad:?}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    let ops = admin
        .send(reqwest::Method::GET, "/v1/admin/operators", None::<&Value>)
        .await
        .unwrap();
    let ops: Value = ops.json().unwrap();
    let metro = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operator_id"] == "hz-metro")
        .unwrap();
    assert_eq!(metro["fare_version"], 1, "no fare upload was stored");

    for subject in ["+5", "007", "-5", " 5", "5.0", "99999999999999999999"] {
        let a = admin
            .post(
                "/v1/admin/deny-list",
                &json!({"kind": "rider", "subject_id": subject, "reason": "test"}),
            )
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.error_code().as_deref()),
            (422, Some("invalid_id")),
            "{subject:?}"
        );
    }
    let bad_reason = admin
        .post(
            "/v1/admin/deny-list",
            &json!({"kind": "rider", "subject_id": "5", "reason": "fraud\u{202E}"}),
        )
        .await
        .unwrap();
    assert_eq!(bad_reason.error_code().as_deref(), Some("invalid_reason"));
    assert_eq!(env.gw.count("deny_list").await, 0);
    let terminal = admin
        .post(
            "/v1/admin/terminals",
            &json!({"terminal_id": "gate-x", "operator_id": "hz-metro", "location_id": "xiang\u{0}hu"}),
        )
        .await
        .unwrap();
    assert_eq!(terminal.status, 422);
}
on_both!(admin_input_rules);

/// Item 6: proves concurrent admin writers are serialized, not failed: 8 key rotations and 10
/// fare uploads at once all succeed (no 503 `storage_unavailable`), every upload gets a version
/// of its own, and the key ring stays whole (one current key).
async fn concurrent_admin_writes_succeed(db: Db) {
    let Some(env) = Env::start(db).await else {
        return;
    };
    let admin = env.gw.admin.clone();
    let mut rotations = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let admin = admin.clone();
        rotations.spawn(async move {
            admin
                .post("/v1/admin/issuer-keys/rotate", &json!({"force": true}))
                .await
                .unwrap()
        });
    }
    let mut uploads = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let admin = admin.clone();
        uploads.spawn(async move {
            admin
                .send(
                    reqwest::Method::PUT,
                    "/v1/admin/operators/hz-metro/fares",
                    Some(&json!({"format": "demo_metro"})),
                )
                .await
                .unwrap()
        });
    }
    while let Some(a) = rotations.join_next().await {
        let a = a.unwrap();
        assert_eq!(
            a.status,
            201,
            "rotation: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    let mut versions = Vec::new();
    while let Some(a) = uploads.join_next().await {
        let a = a.unwrap();
        assert_eq!(
            a.status,
            201,
            "upload: {}",
            String::from_utf8_lossy(&a.body)
        );
        versions.push(a.json::<Value>().unwrap()["version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..=11).collect::<Vec<_>>());
    let keys = admin
        .send(
            reqwest::Method::GET,
            "/v1/admin/issuer-keys",
            None::<&Value>,
        )
        .await
        .unwrap();
    let keys: Value = keys.json().unwrap();
    let count = |status: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .filter(|k| k["status"] == status)
            .count()
    };
    assert_eq!(count("current"), 1, "{keys}");
    assert!(count("previous") <= 1, "{keys}");
}
on_both!(concurrent_admin_writes_succeed);

/// Rate limits: proves a terminal, a rider and a registering address past their budgets get 429
/// with `Retry-After` and change nothing, while other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_their_budget_get_429() {
    let env = Env::start_with(Db::Sqlite, |c| {
        c.limits.terminal_requests_per_s = 1;
        c.limits.terminal_burst = 5;
        c.limits.rider_requests_per_s = 1;
        c.limits.rider_burst = 5;
        c.limits.registrations_per_s = 1;
        c.limits.registration_burst = 3;
    })
    .await
    .unwrap();
    let flooder = env.gw.terminal(&gate("xianghu", 1));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(flooder.get("/v1/terminal/keys").await.unwrap());
    }
    let limited: Vec<&Answer> = statuses.iter().filter(|a| a.status == 429).collect();
    assert!(
        limited.len() >= 2,
        "{:?}",
        statuses.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(limited[0].error_code().as_deref(), Some("rate_limited"));
    assert_eq!(
        env.gw
            .terminal(&gate("xianghu", 2))
            .get("/v1/terminal/keys")
            .await
            .unwrap()
            .status,
        200,
        "another terminal is served"
    );
    // A limited tap is not stored.
    let rider_code = {
        let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
        let r = http
            .post(format!("{}/v1/riders", env.gw.public_base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        http
    };
    let taps_before = env.gw.count("taps").await;
    let _ = flooder
        .tap_raw(&tap(1, Direction::Entry, "x".into()))
        .await
        .unwrap();
    assert_eq!(env.gw.count("taps").await, taps_before);

    // Registrations from one address: the burst (3, one used above), then 429.
    let url = format!("{}/v1/riders", env.gw.public_base);
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(rider_code.post(&url).send().await.unwrap());
    }
    let retry_after = codes
        .iter()
        .find(|r| r.status() == 429)
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "{:?}",
        codes.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert_eq!(
        env.gw.count("riders").await,
        3,
        "limited registrations wrote nothing"
    );

    // A rider's budget is the rider's own.
    let token: Value = serde_json::from_slice(
        &answer(
            turnpike_client::tls::http_client(&env.gw.ca(), None)
                .unwrap()
                .post(&url)
                .send()
                .await
                .unwrap(),
        )
        .await
        .body,
    )
    .unwrap_or(Value::Null);
    if let Some(token) = token["token"].as_str() {
        let mut seen = Vec::new();
        for _ in 0..8 {
            let a = env
                .gw
                .public_send(
                    reqwest::Method::GET,
                    "/v1/riders/me/journeys",
                    Some(token),
                    None,
                )
                .await
                .unwrap();
            seen.push(a.status);
        }
        assert!(seen.contains(&429), "{seen:?}");
    }
}

/// Item 7: proves the ops listener drops a client that never finishes its request head, as
/// the TLS listeners do (10 s), instead of keeping it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_listener_drops_slow_clients() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let ops = env.gw.ops_base.strip_prefix("http://").unwrap().to_string();
    let mut waits = Vec::new();
    for sent in [&b""[..], b"GET /metrics HTTP/1.1\r\nHost: x\r\n"] {
        let mut tcp = tokio::net::TcpStream::connect(&ops).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut received = Vec::new();
            tokio::time::timeout(Duration::from_secs(25), tcp.read_to_end(&mut received))
                .await
                .is_ok()
        }));
    }
    for wait in waits {
        assert!(
            wait.await.unwrap(),
            "the ops connection is still open after 25 s"
        );
    }
    // A prompt client is still served.
    let metrics = reqwest::get(format!("{}/healthz", env.gw.ops_base))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}

/// Item 8: proves a client certificate from the operator CA that carries two common names is
/// refused at the handshake (it named an active terminal first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_two_common_names_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let ca = env.gw.dev_ca();
    let first = gate("xianghu", 1);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, first.as_str());
    // The CN attribute again (OID 2.5.4.3), which rcgen keeps as a second entry.
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]),
        "gate-other-9",
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let (pem, key) = ca.sign_client(params).unwrap();
    let dir = env.scratch.0.join("two-cn");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.pem"), pem).unwrap();
    std::fs::write(dir.join("c.key"), key).unwrap();
    let client = env
        .gw
        .terminal_with(&dir.join("c.pem"), &dir.join("c.key"))
        .unwrap();
    let rider = env.gw.rider().await;
    let result = client
        .tap_raw(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await;
    assert!(
        result.is_err(),
        "a two-CN certificate got an HTTP answer: {:?}",
        result.map(|a| a.status)
    );
    assert_eq!(env.gw.count("taps").await, 0);
    // The same CA's ordinary certificate for that terminal still works.
    assert_eq!(
        env.gw
            .terminal(&first)
            .get("/v1/terminal/keys")
            .await
            .unwrap()
            .status,
        200
    );
    let _ = Arc::new(());
}
