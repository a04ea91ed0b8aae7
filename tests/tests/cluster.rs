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
