//! Several gateway nodes on one PostgreSQL: the database constraints, not node memory, enforce
//! replay and pass-back protection.

use std::sync::Arc;

use turnpike_tests::{gate, tap, test_config, write_pki, PgDatabase, Scratch, TestGateway};
use turnpike_wire::api::{Decision, Direction};

use turnpike_tests::demo_stops as stops;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_replay_and_pass_back_protection() {
    // A code used on node A is a replay on node B; concurrent use of one code on both nodes
    // approves exactly once; a deny-list change on A reaches B within the refresh interval.
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let scratch = Scratch::new("cluster");
    let certs = scratch.0.join("certs");
    write_pki(&certs).unwrap();
    let a = TestGateway::start(test_config(&db.url, &certs))
        .await
        .unwrap();
    a.configure_demo(None).await.unwrap();
    let b = TestGateway::start(test_config(&db.url, &certs))
        .await
        .unwrap();
    let s = stops();

    let rider = a.rider().await;
    let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let on_a = a
        .terminal(&gate(&s[0], 1))
        .tap(&tap(1, Direction::Entry, code.clone()))
        .await
        .unwrap();
    assert_eq!(on_a.decision, Decision::Approve);
    let on_b = b
        .terminal(&gate(&s[1], 1))
        .tap(&tap(1, Direction::Entry, code))
        .await
        .unwrap();
    assert_eq!(on_b.reason.as_deref(), Some("replay"), "{on_b:?}");
    let pass_back = b
        .terminal(&gate(&s[1], 1))
        .tap(&tap(
            2,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        pass_back.reason.as_deref(),
        Some("pass_back"),
        "{pass_back:?}"
    );

    // The same code raced to both nodes at once, many times: never two approvals.
    let a_gate = Arc::new(a.terminal(&gate(&s[2], 1)));
    let b_gate = Arc::new(b.terminal(&gate(&s[3], 1)));
    for round in 0..20u64 {
        let rider = a.rider().await;
        let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
        let (ta, tb) = (
            tap(round + 1, Direction::Entry, code.clone()),
            tap(round + 1, Direction::Entry, code),
        );
        let (x, y) = tokio::join!(a_gate.tap(&ta), b_gate.tap(&tb));
        let (x, y) = (x.unwrap(), y.unwrap());
        let approvals = [&x, &y]
            .iter()
            .filter(|r| r.decision == Decision::Approve)
            .count();
        assert_eq!(approvals, 1, "round {round}: {x:?} / {y:?}");
        let loser = if x.decision == Decision::Approve {
            &y
        } else {
            &x
        };
        assert_eq!(loser.reason.as_deref(), Some("replay"));
    }

    // Deny on A, observe on B.
    let denied = a.rider().await;
    a.admin
        .post_ok(
            "/v1/admin/deny-list",
            &serde_json::json!({"kind": "rider", "subject_id": denied.rider_id, "reason": "test"}),
        )
        .await
        .unwrap();
    let mut seq = 100;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        seq += 1;
        let r = b
            .terminal(&gate(&s[4], 1))
            .tap(&tap(
                seq,
                Direction::Exit,
                denied.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        if r.reason.as_deref() == Some("rider_denied") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node B never saw the deny-list entry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Proves a node's writers judge on what they know (journeys they opened, day totals they
/// moved: one round trip per group) only as far as the database agrees: a rider alternating
/// between two nodes makes each node's knowledge stale — a journey the other node closed, a
/// day total it moved — and every answer, fare and capped charge is still the one the database's
/// state gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_knows_gives_way_to_the_database() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let scratch = Scratch::new("cluster-known");
    let certs = scratch.0.join("certs");
    write_pki(&certs).unwrap();
    let a = TestGateway::start(test_config(&db.url, &certs))
        .await
        .unwrap();
    a.configure_demo(Some("10.00")).await.unwrap();
    let b = TestGateway::start(test_config(&db.url, &certs))
        .await
        .unwrap();
    let s = stops();
    let fares = turnpike_fares::demo_metro();
    let rider = a.rider().await;
    // (entry node, entry station, exit node, exit station). Trip 2 exits on A, which still
    // knows the journey of trip 1 open (B closed it); trip 4 exits on B, which knows the day
    // total as it was after trip 1.
    let trips = [
        (&a, 0, &b, 12),
        (&b, 12, &a, 2),
        (&a, 2, &a, 15),
        (&b, 15, &b, 3),
    ];
    let (mut fares_total, mut charged) = (0, 0);
    for (n, &(entry_node, from, exit_node, to)) in trips.iter().enumerate() {
        let seq = n as u64 + 1;
        let entry = entry_node
            .terminal(&gate(&s[from], 1))
            .tap(&tap(
                seq,
                Direction::Entry,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(entry.decision, Decision::Approve, "trip {n}: {entry:?}");
        let exit = exit_node
            .terminal(&gate(&s[to], 2))
            .tap(&tap(
                seq,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(exit.decision, Decision::Approve, "trip {n}: {exit:?}");
        assert_eq!(exit.journey_id, entry.journey_id, "trip {n}");
        let fare = exit.fare.unwrap().to_minor();
        assert_eq!(fare, fares.price(&s[from], &s[to]).unwrap().to_minor());
        let charge = exit.charge.unwrap().to_minor();
        assert_eq!(
            charge,
            (fares_total + fare).min(1000) - fares_total.min(1000),
            "trip {n}: the cap applies to the day's total as the database holds it"
        );
        fares_total += fare;
        charged += charge;
    }
    assert!(fares_total > 1000, "the test needs fares above the cap");
    assert_eq!(charged, 1000);
    let list = rider.journeys(&a.public_base, &a.ca()).await.unwrap();
    assert_eq!(list.journeys.len(), 4, "{:?}", list.journeys);
    assert!(
        list.journeys.iter().all(|j| j.status == "closed"),
        "{list:?}"
    );
    // Both ways of judging were taken (the nodes share this process's metrics).
    let metrics = reqwest::get(format!("{}/metrics", a.ops_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["committed", "raced", "unknown_exit", "unknown_rule"] {
        let series = format!("gateway_tap_groups_on_known_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
