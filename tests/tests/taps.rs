//! The tap rules end to end: real gateway, real database (SQLite and PostgreSQL), real mutual TLS.

use turnpike_tests::{booth, both_backends, gate, tap, toll_exit, Env};
use turnpike_wire::api::{Decision, Direction, TapResponse, VehicleClass};

use turnpike_tests::demo_stops as stops;

fn plazas() -> Vec<String> {
    turnpike_fares::demo_toll()
        .plazas()
        .iter()
        .map(|p| p.id.clone())
        .collect()
}

fn approved(r: &TapResponse) -> bool {
    r.decision == Decision::Approve
}

fn declined(r: &TapResponse, reason: &str) -> bool {
    r.decision == Decision::Decline && r.reason.as_deref() == Some(reason)
}

// An entry then an exit pair into one journey priced from the fare table, visible to the rider.
both_backends!(
    metro_journey_is_priced_from_the_fare_table,
    |env: Env| async move {
        let s = stops();
        let rider = env.gw.rider().await;
        let entry = env
            .gw
            .terminal(&gate(&s[0], 1))
            .tap(&tap(
                1,
                Direction::Entry,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert!(approved(&entry), "{entry:?}");
        let exit = env
            .gw
            .terminal(&gate(&s[12], 2))
            .tap(&tap(
                1,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert!(approved(&exit), "{exit:?}");
        let expected = turnpike_fares::demo_metro().price(&s[0], &s[12]).unwrap();
        assert_eq!(exit.fare, Some(expected));
        assert_eq!(exit.charge, Some(expected));
        assert_eq!(exit.journey_id, entry.journey_id);
        let list = rider
            .journeys(&env.gw.public_base, &env.gw.ca())
            .await
            .unwrap();
        assert_eq!(list.journeys.len(), 1);
        assert_eq!(list.journeys[0].fare, Some(expected));
        assert_eq!(list.journeys[0].status, "closed");
    }
);

// A code is consumed per direction: shown again for the same direction at any gate it is a
// replay; the entry code may still serve the exit (a phone that did not refresh).
both_backends!(replay_rules, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let a = env.gw.terminal(&gate(&s[1], 1));
    let b = env.gw.terminal(&gate(&s[1], 2));
    assert!(approved(
        &a.tap(&tap(1, Direction::Entry, code.clone()))
            .await
            .unwrap()
    ));
    let journeys_before = env.gw.count("journeys").await;
    let again = b
        .tap(&tap(1, Direction::Entry, code.clone()))
        .await
        .unwrap();
    assert!(declined(&again, "replay"), "{again:?}");
    assert_eq!(
        env.gw.count("journeys").await,
        journeys_before,
        "a replay writes no journey"
    );
    // The same code at the exit (quick exit with the entry code still displayed) is accepted once.
    let exit = env
        .gw
        .terminal(&gate(&s[1], 2))
        .tap(&tap(2, Direction::Exit, code.clone()))
        .await
        .unwrap();
    assert!(approved(&exit), "{exit:?}");
    let exit_again = env
        .gw
        .terminal(&gate(&s[2], 1))
        .tap(&tap(1, Direction::Exit, code))
        .await
        .unwrap();
    assert!(declined(&exit_again, "replay"), "{exit_again:?}");
});

// A second entry without an exit is declined (pass-back) and changes nothing.
both_backends!(pass_back_is_declined, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[2], 1));
    assert!(approved(
        &t.tap(&tap(
            1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap()
        ))
        .await
        .unwrap()
    ));
    let codes_before = env.gw.count("code_uses").await;
    let second = env
        .gw
        .terminal(&gate(&s[3], 1))
        .tap(&tap(
            1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(declined(&second, "pass_back"), "{second:?}");
    assert_eq!(
        env.gw.count("code_uses").await,
        codes_before,
        "a declined tap consumes no code"
    );
    assert_eq!(env.gw.count("journeys").await, 1);
});

// An exit with no known entry lets the rider out: approved without a journey, then a journey of
// its own at the policy's price (the maximum fare), collected only after
// `journeys.incomplete_after_ms` — in case the entry is still in an offline gate's buffer.
both_backends!(
    exit_without_entry_lets_the_rider_out,
    |env: Env| async move {
        let s = stops();
        let rider = env.gw.rider().await;
        let r = env
            .gw
            .terminal(&gate(&s[4], 1))
            .tap(&tap(
                1,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(r.decision, Decision::Approve, "{r:?}");
        assert_eq!((r.journey_id.as_ref(), r.fare), (None, None), "{r:?}");
        assert_eq!(env.gw.count("code_uses").await, 1);
        // The rider is re-paired right after the gate got its answer.
        let rider_id: i64 = rider.rider_id.parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let journeys = loop {
            let journeys = env
                .gw
                .state
                .store
                .journeys_of_rider(rider_id, 10)
                .await
                .unwrap();
            if !journeys.is_empty() || std::time::Instant::now() > deadline {
                break journeys;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(journeys.len(), 1, "{journeys:?}");
        let j = &journeys[0];
        let network = env
            .gw
            .state
            .networks
            .get(turnpike_client::demo::METRO_OPERATOR)
            .unwrap();
        assert_eq!(
            (
                j.entry_terminal_id.is_none(),
                j.exit_location_id.as_deref(),
                j.close_reason.as_deref(),
                j.fare_minor
            ),
            (
                true,
                Some(s[4].as_str()),
                Some("incomplete"),
                Some(network.max_fare().to_minor())
            )
        );
        let charges = env
            .gw
            .state
            .store
            .charges(Some(rider_id), None, 10)
            .await
            .unwrap();
        assert_eq!(charges.len(), 1);
        let held = charges[0].next_attempt_at_ms - env.gw.clock.now_ms();
        assert!(
            held > env.gw.state.config.journeys.incomplete_after_ms as i64 - 60_000,
            "collected only once the entry had time to arrive (due in {held} ms)"
        );
    }
);

// (terminal, sequence) is idempotent: a repeat gets the stored bytes; a different body under the
// same key is a 409 that changes nothing.
both_backends!(idempotent_on_terminal_and_sequence, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[5], 1));
    let request = tap(
        7,
        Direction::Entry,
        rider.ride_code(turnpike_tests::now_ms()).unwrap(),
    );
    let first = t.tap_raw(&request).await.unwrap();
    let second = t.tap_raw(&request).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body, second.body,
        "a repeat returns the stored answer byte for byte"
    );
    let mut other = request.clone();
    other.ride_code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let taps_before = env.gw.count("taps").await;
    let conflict = t.tap_raw(&other).await.unwrap();
    assert_eq!(conflict.status, 409);
    assert_eq!(
        conflict.error_code().as_deref(),
        Some("idempotency_conflict")
    );
    assert_eq!(env.gw.count("taps").await, taps_before);
    assert_eq!(env.gw.count("journeys").await, 1);
    // Another terminal may use the same sequence number: keys are per terminal.
    let other_terminal = env
        .gw
        .terminal(&gate(&s[5], 2))
        .tap(&tap(
            7,
            Direction::Exit,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(approved(&other_terminal), "{other_terminal:?}");
});

// Taps arriving together are judged in groups (waves of distinct riders and keys, set-based
// SQL): sent all at once, each rider's entry is approved once, the identical repeat gets the same
// bytes, the same code at another gate is a replay, and the exits then close every journey once.
both_backends!(
    concurrent_taps_are_judged_like_sequential_ones,
    |env: Env| async move {
        let s = stops();
        let mut riders = Vec::new();
        for _ in 0..12 {
            riders.push(env.gw.rider().await);
        }
        let mut entries = tokio::task::JoinSet::new();
        for (n, rider) in riders.iter().enumerate() {
            let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
            let request = tap(100 + n as u64, Direction::Entry, code.clone());
            let a = env.gw.terminal(&gate(&s[3], 1));
            let b = env.gw.terminal(&gate(&s[3], 2));
            for _ in 0..2 {
                let (a, request) = (a.clone(), request.clone());
                entries.spawn(async move { (n, "a", a.tap_raw(&request).await.unwrap()) });
            }
            let replay = tap(100 + n as u64, Direction::Entry, code);
            entries.spawn(async move { (n, "b", b.tap_raw(&replay).await.unwrap()) });
        }
        let mut by_rider: Vec<Vec<(&str, turnpike_client::Answer)>> =
            vec![Vec::new(); riders.len()];
        while let Some(done) = entries.join_next().await {
            let (n, gate_name, answer) = done.unwrap();
            assert_eq!(answer.status, 200);
            by_rider[n].push((gate_name, answer));
        }
        for answers in &by_rider {
            let a: Vec<_> = answers.iter().filter(|(g, _)| *g == "a").collect();
            assert_eq!(a[0].1.body, a[1].1.body, "a repeat gets the same bytes");
            let decoded: Vec<TapResponse> =
                [a[0], answers.iter().find(|(g, _)| *g == "b").unwrap()]
                    .iter()
                    .map(|(_, answer)| serde_json::from_slice(&answer.body).unwrap())
                    .collect();
            assert_eq!(
                decoded.iter().filter(|r| approved(r)).count(),
                1,
                "one of the two gates lets the rider in: {decoded:?}"
            );
            assert_eq!(
                decoded.iter().filter(|r| declined(r, "replay")).count(),
                1,
                "the other sees a replay: {decoded:?}"
            );
        }
        assert_eq!(env.gw.count("journeys").await, riders.len() as i64);
        let mut exits = tokio::task::JoinSet::new();
        for (n, rider) in riders.iter().enumerate() {
            let request = tap(
                200 + n as u64,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            );
            let t = env.gw.terminal(&gate(&s[9], 1 + (n % 2) as u8));
            exits.spawn(async move { t.tap(&request).await.unwrap() });
        }
        let expected = turnpike_fares::demo_metro().price(&s[3], &s[9]).unwrap();
        while let Some(done) = exits.join_next().await {
            let exit = done.unwrap();
            assert!(approved(&exit), "{exit:?}");
            assert_eq!(exit.fare, Some(expected));
        }
        assert_eq!(env.gw.count("journeys").await, riders.len() as i64);
        assert_eq!(env.gw.count("charges").await, riders.len() as i64);
    }
);

// Exit at the entry station inside the window costs the minimum fare.
both_backends!(same_station_exit_costs_the_minimum, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    env.gw
        .terminal(&gate(&s[6], 1))
        .tap(&tap(
            1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    let exit = env
        .gw
        .terminal(&gate(&s[6], 2))
        .tap(&tap(
            1,
            Direction::Exit,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(approved(&exit));
    assert_eq!(exit.fare, Some(turnpike_fares::demo_metro().min_fare()));
});

// A toll exit is priced by plaza distance and vehicle class; without a class it is a 422.
both_backends!(toll_exit_is_priced_by_class, |env: Env| async move {
    let p = plazas();
    let driver = env.gw.rider().await;
    let entry = env
        .gw
        .terminal(&booth(&p[0], "in"))
        .tap(&tap(
            1,
            Direction::Entry,
            driver.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(approved(&entry), "{entry:?}");
    let out = env.gw.terminal(&booth(&p[3], "out"));
    let missing = out
        .tap_raw(&tap(
            1,
            Direction::Exit,
            driver.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(missing.status, 422);
    assert_eq!(
        missing.error_code().as_deref(),
        Some("vehicle_class_required")
    );
    let exit = out
        .tap(&toll_exit(
            2,
            driver.ride_code(turnpike_tests::now_ms()).unwrap(),
            VehicleClass::T4,
        ))
        .await
        .unwrap();
    assert!(approved(&exit), "{exit:?}");
    let expected = turnpike_fares::demo_toll()
        .toll(&p[0], &p[3], VehicleClass::T4)
        .unwrap();
    assert_eq!(exit.fare, Some(expected));
});

// An offline batch is judged with its original scan times; what the live rules refuse for want of
// the rider's other taps (a pass-back, an exit without entry) the gate admitted all the same, so
// it is approved and the rider's journeys are re-paired from the facts in scan order. Uploading
// it again returns identical bytes.
both_backends!(offline_batch_is_facts, |env: Env| async move {
    let s = stops();
    let live_rider = env.gw.rider().await;
    let batch_rider = env.gw.rider().await;
    let make = |rider: &turnpike_client::RiderDevice| {
        let t0 = turnpike_tests::now_ms() - 20_000;
        vec![
            turnpike_tests::tap_at(0, Direction::Entry, rider, t0),
            turnpike_tests::tap_at(0, Direction::Entry, rider, t0 + 1_000),
            turnpike_tests::tap_at(0, Direction::Exit, rider, t0 + 9_000),
            turnpike_tests::tap_at(0, Direction::Exit, rider, t0 + 10_000),
        ]
    };
    let live_gate = env.gw.terminal(&gate(&s[7], 1));
    let mut live = Vec::new();
    for (i, mut t) in make(&live_rider).into_iter().enumerate() {
        t.sequence = i as u64 + 1;
        live.push(live_gate.tap(&t).await.unwrap());
    }
    let mut buffered = make(&batch_rider);
    for (i, t) in buffered.iter_mut().enumerate() {
        t.sequence = i as u64 + 1;
    }
    let batch_gate = env.gw.terminal(&gate(&s[7], 2));
    let first = batch_gate
        .batch_raw(&turnpike_wire::api::TapBatchRequest {
            taps: buffered.clone(),
        })
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let results: turnpike_wire::api::TapBatchResponse = first.json().unwrap();
    let strip = |r: &TapResponse| {
        (
            r.sequence,
            r.decision,
            r.reason.clone(),
            r.fare,
            r.charge,
            r.journey_id.is_some(),
        )
    };
    // Live, the second entry is refused (pass-back) and the second exit let through without a
    // journey; uploaded, both were facts.
    assert!(declined(&live[1], "pass_back"));
    let mut expected: Vec<_> = live.iter().map(strip).collect();
    assert_eq!(expected[3], (4, Decision::Approve, None, None, None, false));
    expected[1] = (2, Decision::Approve, None, None, None, false);
    assert_eq!(
        results.results.iter().map(strip).collect::<Vec<_>>(),
        expected
    );
    // Re-paired: the first entry's journey is incomplete (the rider entered again), the second
    // entry pairs with the first exit, the second exit is a journey without an entry.
    let journeys = env
        .gw
        .state
        .store
        .journeys_of_rider(batch_rider.rider_id.parse().unwrap(), 10)
        .await
        .unwrap();
    let mut shape: Vec<_> = journeys
        .iter()
        .map(|j| {
            (
                j.entry_sequence,
                j.exit_sequence,
                j.close_reason.clone().unwrap(),
            )
        })
        .collect();
    shape.sort();
    assert_eq!(
        shape,
        vec![
            (None, Some(4), "incomplete".to_string()),
            (Some(1), None, "incomplete".to_string()),
            (Some(2), Some(3), "same_station".to_string()),
        ]
    );
    let again = batch_gate
        .batch_raw(&turnpike_wire::api::TapBatchRequest { taps: buffered })
        .await
        .unwrap();
    assert_eq!(
        first.body, again.body,
        "a re-upload returns identical bytes"
    );
});

// The deny list declines a rider at once on this node and lifts as soon as the entry is removed.
both_backends!(deny_list_add_and_remove, |env: Env| async move {
    let s = stops();
    let rider = env.gw.rider().await;
    let added = env.gw.admin.post("/v1/admin/deny-list", &serde_json::json!({"kind": "rider", "subject_id": rider.rider_id, "reason": "arrears"})).await.unwrap();
    assert_eq!(added.status, 201);
    let t = env.gw.terminal(&gate(&s[8], 1));
    let r = t
        .tap(&tap(
            1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(declined(&r, "rider_denied"), "{r:?}");
    let feed: serde_json::Value = t
        .get("/v1/terminal/deny-list")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        feed["riders"][0].as_str().map(str::to_string),
        Some(rider.rider_id.clone())
    );
    let removed = env
        .gw
        .admin
        .send::<()>(
            reqwest::Method::DELETE,
            &format!("/v1/admin/deny-list/rider/{}", rider.rider_id),
            None,
        )
        .await
        .unwrap();
    assert_eq!(removed.status, 204);
    let r = t
        .tap(&tap(
            2,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(approved(&r), "{r:?}");
});

// Issuer key rotation: credentials under the previous key keep working; after a second rotation
// the retired key's credentials are refused as unknown.
both_backends!(issuer_key_rotation, |env: Env| async move {
    let s = stops();
    let old = env.gw.rider().await;
    let rotated = env
        .gw
        .admin
        .post("/v1/admin/issuer-keys/rotate", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(rotated.status, 201);
    let new = env.gw.rider().await;
    assert_ne!(
        old.credential.body().issuer_key_id,
        new.credential.body().issuer_key_id
    );
    let t = env.gw.terminal(&gate(&s[9], 1));
    assert!(approved(
        &t.tap(&tap(
            1,
            Direction::Entry,
            old.ride_code(turnpike_tests::now_ms()).unwrap()
        ))
        .await
        .unwrap()
    ));
    assert!(approved(
        &t.tap(&tap(
            2,
            Direction::Entry,
            new.ride_code(turnpike_tests::now_ms()).unwrap()
        ))
        .await
        .unwrap()
    ));
    let keys: serde_json::Value = t.get("/v1/terminal/keys").await.unwrap().json().unwrap();
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(2));
    // A staged key is published to gates (and accepted) before it signs anything.
    let staged = env
        .gw
        .admin
        .post("/v1/admin/issuer-keys/stage", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(staged.status, 201);
    let keys: serde_json::Value = t.get("/v1/terminal/keys").await.unwrap().json().unwrap();
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(3));
    let twice = env
        .gw
        .admin
        .post("/v1/admin/issuer-keys/stage", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(twice.error_code().as_deref(), Some("key_already_staged"));
    // Rotating again would retire the key of credentials that are still valid: refused unless forced.
    let too_soon = env
        .gw
        .admin
        .post("/v1/admin/issuer-keys/rotate", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(too_soon.status, 409);
    assert_eq!(too_soon.error_code().as_deref(), Some("rotation_too_soon"));
    let forced = env
        .gw
        .admin
        .post(
            "/v1/admin/issuer-keys/rotate",
            &serde_json::json!({"force": true}),
        )
        .await
        .unwrap();
    assert_eq!(forced.status, 201);
    let current: serde_json::Value = forced.json().unwrap();
    assert_eq!(
        current["key_id"],
        staged.json::<serde_json::Value>().unwrap()["key_id"],
        "the staged key was promoted"
    );
    let r = env
        .gw
        .terminal(&gate(&s[9], 2))
        .tap(&tap(
            1,
            Direction::Exit,
            old.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(declined(&r, "unknown_issuer_key"), "{r:?}");
});

// Codes that fail verification are declined with the precise reason and write no journey.
both_backends!(bad_codes_are_declined_precisely, |env: Env| async move {
    use base64::Engine as _;
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[10], 1));
    let now = turnpike_tests::now_ms();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forged = b64.decode(rider.ride_code(now).unwrap()).unwrap();
    forged[200] ^= 0x80;
    let mut wrong_issuer = b64.decode(rider.ride_code(now).unwrap()).unwrap();
    wrong_issuer[1] = 0x7f;
    let cases = [
        (b64.encode(&forged), "bad_device_signature"),
        (b64.encode(&wrong_issuer), "unknown_issuer_key"),
        (
            rider.ride_code(now - 5 * 60 * 1000).unwrap(),
            "code_expired",
        ),
        (
            rider.ride_code(now + 60 * 1000).unwrap(),
            "code_from_future",
        ),
        (
            b64.encode(&b64.decode(rider.ride_code(now).unwrap()).unwrap()[..150]),
            "code_truncated",
        ),
        ("not base64 at all!".to_string(), "code_bad_encoding"),
    ];
    for (i, (code, reason)) in cases.into_iter().enumerate() {
        let r = t
            .tap(&tap(i as u64 + 1, Direction::Entry, code))
            .await
            .unwrap();
        assert!(
            declined(&r, reason),
            "case {i}: expected {reason}, got {r:?}"
        );
    }
    assert_eq!(env.gw.count("journeys").await, 0);
    assert_eq!(env.gw.count("code_uses").await, 0);
});

// A repeat of a stored tap gets its stored bytes even when the same request would no longer
// validate (its scan time has aged past the upload limit); a fresh tap that old is refused.
async fn old_repeat(db: turnpike_tests::Db) {
    let Some(env) = Env::start_with(db, |c| c.taps.scan_time_max_age_ms = 2_000).await else {
        return;
    };
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[11], 1));
    let now = turnpike_tests::now_ms();
    let request = turnpike_tests::tap_at(1, Direction::Entry, &rider, now - 500);
    let first = t.tap_raw(&request).await.unwrap();
    assert_eq!(first.status, 200);
    // 2 s later on the gateway's clock, the scan has aged past the limit.
    env.gw.clock.advance(2_000);
    let mut fresh = request.clone();
    fresh.sequence = 2;
    let refused = t.tap_raw(&fresh).await.unwrap();
    assert_eq!(refused.error_code().as_deref(), Some("scan_time_too_old"));
    let repeat = t.tap_raw(&request).await.unwrap();
    assert_eq!(repeat.status, 200);
    assert_eq!(repeat.body, first.body);
    let batch_repeat = t
        .batch_raw(&turnpike_wire::api::TapBatchRequest {
            taps: vec![request],
        })
        .await
        .unwrap();
    assert_eq!(batch_repeat.status, 200);
    assert_eq!(
        batch_repeat.body,
        [b"{\"results\":[".as_slice(), &first.body, b"]}"].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_repeat_still_gets_its_stored_answer_sqlite() {
    old_repeat(turnpike_tests::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_repeat_still_gets_its_stored_answer_postgres() {
    old_repeat(turnpike_tests::Db::Postgres).await;
}

// A revoked terminal cannot be silently re-registered; it must be reinstated explicitly.
both_backends!(revoked_terminal_needs_reinstating, |env: Env| async move {
    let s = stops();
    let id = gate(&s[13], 1);
    let spec =
        serde_json::json!({"terminal_id": id, "operator_id": "hz-metro", "location_id": s[13]});
    assert_eq!(
        env.gw
            .admin
            .post(
                &format!("/v1/admin/terminals/{id}/revoke"),
                &serde_json::json!({})
            )
            .await
            .unwrap()
            .status,
        204
    );
    let again = env
        .gw
        .admin
        .post("/v1/admin/terminals", &spec)
        .await
        .unwrap();
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code().as_deref(), Some("terminal_revoked"));
    assert!(
        env.gw.terminal(&id).get("/healthz").await.is_err(),
        "a revoked terminal fails the handshake"
    );
    assert_eq!(
        env.gw
            .admin
            .post(
                &format!("/v1/admin/terminals/{id}/reinstate"),
                &serde_json::json!({})
            )
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        env.gw.terminal(&id).get("/healthz").await.unwrap().status,
        200
    );
    assert_eq!(
        env.gw
            .admin
            .post("/v1/admin/terminals", &spec)
            .await
            .unwrap()
            .status,
        200,
        "moving an active terminal is a 200"
    );
});

// The tap writers' PostgreSQL sessions are handed out without a ping. When they die (a server
// restart, `pg_terminate_backend`), the next group finds out on its first statement and is judged
// again on a fresh connection: the rider still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_survive_terminated_sessions_postgres() {
    use sqlx::{Connection, Row};

    let Some(env) = Env::start(turnpike_tests::Db::Postgres).await else {
        return;
    };
    let s = stops();
    let rider = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[4], 1));
    let code = || rider.ride_code(turnpike_tests::now_ms()).unwrap();
    assert!(approved(
        &t.tap(&tap(1, Direction::Entry, code())).await.unwrap()
    ));
    let mut admin = sqlx::PgConnection::connect(env.db.url()).await.unwrap();
    let terminated: i64 = sqlx::query(
        "WITH others AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
           WHERE datname = current_database() AND pid <> pg_backend_pid()) \
         SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM others",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get(0);
    assert!(terminated >= 1, "the gateway's sessions were terminated");
    let exit = t.tap(&tap(2, Direction::Exit, code())).await.unwrap();
    assert!(approved(&exit), "{exit:?}");
    assert_eq!(env.gw.count("journeys").await, 1);
    assert_eq!(env.gw.count("taps").await, 2);
}
